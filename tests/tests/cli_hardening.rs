//! Issue 11, the command line as an attacker with a local unprivileged account meets it: a user
//! racing `srediag plugin install` from a directory they can write, hostile trust policy files,
//! a planted symlink where the file exporter writes, a foreign key file under `plugin keygen
//! --force`, and secrets from the environment in `print-config` / `validate`.
//!
//! Tests that change file owners or run a process as `nobody` need root (CI runs as root and
//! never skips them).

use serde_json::Value;
use srediag_tests::bundles::*;
use srediag_tests::plugins::privileged;
use srediag_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn run(args: &[&str]) -> CmdOutput {
    let out = srediag(args, T);
    out.assert_no_panic();
    out
}

/// `srediag ARGS` with extra environment variables.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let out = Command::new(agent_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run srediag");
    let out = CmdOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    out.assert_no_panic();
    out
}

fn p(x: &Path) -> String {
    x.display().to_string()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn chown_tree(path: &Path, uid: u32) {
    chown(path, uid);
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Every regular file under `dir` (not following symlinks).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => out.extend(files_under(&path)),
            Ok(m) if m.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A signed bundle `dedup` 1.0.0 at `dir` whose entrypoint is `size` bytes (executable).
fn signed_bundle(dir: &Path, key: &Path, size: usize) {
    let parent = dir.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let bin = parent.join("dedup.bin");
    let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&bin, body).unwrap();
    make_bundle(dir, "dedup", "processor", "1.0.0", &bin, "");
    chmod(&dir.join("bin/dedup"), 0o755);
    sign(dir, key);
}

/// The racers (run as nobody): `swap` exchanges, `read` reads (see the test).
const RACER: &str = r#"
import ctypes, glob, os, sys
src, work, pdir, marker, stop, leak, role = sys.argv[1:8]
libc = ctypes.CDLL(None, use_errno=True)
def exchange(a, b):
    libc.renameat2(-100, a.encode(), -100, b.encode(), 2)
if role == "swap":
    f, fl = src + "/bin/dedup", work + "/dedup.lnk"
    d, dl = src + "/bin", work + "/bin.lnk"
    while not os.path.exists(stop):
        for _ in range(200):
            exchange(f, fl); exchange(d, dl); exchange(d, dl); exchange(f, fl)
else:
    m = marker.encode()
    while not os.path.exists(stop):
        for p in glob.glob(pdir + "/.install-*/bin/*") + glob.glob(pdir + "/dedup/bin/*"):
            try:
                with open(p, "rb") as fh:
                    if m in fh.read():
                        with open(leak, "a") as out:
                            out.write(p + "\n")
            except OSError:
                pass
"#;

/// The attack of issue 11 point 3: `nobody` owns the source bundle and, while root runs `plugin
/// install` over and over, swaps the entrypoint for a symlink to a root-only secret (and the
/// `bin` directory for a symlink to the secret's directory), and tries to read anything under
/// the plugin directory. Meanwhile a root thread samples the staging directories.
///
/// Must hold: the unprivileged user never reads the secret; no staging file that is readable by
/// others (not 0600) ever holds it; the installed tree never holds it; installed modes are the
/// documented ones (directories 0755, files 0644, executables 0755, owned by root).
#[test]
fn install_copies_through_fds_while_an_unprivileged_user_swaps_files() {
    if !privileged("install_copies_through_fds_while_an_unprivileged_user_swaps_files") {
        return;
    }
    let d = TempDir::new().unwrap();
    let root = d.path();
    chmod(root, 0o755);
    let marker = format!("ROOT-ONLY-SECRET-{}", std::process::id());
    let secret_dir = root.join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    chmod(&secret_dir, 0o700);
    let secret = secret_dir.join("dedup");
    std::fs::write(&secret, format!("{marker}\n").repeat(1000)).unwrap();
    chmod(&secret, 0o600);
    let (key, public) = keygen(&root.join("keys"));
    let policy = root.join("trust.yaml");
    write_policy(&policy, &public, false);
    // The source: a signed bundle with a 4 MiB entrypoint (wide copy windows), owned by nobody.
    let src = root.join("src/dedup");
    signed_bundle(&src, &key, 4 << 20);
    chown_tree(&root.join("src"), NOBODY);
    let work = root.join("racer");
    std::fs::create_dir(&work).unwrap();
    // The swap partners live outside the bundle: at rest the bundle holds regular files only.
    std::os::unix::fs::symlink(&secret, work.join("dedup.lnk")).unwrap();
    std::os::unix::fs::symlink(&secret_dir, work.join("bin.lnk")).unwrap();
    chown_tree(&work, NOBODY);
    let pdir = root.join("plugins");
    let stop = work.join("stop");
    let leak = work.join("leak");
    // Two racers as nobody: one exchanges (renameat2 RENAME_EXCHANGE, microseconds apart) the
    // entrypoint with a symlink to the secret and `bin` with a symlink to the secret's
    // directory; one reads whatever it can under the plugin directory.
    let racer = |role: &str| {
        let child = Command::new(python())
            .arg("-c")
            .arg(RACER)
            .args([
                p(&src),
                p(&work),
                p(&pdir),
                marker.clone(),
                p(&stop),
                p(&leak),
                role.to_string(),
            ])
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn a racer as nobody");
        ChildGuard::new(role, child)
    };
    let mut racers = [racer("swap"), racer("read")];
    // The root-side sampler of staging directories. While a staging directory is private
    // (0700), everything in it must be 0700/0600; once others may enter it, every file in it
    // must be complete and exactly a signed file (it was verified). Any file others can read
    // must not hold the secret.
    let signed: BTreeMap<String, Vec<u8>> = ["bin/dedup", "manifest.yaml", "manifest.sig"]
        .iter()
        .map(|r| (r.to_string(), std::fs::read(src.join(r)).unwrap()))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pdir, marker) = (done.clone(), pdir.clone(), marker.clone());
        std::thread::spawn(move || {
            let (mut seen, mut bad) = (0u64, BTreeSet::new());
            while !done.load(Ordering::Relaxed) {
                let Ok(rd) = std::fs::read_dir(&pdir) else {
                    std::thread::yield_now();
                    continue;
                };
                for e in rd.flatten() {
                    if !e.file_name().to_string_lossy().starts_with(".install-") {
                        continue;
                    }
                    let stage = e.path();
                    let Ok(sm) = std::fs::symlink_metadata(&stage) else {
                        continue;
                    };
                    seen += 1;
                    let private = sm.mode() & 0o077 == 0;
                    for f in files_under(&stage) {
                        let Ok(m) = std::fs::symlink_metadata(&f) else {
                            continue;
                        };
                        let rel = f.strip_prefix(&stage).unwrap().display().to_string();
                        let fm = m.mode() & 0o7777;
                        let parent = std::fs::symlink_metadata(f.parent().unwrap())
                            .map(|m| m.mode() & 0o7777)
                            .unwrap_or(0o700);
                        if private && (fm != 0o600 || parent != 0o700) {
                            bad.insert(format!(
                                "{rel}: mode {fm:o} in a {parent:o} directory while the staging directory is private"
                            ));
                        }
                        let Ok(bytes) = std::fs::read(&f) else {
                            continue;
                        };
                        if !private && signed.get(&rel) != Some(&bytes) {
                            // Re-check: the tree may have been renamed away meanwhile.
                            if std::fs::symlink_metadata(&stage).is_ok() {
                                bad.insert(format!(
                                    "{rel}: unverified content ({} bytes) in a staging directory others can enter",
                                    bytes.len()
                                ));
                            }
                        }
                        if fm & 0o077 != 0 && contains(&bytes, marker.as_bytes()) {
                            bad.insert(format!("{rel}: the secret, mode {fm:o}"));
                        }
                    }
                }
            }
            (seen, bad)
        })
    };
    let (mut installed, mut refused) = (0, 0);
    for i in 0..40 {
        let out = run(&[
            "plugin",
            "install",
            &p(&src),
            "--policy",
            &p(&policy),
            "--plugin-dir",
            &p(&pdir),
        ]);
        match out.code() {
            0 => installed += 1,
            65 | 66 => refused += 1,
            c => panic!("install {i}: exit {c}\n{}", out.stderr),
        }
        for f in files_under(&pdir.join("dedup")) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !contains(&bytes, marker.as_bytes()),
                "install {i}: the secret was installed as {}",
                f.display()
            );
        }
    }
    std::fs::write(&stop, "").unwrap();
    done.store(true, Ordering::Relaxed);
    let (seen, bad) = sampler.join().unwrap();
    eprintln!(
        "{installed} installed, {refused} refused; staging directories seen {seen} times by the sampler"
    );
    assert!(bad.is_empty(), "staging directories: {bad:#?}");
    assert!(
        !leak.exists(),
        "the unprivileged user read the secret: {}",
        std::fs::read_to_string(&leak).unwrap_or_default()
    );
    assert!(seen > 0, "the sampler never saw a staging directory");
    // Without the racers, the bundle installs; the installed tree has the documented modes.
    for r in &mut racers {
        let st = r.wait_exit(Duration::from_secs(30));
        assert!(st.success(), "a racer failed: {st}");
    }
    assert!(
        std::fs::symlink_metadata(src.join("bin/dedup"))
            .unwrap()
            .is_file()
    );
    let out = run(&[
        "plugin",
        "install",
        &p(&src),
        "--policy",
        &p(&policy),
        "--plugin-dir",
        &p(&pdir),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let inst = pdir.join("dedup");
    for (rel, want) in [
        ("", 0o755),
        ("bin", 0o755),
        ("bin/dedup", 0o755),
        ("manifest.yaml", 0o644),
        ("manifest.sig", 0o644),
    ] {
        let f = inst.join(rel);
        assert_eq!(mode(&f), want, "{}", f.display());
        assert_eq!(std::fs::symlink_metadata(&f).unwrap().uid(), 0);
    }
    let left: Vec<_> = std::fs::read_dir(&pdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["dedup"], "staging directories left behind");
}

/// A plugin directory others can write is refused before anything is copied.
#[test]
fn install_refuses_a_plugin_directory_others_can_write() {
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(&d.path().join("keys"));
    let policy = d.path().join("trust.yaml");
    write_policy(&policy, &public, false);
    let src = d.path().join("src/dedup");
    signed_bundle(&src, &key, 1024);
    let pdir = d.path().join("plugins");
    std::fs::create_dir(&pdir).unwrap();
    chmod(&pdir, 0o777);
    let out = run(&[
        "plugin",
        "install",
        &p(&src),
        "--policy",
        &p(&policy),
        "--plugin-dir",
        &p(&pdir),
    ]);
    assert_eq!(out.code(), 78, "{}", out.stderr);
    assert!(
        out.stderr.contains(&p(&pdir)) && out.stderr.contains("writable by group or others"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&pdir).unwrap().count(), 0);
}

/// `plugin verify` with `policy` (and the bundle signed by `key`): exit code and stderr.
fn verify(bundle: &Path, policy: &Path) -> CmdOutput {
    run(&["plugin", "verify", &p(bundle), "--policy", &p(policy)])
}

fn assert_p017(out: &CmdOutput, file: &Path, problem: &str) {
    assert_eq!(out.code(), 78, "{}", out.stderr);
    let line = out
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("SRD-P017"))
        .unwrap_or_else(|| panic!("no SRD-P017 line:\n{}", out.stderr));
    assert!(
        line.contains(&p(file)) && line.contains(problem),
        "expected {} and {problem:?} in: {line}",
        file.display()
    );
}

