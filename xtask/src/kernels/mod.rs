//! `cargo xtask kernels`: the privileged test subset on a matrix of kernels.
//!
//! Each Debian kernel (`matrix.rs`) is fetched from Debian's packages (`fetch.rs`) and booted
//! under QEMU/TCG (`qemu.rs`) with an initramfs (`initramfs.rs`) holding busybox, the debug
//! binaries, the test binaries cargo built, the signed first-party bundles with the development
//! trust policy, and this program, which the guest's init runs as `xtask kernels-guest` to execute
//! the row's plan (`plan.rs`, `runner.rs`, `default_run.rs`). The host's own kernel is the
//! reference row, run natively by the same runner. `report.rs` prints one line per row and group,
//! keeps everything under `target/kernels/report/<row>/`, and writes the table into
//! docs/kernels.md.

mod default_run;
mod fetch;
mod initramfs;
mod matrix;
mod plan;
mod qemu;
mod report;
mod runner;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use matrix::Subset;
use matrix::{CgroupSetup, Kernel, Row};
use plan::{Binaries, Plan};
use report::RowReport;
use runner::{Record, Sinks};

use crate::{bundles, cargo, is_root, root, run_cmd};

/// `cargo xtask kernels` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A kernel to run (repeatable): host, debian-5.10, debian-6.1, debian-6.12. Default: all of
    /// them with cgroup v2 only, plus debian-6.1 hybrid, plus the host.
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    /// Also boot each selected Debian kernel with hybrid cgroups (v1 controllers + unified).
    #[arg(long)]
    pub hybrid: bool,
    /// The guest's vCPUs.
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Which tests: `ci` (CI's guest step, a few minutes) or `full`.
    #[arg(long, value_enum, default_value_t = Subset::Full)]
    pub subset: Subset,
    /// Timeout of each item in a guest, seconds (TCG is 10–50× slower than the host).
    #[arg(long)]
    pub item_timeout: Option<u64>,
    /// Timeout of a whole guest row, seconds.
    #[arg(long)]
    pub row_timeout: Option<u64>,
    /// Only the items whose name contains one of these (repeatable), e.g. `bpf_ipc::`.
    #[arg(long, value_name = "TEXT")]
    pub only: Vec<String>,
    /// More kernel command line for the guests (e.g. `mitigations=off`).
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// Use what is built (target/debug, target/bundles) without running cargo.
    #[arg(long)]
    pub no_build: bool,
    /// Do not update docs/kernels.md (CI's guest step does not).
    #[arg(long)]
    pub no_docs: bool,
}

impl Args {
    /// What CI runs after `cargo test` (`cargo xtask test`): Debian 12's own kernel, cgroup v2
    /// only, the CI subset, with what the earlier steps built.
    pub fn ci() -> Args {
        Args {
            kernels: vec!["debian-6.1".into()],
            hybrid: false,
            smp: 1,
            subset: Subset::Ci,
            item_timeout: None,
            row_timeout: None,
            only: Vec::new(),
            append: None,
            no_build: true,
            no_docs: true,
        }
    }
}

/// Where everything lives.
struct Dirs {
    root: PathBuf,
    kernels: PathBuf,
    report: PathBuf,
}

