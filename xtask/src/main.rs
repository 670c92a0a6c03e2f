//! `cargo xtask …`: what cargo alone cannot do for srediag.
//!
//! - `deps`: install the Debian packages of `scripts/deps.txt` (as root) and the Python venv of
//!   `tests/python/requirements.txt`;
//! - `test`: what `.ci/run` runs: deps, fmt, clippy, flatc check, build, bundles, the ring's loom
//!   models (`--cfg loom`, own target dir), `cargo test --workspace`, then the CI subset of
//!   `kernels` on Debian 12's own kernel (cgroup v2 only) in a QEMU guest;
//! - `run [-- ARGS]`: build the release agent and the signed plugin bundles, and exec `srediag
//!   run --plugin-dir … --trust-policy … --plugin-state … ARGS` (the development key);
//! - `bundles [--release] [--source DIR]`: first-party plugins → signed bundles (`bundles.rs`);
//! - `bench pipeline`: throughput, CPU per record and idle footprint of the release agent;
//! - `bench plugin`: plugin cold start and restart-to-ready against a raw spawn;
//! - `bench swap`: hot swap under load (duration, records lost, duplicates, throughput dip);
//! - `kernels`: the privileged test subset on Debian's kernels under QEMU and on this host
//!   (`kernels/`, docs/kernels.md).

mod apt;
mod bench;
mod bench_plugin;
mod bench_swap;
mod bundles;
mod deps;
mod flatc;
mod httpc;
mod kernels;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "srediag's development tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the project needs: Debian packages (as root) and the tests' Python venv.
    Deps {
        /// Only what building and running the agent needs (no test tools, no venv).
        #[arg(long)]
        build_only: bool,
    },
    /// The full check CI runs: deps, fmt, clippy, generated-code freshness, build, cargo test
    /// --workspace, then the privileged subset in a Debian 12 kernel guest.
    Test,
    /// Regenerate the FlatBuffers code of the data path (`--check`: fail when it is stale).
    Flatc {
        /// Compare instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Build the release agent and run it in the foreground (as root): `srediag run ARGS…`.
    Run {
        /// Arguments for `srediag run` (none: the embedded default config).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build every plugin with a manifest.yaml (plugins/*/, --source DIR) into a signed bundle
    /// under target/bundles/, with a local development key and a trust policy trusting it.
    Bundles {
        /// Release binaries (what `xtask run` uses); default debug (what the tests use).
        #[arg(long)]
        release: bool,
        /// More plugin directories (a manifest.yaml next to a Cargo.toml).
        #[arg(long, value_name = "DIR")]
        source: Vec<PathBuf>,
    },
    /// The privileged tests on a matrix of kernels: Debian's under QEMU (cgroup v2 only, one
    /// also hybrid) and this host's (docs/kernels.md).
    Kernels(kernels::Args),
    /// Inside a guest of `kernels`: run the plan, results to the second serial port.
    #[command(hide = true)]
    KernelsGuest {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks of the release agent.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// OTLP/HTTP → batch → file throughput and CPU per record, then the idle footprint.
    Pipeline(bench::PipelineArgs),
    /// Shared-memory ring vs Unix sockets (B1 round trip, B2 throughput): the plugin-sdk example.
    Ipc {
        /// Arguments for the example (`--quick`, `--only b1|b2`, `--no-spin`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// B4 host tax of the eBPF observers (as root): workloads in non-plugin processes with
    /// nothing / srediag's observers / a minimal raw_tp reference attached, alternated.
    Bpf {
        /// Rounds (each runs every state once, order rotated).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
        /// Build the workload helpers with optimisations (a release build of the test crate).
        #[arg(long)]
        release: bool,
    },
    /// Plugin cold start and restart-to-ready against a raw spawn of the same binary (as root).
    Plugin {
        /// Number of restarts measured.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Measure a network-enabled receiver plugin (host network namespace) instead of a
        /// processor in its own network namespace.
        #[arg(long)]
        network: bool,
    },
    /// Hot swap under load (as root): swap duration p50/p99, records lost, duplicates per swap,
    /// throughput while a swap runs against the steady state, in one run.
    Swap(bench_swap::SwapArgs),
    /// B3 plugin tax: vectorhashprocessor's dedup in-process vs as a sandboxed plugin on the
    /// shared-memory data path (as root). With `--ipc-sampling N`: B5, the same data path with
    /// IPC-latency sampling off vs every N batches (eBPF observers loaded), alternated.
    Tax {
        /// Arguments for the example (`--records N`, `--batch N`, `--rounds N`,
        /// `--ipc-sampling N`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Deps { build_only } => deps::ensure(if build_only {
            deps::Scope::Build
        } else {
            deps::Scope::All
        }),
        Cmd::Test => test(),
        Cmd::Flatc { check } => flatc::flatc_cmd(check),
        Cmd::Run { args } => run(&args),
        Cmd::Bundles { release, source } => bundles::bundles(release, &source).map(|_| ()),
        Cmd::Kernels(a) => kernels::kernels(&a),
        Cmd::KernelsGuest { plan, out } => kernels::guest(&plan, &out),
        Cmd::Bench {
            which: BenchCmd::Pipeline(a),
        } => bench::pipeline(&a),
        Cmd::Bench {
            which: BenchCmd::Ipc { args },
        } => ipc_bench(&args),
        Cmd::Bench {
            which: BenchCmd::Bpf { rounds, release },
        } => bpf_bench(rounds, release),
        Cmd::Bench {
            which: BenchCmd::Plugin { runs, network },
        } => bench_plugin::plugin(&root(), runs, network),
        Cmd::Bench {
            which: BenchCmd::Swap(a),
        } => bench_swap::swap(&a),
        Cmd::Bench {
            which: BenchCmd::Tax { args },
        } => tax_bench(&args),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent dir")
        .to_path_buf()
}

/// The cargo that runs us (`$CARGO`), else `cargo` from PATH.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Prints the command, runs it with inherited stdio, fails on a non-zero exit.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("$ {shown}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !st.success() {
        bail!("`{shown}` failed: {st}");
    }
    Ok(())
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `f` under a header, prints its duration; records it in `times`.
fn step(times: &mut Vec<(String, f64)>, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n==== {name} ====");
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    match &r {
        Ok(()) => println!("==== {name}: ok in {secs:.1} s ===="),
        Err(_) => println!("==== {name}: FAILED after {secs:.1} s ===="),
    }
    times.push((name.to_string(), secs));
    r.with_context(|| format!("step `{name}` failed"))
}

fn test() -> Result<()> {
    let root = root();
    let total = Instant::now();
    let mut times = Vec::new();
    let result = (|| {
        step(&mut times, "deps", || deps::ensure(deps::Scope::All))?;
        step(&mut times, "cargo fmt --check", || {
            run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))
        })?;
        step(&mut times, "cargo clippy", || {
            run_cmd(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        step(&mut times, "flatc --check", || flatc::flatc_cmd(true))?;
        step(&mut times, "cargo build", || {
            run_cmd(cargo().args(["build", "--workspace", "--bins"]))
        })?;
        step(&mut times, "plugin bundles", || {
            bundles::bundles(false, &[]).map(|_| ())
        })?;
        // The ring's loom models need the SDK built with `--cfg loom` (loom's atomics): a
        // separate target directory, so the normal build cache stays valid.
        step(&mut times, "loom models", || {
            run_cmd(
                cargo()
                    .args([
                        "test",
                        "-p",
                        "srediag-plugin-sdk",
                        "--release",
                        "--lib",
                        "ring::loom",
                    ])
                    .env("RUSTFLAGS", "--cfg loom")
                    .env("CARGO_TARGET_DIR", root.join("target/loom")),
            )
        })?;
        step(&mut times, "cargo test", || {
            let bin = root.join("target/debug/srediag");
            if !bin.is_file() {
                bail!("{} was not built", bin.display());
            }
            run_cmd(
                cargo()
                    .args(["test", "--workspace", "--no-fail-fast"])
                    .env("SREDIAG_BIN", &bin)
                    .env("SREDIAG_PYTHON", deps::venv_python())
                    .env("SREDIAG_REPO", &root),
            )
        })?;
        // The privileged subset on Debian 12's own kernel with cgroup v2 only, in a QEMU guest
        // (docs/kernels.md): the default run's plugin must start there.
        step(&mut times, "kernels: debian-6.1 (guest)", || {
            kernels::kernels(&kernels::Args::ci())
        })
    })();
    println!("\n==== summary ====");
    for (name, secs) in &times {
        println!("{name:<22} {secs:>8.1} s");
    }
    println!("{:<22} {:>8.1} s", "total", total.elapsed().as_secs_f64());
    result
}

fn run(args: &[String]) -> Result<()> {
    deps::ensure(deps::Scope::Build)?;
    let l = bundles::bundles(true, &[])?;
    let bin = root().join("target/release/srediag");
    if !is_root() {
        eprintln!("xtask: note: srediag run needs root (it exits 77 otherwise)");
    }
    let mut cmd = Command::new(&bin);
    cmd.arg("run")
        .arg("--plugin-dir")
        .arg(&l.plugin_dir)
        .arg("--trust-policy")
        .arg(&l.policy)
        .arg("--plugin-state")
        .arg(&l.state)
        .args(args);
    println!("$ {}", show(&cmd));
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).with_context(|| format!("exec {}", bin.display()))
}

/// `cargo xtask bench tax`: builds the release agent, the plugin and the
/// example, then runs the example.
fn tax_bench(args: &[String]) -> Result<()> {
    let root = root();
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "srediag",
        "--bin",
        "srediag",
        "--example",
        "plugin_tax",
    ]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "srediag-vectorhashprocessor",
        "--bins",
    ]))?;
    let st = Command::new(root.join("target/release/examples/plugin_tax"))
        .arg(root.join("target/release/vectorhashprocessor"))
        .args(args)
        .status()?;
    if !st.success() {
        bail!("plugin tax benchmark failed");
    }
    Ok(())
}