/// Issue 11 point 4 through `plugin verify`: each hostile policy setup is refused with SRD-P017
/// naming the file and the problem; the same bundle verifies with a sound policy.
#[test]
fn verify_refuses_hostile_policy_files() {
    if !privileged("verify_refuses_hostile_policy_files") {
        return;
    }
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(&d.path().join("keys"));
    let bundle = d.path().join("src/dedup");
    signed_bundle(&bundle, &key, 1024);
    let pol = d.path().join("pol");
    std::fs::create_dir(&pol).unwrap();
    let good = pol.join("trust.yaml");
    write_policy(&good, &public, false);
    assert_eq!(verify(&bundle, &good).code(), 0, "the sound policy");

    // World-writable policy (root-owned).
    let w = pol.join("writable.yaml");
    write_policy(&w, &public, true);
    chmod(&w, 0o666);
    assert_p017(
        &verify(&bundle, &w),
        &w,
        "writable by group or others (mode 0666",
    );
    // Owned by nobody, allow_unsigned: true.
    let n = pol.join("nobody.yaml");
    write_policy(&n, &public, true);
    chown(&n, NOBODY);
    assert_p017(&verify(&bundle, &n), &n, "owned by uid 65534");
    // A symlink to the sound policy.
    let l = pol.join("link.yaml");
    std::os::unix::fs::symlink(&good, &l).unwrap();
    assert_p017(&verify(&bundle, &l), &l, "is a symlink");
    // A key file owned by nobody.
    let k = pol.join("nobody.pub");
    std::fs::copy(&public, &k).unwrap();
    chown(&k, NOBODY);
    let kp = pol.join("key-nobody.yaml");
    write_policy(&kp, &k, false);
    assert_p017(&verify(&bundle, &kp), &k, "owned by uid 65534");
    // A trusted root owned by nobody.
    let tr = pol.join("root.json");
    std::fs::write(&tr, "{}").unwrap();
    chown(&tr, NOBODY);
    let tp = pol.join("root-nobody.yaml");
    std::fs::write(
        &tp,
        format!(
            "identities: [{{issuer: 'https://issuer.example', identity: 'a@example.org'}}]\ntrusted_root: {}\n",
            tr.display()
        ),
    )
    .unwrap();
    assert_p017(&verify(&bundle, &tp), &tr, "owned by uid 65534");
    // A group-writable directory holding a sound policy.
    let gw = d.path().join("gw");
    std::fs::create_dir(&gw).unwrap();
    let g = gw.join("trust.yaml");
    write_policy(&g, &public, false);
    chmod(&gw, 0o775);
    assert_p017(
        &verify(&bundle, &g),
        &gw,
        "directory is writable by group or others",
    );
}