pub fn kernels(a: &Args) -> Result<()> {
    let t0 = Instant::now();
    let root = root();
    let dirs = Dirs {
        kernels: root.join("target/kernels"),
        report: root.join("target/kernels/report"),
        root,
    };
    let kernels: Vec<Kernel> = a.kernels.iter().map(|k| k.parse()).collect::<Result<_>>()?;
    if a.smp == 0 {
        bail!("--smp must be at least 1");
    }
    let rows = matrix::rows(&kernels, a.hybrid, a.smp);
    if rows.iter().any(|r| r.kernel == Kernel::Host) && !is_root() {
        bail!(
            "the host row runs the privileged tests natively: run as root (or pass --kernel NAME for guests only)"
        );
    }
    if !a.no_build {
        run_cmd(cargo().args(["build", "--workspace", "--bins"]))?;
        bundles::bundles(false, &[])?;
    }
    let bins = plan::build_test_binaries()?;
    let mut reports = Vec::new();
    let mut failed_rows = Vec::new();
    for row in &rows {
        println!("\n==== kernels: {} ====", row.id());
        let r = match row.kernel {
            Kernel::Host => run_host(&dirs, row, a, &bins),
            Kernel::Debian(_) => run_guest(&dirs, row, a, &bins),
        };
        match r {
            Ok(rep) => {
                report::print_row(&rep);
                reports.push(rep);
            }
            Err(e) => {
                eprintln!("kernels: {}: {e:#}", row.id());
                failed_rows.push(format!("{}: {e:#}", row.id()));
            }
        }
    }
    println!(
        "\n==== kernels: summary ({:.0} s) ====",
        t0.elapsed().as_secs_f64()
    );
    let table = report::table(&reports);
    println!("{table}");
    std::fs::create_dir_all(&dirs.report)?;
    std::fs::write(dirs.report.join("table.md"), &table)?;
    if !a.no_docs && a.subset == Subset::Full {
        report::update_docs(&dirs.root.join("docs/kernels.md"), &reports)?;
    }
    let failures: usize = reports.iter().map(RowReport::failures).sum();
    if !failed_rows.is_empty() || failures > 0 {
        bail!(
            "{failures} item(s) failed or timed out{}",
            if failed_rows.is_empty() {
                String::new()
            } else {
                format!("; rows that could not run: {}", failed_rows.join("; "))
            }
        );
    }
    Ok(())
}

/// The guest's entry point (`xtask kernels-guest`).
pub fn guest(plan: &Path, out: &Path) -> Result<()> {
    runner::guest_main(plan, out)
}

/// The plan's groups for this run (`--only` applied; groups left empty are dropped).
fn groups_for(
    a: &Args,
    bins: &Binaries,
    path_of: plan::PathMap<'_>,
    guest: bool,
) -> Result<Vec<plan::Group>> {
    let mut groups = plan::groups(a.subset, bins, path_of, item_timeout(a, guest), guest)?;
    if !a.only.is_empty() {
        for g in &mut groups {
            g.items
                .retain(|i| a.only.iter().any(|o| i.label().contains(o.as_str())));
        }
        groups.retain(|g| !g.items.is_empty());
    }
    Ok(groups)
}

fn item_timeout(a: &Args, guest: bool) -> u64 {
    a.item_timeout.unwrap_or(match (guest, a.subset) {
        (false, _) => 300,
        (true, Subset::Ci) => 300,
        (true, Subset::Full) => 900,
    })
}

fn row_dir(dirs: &Dirs, row: &Row, subset: Subset) -> Result<PathBuf> {
    // A `ci` run keeps its own directory: it must not replace a full run's results.
    let d = dirs.report.join(match subset {
        Subset::Full => row.id(),
        Subset::Ci => format!("{}-ci", row.id()),
    });
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
    Ok(d)
}

fn run_host(dirs: &Dirs, row: &Row, a: &Args, bins: &Binaries) -> Result<RowReport> {
    let out = row_dir(dirs, row, a.subset)?;
    let work = tempfile::Builder::new()
        .prefix("srediag-kernels-")
        .tempdir()?;
    let env = [
        ("SREDIAG_BIN", dirs.root.join("target/debug/srediag")),
        ("SREDIAG_REPO", dirs.root.clone()),
        ("SREDIAG_PYTHON", crate::deps::venv_python()),
        ("CI", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.display().to_string()))
    .collect();
    let plan = Plan {
        row: row.id(),
        bin_dir: dirs.root.join("target/debug"),
        bundles: dirs.root.join("target/bundles"),
        work: work.path().to_path_buf(),
        env,
        groups: groups_for(a, bins, &|_, p| p.to_path_buf(), false)?,
    };
    let results = out.join("results.jsonl");
    let console = out.join("console.log");
    let mut sinks = Sinks {
        out: Box::new(Progress::new(std::fs::File::create(&results)?)),
        console: Box::new(std::fs::File::create(&console)?),
    };
    let t = Instant::now();
    runner::run(&plan, &mut sinks)?;
    drop(sinks);
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    report::collect(
        row,
        &out,
        format!("host {}", uname.trim()),
        t.elapsed(),
        false,
    )
}