/// `cargo xtask bench bpf`: the `host_tax_b4` benchmark of `tests/tests/bpf_observers.rs` (it
/// needs the srediag library to load the observers, and the test harness's helper processes).
fn bpf_bench(rounds: usize, release: bool) -> Result<()> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("bench bpf: load average before: {}", load.trim());
    let mut cmd = Command::new("cargo");
    cmd.arg("test");
    if release {
        cmd.arg("--release");
    }
    cmd.args([
        "-p",
        "srediag-tests",
        "--test",
        "bpf_observers",
        "--",
        "--ignored",
        "--exact",
        "host_tax_b4",
        "--nocapture",
    ])
    .env("SREDIAG_B4_ROUNDS", rounds.to_string())
    .current_dir(root());
    let st = cmd.status().context("cargo test")?;
    if !st.success() {
        bail!("the B4 benchmark failed: {st}");
    }
    Ok(())
}

/// `cargo xtask bench ipc`: runs the ring benchmark example in release.
fn ipc_bench(args: &[String]) -> Result<()> {
    let st = Command::new("cargo")
        .args([
            "run",
            "--release",
            "-p",
            "srediag-plugin-sdk",
            "--example",
            "ipc_bench",
            "--",
        ])
        .args(args)
        .current_dir(root())
        .status()?;
    if !st.success() {
        bail!("ipc benchmark failed");
    }
    Ok(())
}