/// Issue 11 point 8: `plugin keygen --force` over a 0666 key file owned by someone else writes a
/// new file (new inode, 0600, root-owned); whoever held the old file open reads no key.
#[test]
fn keygen_force_writes_a_fresh_private_file() {
    if !privileged("keygen_force_writes_a_fresh_private_file") {
        return;
    }
    let d = TempDir::new().unwrap();
    let dir = d.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    let key = dir.join("cosign.key");
    std::fs::write(&key, "planted\n").unwrap();
    chmod(&key, 0o666);
    chown(&key, NOBODY);
    let old_ino = std::fs::metadata(&key).unwrap().ino();
    let held = std::fs::File::open(&key).unwrap();
    // Without --force: refused, untouched.
    let out = run(&["plugin", "keygen", "--output-dir", &p(&dir)]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "planted\n");
    let out = run(&["plugin", "keygen", "--output-dir", &p(&dir), "--force"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let m = std::fs::symlink_metadata(&key).unwrap();
    assert_ne!(
        m.ino(),
        old_ino,
        "the key was written into the planted file"
    );
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.nlink()), (0, 1));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &held, &mut old).unwrap();
    assert_eq!(old, "planted\n", "the old file received the key");
    assert_eq!(mode(&dir.join("cosign.pub")), 0o644);
}