/// Prints each result line as it is written (the host row's progress).
struct Progress<W: std::io::Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: std::io::Write> Progress<W> {
    fn new(inner: W) -> Self {
        Progress {
            inner,
            buf: Vec::new(),
        }
    }
}

impl<W: std::io::Write> std::io::Write for Progress<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            if let Ok(r) = serde_json::from_slice::<Record>(&line) {
                report::print_progress(&r);
            }
        }
        self.inner.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Guest paths.
const G_BIN: &str = "/srediag/bin";
const G_TESTS: &str = "/srediag/tests";
const G_BUNDLES: &str = "/srediag/bundles";

fn run_guest(dirs: &Dirs, row: &Row, a: &Args, bins: &Binaries) -> Result<RowReport> {
    let Kernel::Debian(dk) = row.kernel else {
        bail!("not a guest row");
    };
    let out = row_dir(dirs, row, a.subset)?;
    let t_fetch = Instant::now();
    let img = fetch::image(&dirs.kernels, &dk)?;
    println!(
        "kernels: {} = {} {} ({:.1} s)",
        dk.name,
        img.package,
        img.version,
        t_fetch.elapsed().as_secs_f64()
    );
    // The kernel's configuration, for the record (CONFIG_KPROBES, CONFIG_BPF_LSM, …).
    std::fs::copy(&img.config, out.join("kernel.config"))?;
    let env = [
        ("SREDIAG_BIN", format!("{G_BIN}/srediag")),
        ("SREDIAG_REPO", "/srediag".into()),
        ("CI", "true".into()),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME", "/root".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let groups = groups_for(
        a,
        bins,
        &|file, _| PathBuf::from(format!("{G_TESTS}/{file}")),
        true,
    )?;
    let budget: u64 = 180
        + groups
            .iter()
            .flat_map(|g| &g.items)
            .map(|i| i.timeout_s() + 30)
            .sum::<u64>();
    let cap = a.row_timeout.unwrap_or(match a.subset {
        Subset::Ci => 1200,
        Subset::Full => 3 * 3600,
    });
    let plan = Plan {
        row: row.id(),
        bin_dir: G_BIN.into(),
        bundles: G_BUNDLES.into(),
        work: "/tmp/srediag-kernels".into(),
        env,
        groups,
    };
    let t_img = Instant::now();
    let initrd = dirs.kernels.join("initramfs.cpio");
    let size = guest_image(dirs, row, &plan, bins)?.write(&initrd)?;
    println!(
        "kernels: initramfs {} ({} MiB, {:.1} s)",
        initrd.display(),
        size >> 20,
        t_img.elapsed().as_secs_f64()
    );
    let boot = qemu::Boot {
        vmlinuz: &img.vmlinuz,
        initrd: &initrd,
        smp: row.smp,
        memory_mib: 2048,
        append: a.append.as_deref(),
        console: out.join("console.log"),
        results: out.join("results.jsonl"),
        timeout: Duration::from_secs(budget.min(cap)),
    };
    let ended = qemu::boot(&boot, report::print_progress)?;
    report::collect(
        row,
        &out,
        format!("{} {}", img.package, img.version),
        ended.wall,
        ended.killed,
    )
}

/// The guest's init: mounts (cgroup v2 only, or hybrid), loopback up, the runner, power off.
fn init_script(setup: CgroupSetup) -> String {
    let cgroups = match setup {
        CgroupSetup::V2 | CgroupSetup::Native => "\
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control
"
        .to_string(),
        CgroupSetup::Hybrid => "\
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory pids freezer; do
    mkdir /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
"
        .to_string(),
    };
    format!(
        "#!/bin/busybox sh
# written by `cargo xtask kernels`: the guest's init (pid 1)
/bin/busybox --install -s /bin
# The host's /bin/sh (dash on Debian), not busybox's ash: the tests' shell scripts count processes.
[ -x /usr/bin/host-sh ] && ln -sf /usr/bin/host-sh /bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=755 run /run
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 shm /dev/shm
{cgroups}mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
hostname srediag-guest
echo \"srediag-guest: $(uname -r) up $(cut -d' ' -f1 /proc/uptime) s; cgroups:\"
grep cgroup /proc/self/mountinfo | cut -d' ' -f5,9,11
/srediag/xtask kernels-guest --plan /srediag/plan.json --out /dev/ttyS1
echo \"srediag-guest: runner exited $? after $(cut -d' ' -f1 /proc/uptime) s\"
sync
poweroff -f
"
    )
}