fn agent_config(tel: u16, path: &Path) -> String {
    format!(
        "receivers:\n  hostmetrics:\n    collection_interval: 1s\nexporters:\n  file:\n    path: {}\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{tel}\n  pipelines:\n    metrics:\n      receivers: [hostmetrics]\n      exporters: [file]\n",
        path.display()
    )
}

/// Issue 11 point 8: a symlink planted where the file exporter writes makes `srediag run` fail at
/// once with one line naming the path; the file it points at is unchanged. Without the symlink
/// the output is created 0640.
#[test]
fn file_exporter_refuses_a_planted_symlink_and_writes_0640() {
    let d = TempDir::new().unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, "root:x:0:0\n").unwrap();
    chmod(&victim, 0o600);
    let out_dir = d.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let path = out_dir.join("metrics.jsonl");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(&cfg, agent_config(free_port(), &path)).unwrap();
    let t0 = Instant::now();
    let out = srediag(&["run", "--config", &p(&cfg)], Duration::from_secs(20));
    out.assert_no_panic();
    assert_ne!(out.code(), 0);
    let lines = out.stderr_lines();
    let err = lines
        .iter()
        .find(|l| l.starts_with("srediag: error:"))
        .unwrap_or_else(|| panic!("no error line:\n{}", out.stderr));
    assert!(err.contains(&p(&path)) && err.contains("symlink"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
    assert_eq!(mode(&victim), 0o600);
    // Without the symlink: the agent writes, 0640.
    std::fs::remove_file(&path).unwrap();
    let tel = free_port();
    let run_dir = d.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let _agent = Agent::start(&run_dir, &agent_config(tel, &path), tel);
    poll_until(
        Duration::from_secs(20),
        "the file exporter's output",
        || (std::fs::metadata(&path).ok()?.len() > 0).then_some(()),
    );
    assert_eq!(mode(&path), 0o640);
}

const SECRET: &str = "s3cr3t-bearer-8d1e";

fn secret_config(dir: &Path, tel: u16) -> PathBuf {
    let f = dir.join("c.yaml");
    std::fs::write(
        &f,
        format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  otlp:
    endpoint: http://127.0.0.1:4318
    headers:
      authorization: Bearer ${{env:SREDIAG_TEST_TOKEN}}
      x-api-key: literal-api-key-value
  file:
    path: {}/out-${{env:SREDIAG_TEST_TOKEN}}.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp, file]
",
            dir.display()
        ),
    )
    .unwrap();
    f
}

/// Issue 11 point 9: a secret from the environment, used in a header and in another setting,
/// appears in no output of `print-config` (yaml, json, table) nor of `validate` (also when the
/// setting that uses it is wrong); what print-config prints loads back.
#[test]
fn print_config_and_validate_show_no_secret() {
    let d = TempDir::new().unwrap();
    let cfg = secret_config(d.path(), free_port());
    let env = [("SREDIAG_TEST_TOKEN", SECRET)];
    let mut printed = Vec::new();
    for fmt in ["yaml", "json", "table"] {
        let out = run_env(&["-o", fmt, "print-config", "--config", &p(&cfg)], &env);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains(SECRET) && !text.contains("literal-api-key-value"),
                "-o {fmt} shows a secret:\n{text}"
            );
        }
        assert!(
            out.stdout.contains("Bearer ${env:SREDIAG_TEST_TOKEN}")
                && out.stdout.contains("<redacted>"),
            "-o {fmt}:\n{}",
            out.stdout
        );
        printed.push(out.stdout);
    }
    let json: Value = serde_json::from_str(&printed[1]).expect("print-config -o json");
    assert_eq!(
        json["exporters"]["otlp"]["headers"]["x-api-key"],
        "<redacted>"
    );
    // Round trip: the printed YAML validates and prints the same.
    let again = d.path().join("printed.yaml");
    std::fs::write(&again, &printed[0]).unwrap();
    let out = run_env(&["validate", "--config", &p(&again)], &env);
    assert_eq!(out.code(), 0, "{}\n{}", out.stderr, printed[0]);
    let out = run_env(&["print-config", "--config", &p(&again)], &env);
    assert_eq!(out.stdout, printed[0]);
    // Errors in the header and in another setting that quotes its value.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "Bearer ${env:SREDIAG_TEST_TOKEN}",
            "${env:SREDIAG_TEST_NUMBER}",
        )
        .replace(
            "  file:\n",
            "  otlp/b:\n    endpoint: ${env:SREDIAG_TEST_TOKEN}\n  file:\n",
        )
        .replace("[otlp, file]", "[otlp, otlp/b, file]");
    let bad = d.path().join("bad.yaml");
    std::fs::write(&bad, text).unwrap();
    let env = [
        ("SREDIAG_TEST_TOKEN", SECRET),
        ("SREDIAG_TEST_NUMBER", "98765432101"),
    ];
    for fmt in ["table", "json"] {
        let out = run_env(&["-o", fmt, "validate", "--config", &p(&bad)], &env);
        assert_eq!(out.code(), 78, "{}", out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("exporters.otlp.headers.authorization")
                && all.contains("exporters.otlp/b.endpoint"),
            "{all}"
        );
        assert!(
            !all.contains(SECRET) && !all.contains("98765432101"),
            "validate -o {fmt} shows a secret:\n{all}"
        );
    }
}