/// The initramfs of a guest row.
fn guest_image(dirs: &Dirs, row: &Row, plan: &Plan, bins: &Binaries) -> Result<initramfs::Image> {
    let strip = dirs.kernels.join("stripped");
    let mut img = initramfs::Image::new();
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox missing: install busybox-static (cargo xtask deps)");
    }
    img.executable("/bin/busybox", busybox, None)?;
    img.bytes("/init", init_script(row.cgroup), 0o755);
    img.bytes(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    img.bytes("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644);
    img.bytes("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644);
    // Files a host has and the hostile plugin reaches for: Landlock's denial must be what stops
    // it (a missing file would answer ENOENT first).
    img.bytes("/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640);
    img.bytes("/etc/hostname", "srediag-guest\n", 0o644);
    img.bytes("/root/.bash_history", "", 0o600);
    if let Ok(sh) = std::fs::canonicalize("/bin/sh") {
        img.executable("/usr/bin/host-sh", &sh, None)?;
    }
    // This program runs the plan in the guest; when `cargo build` just replaced it (the link
    // reads `… (deleted)`), the new one at the same path.
    let mut me = std::env::current_exe().context("this program's path")?;
    if !me.is_file() {
        me = dirs.root.join("target/debug/xtask");
    }
    img.executable("/srediag/xtask", &me, Some(&strip))?;
    // The agent and the test plugins: every executable cargo built into target/debug.
    let debug = dirs.root.join("target/debug");
    for e in std::fs::read_dir(&debug)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        use std::os::unix::fs::PermissionsExt as _;
        let exec = p
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if exec && name != "xtask" && !name.contains('.') {
            img.executable(&format!("{G_BIN}/{name}"), &p, Some(&strip))?;
        }
    }
    for (file, p) in bins {
        // Test binaries are named `<file>-<hash>`: strip into a directory of their own.
        img.executable(&format!("{G_TESTS}/{file}"), p, Some(&strip.join("tests")))?;
    }
    // The bundles as built and signed (never stripped: the digests are signed), the policy and
    // the development public key it names; never the private key.
    let b = dirs.root.join("target/bundles");
    img.tree(
        &format!("{G_BUNDLES}/debug/plugins"),
        &b.join("debug/plugins"),
        &[],
    )?;
    img.file(
        &format!("{G_BUNDLES}/dev-trust.yaml"),
        &b.join("dev-trust.yaml"),
        0o644,
    );
    img.file(
        &format!("{G_BUNDLES}/dev-key/cosign.pub"),
        &b.join("dev-key/cosign.pub"),
        0o644,
    );
    // bpftool: the observer tests list what is loaded. python3: the agent's cgroup tests use it
    // as the memory hog and the busy loop (the interpreter and its pure-Python library, ~24 MB).
    for tool in ["/usr/sbin/bpftool"] {
        if Path::new(tool).is_file() {
            img.executable(tool, Path::new(tool), None)?;
        }
    }
    if let Ok(py) = std::fs::canonicalize("/usr/bin/python3") {
        let name = py.file_name().and_then(|n| n.to_str()).unwrap_or("python3");
        img.executable(&format!("/usr/bin/{name}"), &py, None)?;
        img.symlink("/usr/bin/python3", name);
        let lib = Path::new("/usr/lib").join(name);
        if lib.is_dir() {
            img.tree(
                &format!("/usr/lib/{name}"),
                &lib,
                &[
                    "test",
                    "idlelib",
                    "tkinter",
                    "lib2to3",
                    "ensurepip",
                    "pydoc_data",
                    "site-packages",
                    "dist-packages",
                    "unittest",
                    "distutils",
                    "turtledemo",
                    "venv",
                    "config-3.11-x86_64-linux-gnu",
                ],
            )?;
        }
    }
    img.bytes(
        "/srediag/plan.json",
        serde_json::to_vec_pretty(plan)?,
        0o644,
    );
    Ok(img)
}
