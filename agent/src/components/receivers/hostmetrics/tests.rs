//! Unit tests: fixture `/proc` files under a temporary `root_path`, plus one scrape of this host.

use super::*;
use crate::model::common::any_value::Value as AnyValue;
use crate::model::metrics::metric::Data;
use crate::model::metrics::{AggregationTemporality, number_data_point};
use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Fixtures

const STAT: &str = "\
cpu  300 10 200 5000 40 5 6 7 0 0
cpu0 100 4 90 2500 20 2 3 3 0 0
cpu2 200 6 110 2500 20 3 3 4 0 0
intr 12345 0 0 0
ctxt 243596
btime 1700000000
processes 7547
procs_running 3
procs_blocked 0
softirq 1 2 3
";

const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         4000000 kB
MemAvailable:    9000000 kB
Buffers:          500000 kB
Cached:          3000000 kB
SwapCached:            0 kB
Active:          5000000 kB
SwapTotal:             0 kB
Slab:             500000 kB
SReclaimable:     400000 kB
SUnreclaim:       100000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

const LOADAVG: &str = "0.52 1.25 2.00 3/456 7890\n";

const DISKSTATS: &str = "\
   7       0 loop0 10 0 80 1 0 0 0 0 0 1 1 0 0 0 0
   1       0 ram0 5 0 5 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 15561 4966 2163090 9484 2175 19420 1667712 12137 0 6652 22425 3669 65 50960 787 57 16
 254       1 vda1 100 0 800 10 50 0 400 5 0 30 15
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 this line is garbage
";

const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0: 56021554    3373    1    2    0     0          0         0   288889    2740    3    4    0     0       0          0
veth1a2b:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
";

/// mountinfo with mount points below `root` (as a container sees the host at `/hostfs`).
fn mountinfo(root: &Path) -> String {
    let r = root.display();
    format!(
        "\
21 1 8:1 / {r} rw,relatime shared:1 - ext4 /dev/sda1 rw
22 21 0:5 / {r}/proc rw,nosuid - proc proc rw
23 21 8:2 / {r}/boot rw,relatime - ext4 /dev/sda2 rw
24 21 8:3 / {r}/mnt/my\\040disk ro,relatime - xfs /dev/sdb1 ro
25 21 8:4 / {r}/data rw - ext4 /dev/sdc0 rw
26 25 8:5 / {r}/data rw master:3 - ext4 /dev/sdc1 rw
27 21 0:40 / {r}/stale rw - nfs4 server:/export rw
28 21 0:41 / {r}/zero rw - tmpfs tmpfs rw
29 1 0:42 / /etc/hosts rw - ext4 /dev/vda rw
30 21 0:43 / {r}/var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
this is not a mountinfo line
"
    )
}

/// statvfs(2) for the fixture mounts, by the mount's last path component.
fn fake_statfs(path: &Path) -> io::Result<FsStat> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name {
        "stale" => Err(io::Error::from_raw_os_error(libc::ESTALE)),
        "zero" => Ok(FsStat {
            blocks: 0,
            bfree: 0,
            bavail: 0,
            frsize: 4096,
        }),
        "data" => Ok(FsStat {
            blocks: 500,
            bfree: 100,
            bavail: 50,
            frsize: 1024,
        }),
        _ => Ok(FsStat {
            blocks: 1000,
            bfree: 400,
            bavail: 300,
            frsize: 4096,
        }),
    }
}

fn failing_statfs(_: &Path) -> io::Result<FsStat> {
    Err(io::Error::from_raw_os_error(libc::EACCES))
}

/// A root with every fixture file.
fn fixture_root() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("proc/net")).unwrap();
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("proc/stat"), STAT).unwrap();
    fs::write(root.join("proc/meminfo"), MEMINFO).unwrap();
    fs::write(root.join("proc/loadavg"), LOADAVG).unwrap();
    fs::write(root.join("proc/diskstats"), DISKSTATS).unwrap();
    fs::write(root.join("proc/net/dev"), NET_DEV).unwrap();
    fs::write(root.join("proc/self/mountinfo"), mountinfo(root)).unwrap();
    fs::write(root.join("etc/hostname"), "fixture-host\n").unwrap();
    dir
}

fn fixture_config(root: &Path) -> Config {
    Config {
        root_path: root.to_path_buf(),
        ..Config::default()
    }
}

/// A scraper over `cfg` with a fixed USER_HZ of 100 and the fake statvfs(2).
fn fixture_scraper(cfg: &Config) -> Scraper {
    let mut s = Scraper::new(cfg);
    s.clk_tck = 100;
    s.statfs = fake_statfs;
    s
}

// ---------------------------------------------------------------------------------------------
// Reading the result

#[derive(Debug, Clone, Copy, PartialEq)]
enum V {
    I(i64),
    F(f64),
}

impl V {
    fn f(self) -> f64 {
        match self {
            V::I(i) => i as f64,
            V::F(f) => f,
        }
    }
}

type Attrs = BTreeMap<String, String>;

fn metrics_of(m: &Metrics) -> &[Metric] {
    assert_eq!(m.resource_metrics.len(), 1);
    assert_eq!(m.resource_metrics[0].scope_metrics.len(), 1);
    &m.resource_metrics[0].scope_metrics[0].metrics
}

fn find<'a>(m: &'a Metrics, name: &str) -> Option<&'a Metric> {
    metrics_of(m).iter().find(|x| x.name == name)
}

fn names(m: &Metrics) -> Vec<&str> {
    metrics_of(m).iter().map(|x| x.name.as_str()).collect()
}

fn points(m: &Metrics, name: &str) -> Vec<(Attrs, V)> {
    let metric = find(m, name).unwrap_or_else(|| panic!("no metric {name} in {:?}", names(m)));
    let pts = match &metric.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{name}: unexpected data {other:?}"),
    };
    pts.iter()
        .map(|p| {
            let attrs = p
                .attributes
                .iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(AnyValue::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (kv.key.clone(), v)
                })
                .collect();
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => V::I(i),
                Some(number_data_point::Value::AsDouble(f)) => V::F(f),
                None => panic!("{name}: point without value"),
            };
            (attrs, v)
        })
        .collect()
}

/// The one point of `name` whose attributes include `want`.
fn value(m: &Metrics, name: &str, want: &[(&str, &str)]) -> V {
    let found: Vec<V> = points(m, name)
        .into_iter()
        .filter(|(a, _)| {
            want.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0]
}

/// The distinct values of attribute `key` on `name`'s points.
fn attr_values(m: &Metrics, name: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = points(m, name)
        .into_iter()
        .filter_map(|(a, _)| a.get(key).cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// (is a sum, monotonic, unit) of `name`; checks that sums are cumulative.
fn shape(m: &Metrics, name: &str) -> (bool, bool, String) {
    let metric = find(m, name).unwrap();
    match &metric.data {
        Some(Data::Sum(s)) => {
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            (true, s.is_monotonic, metric.unit.clone())
        }
        Some(Data::Gauge(_)) => (false, false, metric.unit.clone()),
        other => panic!("{name}: {other:?}"),
    }
}

fn kib(v: i64) -> V {
    V::I(v * 1024)
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn default_config_is_valid_and_documented_defaults_hold() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    assert_eq!(c.scrapers, ScraperKind::ALL.to_vec());
    assert_eq!(c.root_path, PathBuf::from("/"));
    assert_eq!(c.network.exclude_interfaces, vec!["lo".to_string()]);
    let types = &c.filesystem.exclude_fs_types;
    for t in ["proc", "sysfs", "cgroup2", "squashfs", "nsfs"] {
        assert!(types.contains(&t.to_string()), "{t} not excluded");
    }
    for t in ["tmpfs", "overlay", "ext4"] {
        assert!(!types.contains(&t.to_string()), "{t} excluded");
    }
    assert!(c.filesystem.exclude_mount_points.is_empty());
}

#[test]
fn config_parses_from_yaml_with_defaults_filled_in() {
    let c: Config = serde_yaml::from_str(
        "collection_interval: 30s\nscrapers: [cpu, filesystem]\nroot_path: /hostfs\nnetwork:\n  exclude_interfaces: [lo, 'veth*']\n",
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.collection_interval, Duration::from_secs(30));
    assert_eq!(c.scrapers, vec![ScraperKind::Cpu, ScraperKind::Filesystem]);
    assert_eq!(c.root_path, PathBuf::from("/hostfs"));
    assert_eq!(c.network.exclude_interfaces, vec!["lo", "veth*"]);
    assert_eq!(c.filesystem, FilesystemConfig::default());

    let empty: Config = serde_yaml::from_str("{}").unwrap();
    assert_eq!(empty, Config::default());

    let ms: Config = serde_yaml::from_str("collection_interval: 1m 30s").unwrap();
    assert_eq!(ms.collection_interval, Duration::from_secs(90));
}

#[test]
fn config_round_trips_through_yaml() {
    let c = Config::default();
    let text = serde_yaml::to_string(&c).unwrap();
    assert!(text.contains("collection_interval: 10s"), "{text}");
    let back: Config = serde_yaml::from_str(&text).unwrap();
    assert_eq!(back, c);
}

#[test]
fn config_rejects_unknown_keys_and_values() {
    for yaml in [
        "colection_interval: 10s",
        "network:\n  exclude_interface: [lo]",
        "filesystem:\n  exclude_fstypes: [proc]",
        "scrapers: [cpu, paging]",
        "collection_interval: ten seconds",
        "collection_interval: 10",
    ] {
        let r: Result<Config, _> = serde_yaml::from_str(yaml);
        assert!(r.is_err(), "accepted {yaml:?}");
    }
    let e = serde_yaml::from_str::<Config>("colection_interval: 10s")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `colection_interval`"), "{e}");
}

#[test]
fn validate_rejects_bad_settings() {
    let check = |c: Config, needle: &str| {
        let e = c.validate().unwrap_err();
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    };
    check(
        Config {
            collection_interval: Duration::from_millis(500),
            ..Config::default()
        },
        "at least 1s, got 500ms",
    );
    check(
        Config {
            scrapers: vec![],
            ..Config::default()
        },
        "at least one",
    );
    check(
        Config {
            scrapers: vec![ScraperKind::Cpu, ScraperKind::Disk, ScraperKind::Cpu],
            ..Config::default()
        },
        "cpu more than once",
    );
    check(
        Config {
            root_path: PathBuf::from("hostfs"),
            ..Config::default()
        },
        "absolute",
    );
    let mut c = Config::default();
    c.network.exclude_interfaces.push(String::new());
    check(c, "network.exclude_interfaces contains an empty pattern");

    let ok = Config {
        collection_interval: Duration::from_secs(1),
        ..Config::default()
    };
    ok.validate().unwrap();
}

#[test]
fn glob_patterns() {
    assert!(glob_match("lo", "lo"));
    assert!(!glob_match("lo", "lo0"));
    assert!(glob_match("veth*", "veth1a2b"));
    assert!(glob_match("veth*", "veth"));
    assert!(!glob_match("veth*", "eth0"));
    assert!(glob_match("*", ""));
    assert!(glob_match(
        "/var/lib/*/merged",
        "/var/lib/docker/overlay2/x/merged"
    ));
    assert!(!glob_match("/var/lib/*/merged", "/var/lib/docker/merged/x"));
    assert!(glob_match("fuse.*", "fuse.sshfs"));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("a*b*c", "aXbYbZ"));
    assert!(!glob_match("", "x"));
}

// ---------------------------------------------------------------------------------------------
// Scrapers on fixtures

#[test]
fn resource_scope_and_start_times() {
    let dir = fixture_root();
    let m = fixture_scraper(&fixture_config(dir.path()))
        .scrape()
        .unwrap();
    let rm = &m.resource_metrics[0];
    let attrs: Attrs = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => (kv.key.clone(), s.clone()),
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(
        attrs.get("host.name").map(String::as_str),
        Some("fixture-host")
    );
    assert_eq!(attrs.get("os.type").map(String::as_str), Some("linux"));
    let scope = rm.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, "srediag/hostmetrics");
    assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));

    let boot = 1_700_000_000u64 * 1_000_000_000;
    for metric in metrics_of(&m) {
        match &metric.data {
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    assert_eq!(p.start_time_unix_nano, boot, "{}", metric.name);
                    assert!(p.time_unix_nano > boot, "{}", metric.name);
                }
            }
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    assert!(p.time_unix_nano > boot, "{}", metric.name);
                }
            }
            other => panic!("{}: {other:?}", metric.name),
        }
    }
}

#[test]
fn metric_kinds_and_units_follow_the_collector() {
    let dir = fixture_root();
    let m = fixture_scraper(&fixture_config(dir.path()))
        .scrape()
        .unwrap();
    let expect = [
        ("system.cpu.time", true, true, "s"),
        ("system.cpu.logical.count", false, false, "{cpu}"),
        ("system.memory.usage", true, false, "By"),
        ("system.memory.utilization", false, false, "1"),
        ("system.cpu.load_average.1m", false, false, "1"),
        ("system.cpu.load_average.5m", false, false, "1"),
        ("system.cpu.load_average.15m", false, false, "1"),
        ("system.disk.io", true, true, "By"),
        ("system.disk.operations", true, true, "{operations}"),
        ("system.disk.io_time", true, true, "s"),
        ("system.network.io", true, true, "By"),
        ("system.network.packets", true, true, "{packets}"),
        ("system.network.errors", true, true, "{errors}"),
        ("system.network.dropped", true, true, "{packets}"),
        ("system.filesystem.usage", true, false, "By"),
        ("system.filesystem.utilization", false, false, "1"),
    ];
    let mut want: Vec<&str> = expect.iter().map(|e| e.0).collect();
    let mut got = names(&m);
    want.sort();
    got.sort();
    assert_eq!(got, want);
    for (name, sum, monotonic, unit) in expect {
        assert_eq!(
            shape(&m, name),
            (sum, monotonic, unit.to_string()),
            "{name}"
        );
    }
}

#[test]
fn cpu_times_are_ticks_over_user_hz() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Cpu],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    // Offline CPUs leave gaps: the names come from the file, not from positions.
    assert_eq!(attr_values(&m, "system.cpu.time", "cpu"), ["cpu0", "cpu2"]);
    let expected = [
        ("cpu0", [100, 4, 90, 2500, 20, 2, 3, 3]),
        ("cpu2", [200, 6, 110, 2500, 20, 3, 3, 4]),
    ];
    let states = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    for (cpu, ticks) in expected {
        for (state, t) in states.iter().zip(ticks) {
            assert_eq!(
                value(&m, "system.cpu.time", &[("cpu", cpu), ("state", state)]),
                V::F(t as f64 / 100.0),
                "{cpu} {state}"
            );
        }
    }
    assert_eq!(points(&m, "system.cpu.time").len(), 16);
    assert_eq!(value(&m, "system.cpu.logical.count", &[]), V::I(2));

    let mut s = fixture_scraper(&cfg);
    s.clk_tck = 250;
    let m = s.scrape().unwrap();
    assert_eq!(
        value(&m, "system.cpu.time", &[("cpu", "cpu2"), ("state", "user")]),
        V::F(0.8)
    );
}

#[test]
fn cpu_states_missing_on_old_kernels_are_left_out() {
    let dir = fixture_root();
    fs::write(
        dir.path().join("proc/stat"),
        "cpu  1 2 3 4\ncpu0 1 2 3 4\nctxt 1\nbtime 1700000000\nprocesses 1\n",
    )
    .unwrap();
    let cfg = Config {
        scrapers: vec![ScraperKind::Cpu],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(
        attr_values(&m, "system.cpu.time", "state"),
        ["idle", "nice", "system", "user"]
    );
    assert_eq!(
        value(&m, "system.cpu.time", &[("state", "idle")]),
        V::F(0.04)
    );
}

#[test]
fn memory_states_partition_mem_total() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Memory],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    let usage = |s: &str| value(&m, "system.memory.usage", &[("state", s)]);
    // used = MemTotal - MemFree - Buffers - Cached - SReclaimable - SUnreclaim
    assert_eq!(
        usage("used"),
        kib(16_000_000 - 4_000_000 - 500_000 - 3_000_000 - 400_000 - 100_000)
    );
    assert_eq!(usage("free"), kib(4_000_000));
    assert_eq!(usage("buffered"), kib(500_000));
    assert_eq!(usage("cached"), kib(3_000_000));
    assert_eq!(usage("slab_reclaimable"), kib(400_000));
    assert_eq!(usage("slab_unreclaimable"), kib(100_000));
    let total: i64 = points(&m, "system.memory.usage")
        .iter()
        .map(|(_, v)| match v {
            V::I(i) => *i,
            V::F(f) => panic!("double {f}"),
        })
        .sum();
    assert_eq!(total, 16_000_000 * 1024);

    let util = |s: &str| value(&m, "system.memory.utilization", &[("state", s)]);
    assert_eq!(util("used"), V::F(0.5));
    assert_eq!(util("free"), V::F(0.25));
    assert_eq!(util("slab_unreclaimable"), V::F(100_000.0 / 16_000_000.0));
    assert_eq!(points(&m, "system.memory.utilization").len(), 6);
}

#[test]
fn meminfo_without_optional_fields_still_works() {
    let dir = fixture_root();
    fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 1000 kB\nMemFree: 250 kB\nweird line\nCached: lots kB\n",
    )
    .unwrap();
    let cfg = Config {
        scrapers: vec![ScraperKind::Memory],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(
        value(&m, "system.memory.usage", &[("state", "used")]),
        kib(750)
    );
    assert_eq!(
        value(&m, "system.memory.usage", &[("state", "cached")]),
        V::I(0)
    );
}

#[test]
fn load_averages_keep_their_decimals() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Load],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(value(&m, "system.cpu.load_average.1m", &[]), V::F(0.52));
    assert_eq!(value(&m, "system.cpu.load_average.5m", &[]), V::F(1.25));
    assert_eq!(value(&m, "system.cpu.load_average.15m", &[]), V::F(2.0));
}

#[test]
fn disks_in_bytes_and_seconds_without_idle_loop_and_ram_devices() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Disk],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    // loop0 and ram0 have counters but are skipped by name, zram0 is all zeros, the garbage
    // line is skipped alone.
    assert_eq!(attr_values(&m, "system.disk.io", "device"), ["vda", "vda1"]);
    let io = |d: &str, dir: &str| value(&m, "system.disk.io", &[("device", d), ("direction", dir)]);
    assert_eq!(io("vda", "read"), V::I(2_163_090 * 512));
    assert_eq!(io("vda", "write"), V::I(1_667_712 * 512));
    assert_eq!(io("vda1", "read"), V::I(800 * 512));
    assert_eq!(io("vda1", "write"), V::I(400 * 512));
    let ops = |d: &str, dir: &str| {
        value(
            &m,
            "system.disk.operations",
            &[("device", d), ("direction", dir)],
        )
    };
    assert_eq!(ops("vda", "read"), V::I(15_561));
    assert_eq!(ops("vda", "write"), V::I(2_175));
    assert_eq!(ops("vda1", "write"), V::I(50));
    assert_eq!(
        value(&m, "system.disk.io_time", &[("device", "vda")]),
        V::F(6.652)
    );
    assert_eq!(
        value(&m, "system.disk.io_time", &[("device", "vda1")]),
        V::F(0.03)
    );
    assert_eq!(points(&m, "system.disk.io_time").len(), 2);
}

#[test]
fn network_counters_with_exclusions() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Network],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(
        attr_values(&m, "system.network.io", "device"),
        ["eth0", "veth1a2b"]
    );
    let get = |name: &str, dir: &str| value(&m, name, &[("device", "eth0"), ("direction", dir)]);
    assert_eq!(get("system.network.io", "receive"), V::I(56_021_554));
    assert_eq!(get("system.network.io", "transmit"), V::I(288_889));
    assert_eq!(get("system.network.packets", "receive"), V::I(3_373));
    assert_eq!(get("system.network.packets", "transmit"), V::I(2_740));
    assert_eq!(get("system.network.errors", "receive"), V::I(1));
    assert_eq!(get("system.network.errors", "transmit"), V::I(3));
    assert_eq!(get("system.network.dropped", "receive"), V::I(2));
    assert_eq!(get("system.network.dropped", "transmit"), V::I(4));

    let mut cfg = cfg;
    cfg.network.exclude_interfaces = vec!["veth*".to_string()];
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(
        attr_values(&m, "system.network.io", "device"),
        ["eth0", "lo"]
    );
    assert_eq!(points(&m, "system.network.io").len(), 4);
}

#[test]
fn filesystems_below_root_path_with_exclusions_and_failures() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Filesystem],
        ..fixture_config(dir.path())
    };
    let m = fixture_scraper(&cfg).scrape().unwrap();
    // /proc: excluded type; /stale: statvfs fails; /zero: zero-sized; /etc/hosts: outside
    // root_path. /data is mounted twice: the top mount (sdc1) wins.
    assert_eq!(
        attr_values(&m, "system.filesystem.usage", "mountpoint"),
        [
            "/",
            "/boot",
            "/data",
            "/mnt/my disk",
            "/var/lib/docker/overlay2/abc/merged"
        ]
    );
    let usage = |mp: &str, state: &str| {
        value(
            &m,
            "system.filesystem.usage",
            &[("mountpoint", mp), ("state", state)],
        )
    };
    assert_eq!(usage("/data", "used"), V::I(400 * 1024));
    assert_eq!(usage("/data", "free"), V::I(50 * 1024));
    assert_eq!(usage("/data", "reserved"), V::I(50 * 1024));
    assert_eq!(usage("/boot", "used"), V::I(600 * 4096));
    assert_eq!(usage("/boot", "free"), V::I(300 * 4096));
    assert_eq!(usage("/boot", "reserved"), V::I(100 * 4096));
    let util = |mp: &str| value(&m, "system.filesystem.utilization", &[("mountpoint", mp)]);
    assert_eq!(util("/data"), V::F(400.0 / 450.0));
    assert_eq!(util("/boot"), V::F(600.0 / 900.0));

    let attrs_of = |mp: &str| {
        points(&m, "system.filesystem.utilization")
            .into_iter()
            .find(|(a, _)| a["mountpoint"] == mp)
            .unwrap()
            .0
    };
    let data = attrs_of("/data");
    assert_eq!(data["device"], "/dev/sdc1");
    assert_eq!(data["type"], "ext4");
    assert_eq!(data["mode"], "rw");
    let disk = attrs_of("/mnt/my disk");
    assert_eq!(disk["device"], "/dev/sdb1");
    assert_eq!(disk["type"], "xfs");
    assert_eq!(disk["mode"], "ro");
    assert_eq!(attrs_of("/")["device"], "/dev/sda1");
    assert_eq!(points(&m, "system.filesystem.usage").len(), 5 * 3);

    let mut cfg = cfg;
    cfg.filesystem.exclude_mount_points = vec!["/var/lib/docker/*".into(), "/boot".into()];
    cfg.filesystem.exclude_fs_types.push("xfs".into());
    let m = fixture_scraper(&cfg).scrape().unwrap();
    assert_eq!(
        attr_values(&m, "system.filesystem.usage", "mountpoint"),
        ["/", "/data"]
    );
}

#[test]
fn filesystems_with_root_path_slash_keep_their_paths() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Filesystem],
        ..fixture_config(dir.path())
    };
    let mut s = fixture_scraper(&cfg);
    // Same file, read as if the root were `/`: every mount point keeps its full path.
    s.cfg.root_path = PathBuf::from("/");
    let ctx = Context {
        cfg: &s.cfg,
        start: 0,
        clk_tck: 100,
    };
    let text = mountinfo(dir.path());
    let mounts = filesystem_mounts(&ctx, &text);
    assert!(mounts.contains(&"/etc/hosts".to_string()), "{mounts:?}");
    assert!(
        mounts.contains(&format!("{}/data", dir.path().display())),
        "{mounts:?}"
    );
}

fn filesystem_mounts(ctx: &Context<'_>, text: &str) -> Vec<String> {
    filesystem::mount_points_for_test(ctx, text)
}

#[test]
fn filesystem_fails_only_when_every_mount_fails() {
    let dir = fixture_root();
    let cfg = Config {
        scrapers: vec![ScraperKind::Filesystem, ScraperKind::Load],
        ..fixture_config(dir.path())
    };
    let mut s = fixture_scraper(&cfg);
    s.statfs = failing_statfs;
    let m = s.scrape().unwrap();
    assert_eq!(
        names(&m),
        [
            "system.cpu.load_average.1m",
            "system.cpu.load_average.5m",
            "system.cpu.load_average.15m"
        ]
    );

    let cfg = Config {
        scrapers: vec![ScraperKind::Filesystem],
        ..fixture_config(dir.path())
    };
    let mut s = fixture_scraper(&cfg);
    s.statfs = failing_statfs;
    let e = s.scrape().unwrap_err().to_string();
    assert!(
        e.starts_with(
            "no host metrics collected: filesystem: statvfs failed on all 7 mounts, first "
        ),
        "{e}"
    );
    assert!(e.contains("Permission denied"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Failure isolation

#[test]
fn one_missing_file_loses_only_its_family() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "proc/stat",
            &["system.cpu.time", "system.cpu.logical.count"],
        ),
        (
            "proc/meminfo",
            &["system.memory.usage", "system.memory.utilization"],
        ),
        (
            "proc/loadavg",
            &[
                "system.cpu.load_average.1m",
                "system.cpu.load_average.5m",
                "system.cpu.load_average.15m",
            ],
        ),
        (
            "proc/diskstats",
            &[
                "system.disk.io",
                "system.disk.operations",
                "system.disk.io_time",
            ],
        ),
        (
            "proc/net/dev",
            &[
                "system.network.io",
                "system.network.packets",
                "system.network.errors",
                "system.network.dropped",
            ],
        ),
    ];
    let full = {
        let dir = fixture_root();
        let m = fixture_scraper(&fixture_config(dir.path()))
            .scrape()
            .unwrap();
        names(&m).into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (file, lost) in cases {
        let dir = fixture_root();
        fs::remove_file(dir.path().join(file)).unwrap();
        let m = fixture_scraper(&fixture_config(dir.path()))
            .scrape()
            .unwrap();
        let got = names(&m);
        let want: Vec<&str> = full
            .iter()
            .map(String::as_str)
            .filter(|n| !lost.contains(n))
            .collect();
        assert_eq!(got, want, "without {file}");
    }
    let dir = fixture_root();
    fs::remove_file(dir.path().join("proc/self/mountinfo")).unwrap();
    let m = fixture_scraper(&fixture_config(dir.path()))
        .scrape()
        .unwrap();
    assert!(find(&m, "system.filesystem.usage").is_none());
    assert!(find(&m, "system.cpu.time").is_some());
}

#[test]
fn missing_stat_loses_the_start_time_only() {
    let dir = fixture_root();
    fs::remove_file(dir.path().join("proc/stat")).unwrap();
    let m = fixture_scraper(&fixture_config(dir.path()))
        .scrape()
        .unwrap();
    let p = match &find(&m, "system.disk.io").unwrap().data {
        Some(Data::Sum(s)) => s.data_points[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(p.start_time_unix_nano, 0);
}

#[test]
fn nothing_collected_is_an_error_naming_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let e = fixture_scraper(&fixture_config(dir.path()))
        .scrape()
        .unwrap_err();
    let ScrapeError::NothingCollected(failures) = &e else {
        panic!("{e:?}")
    };
    let kinds: Vec<ScraperKind> = failures.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ScraperKind::ALL.to_vec());
    let msg = e.to_string();
    let stat = dir.path().join("proc/stat");
    assert!(
        msg.contains(&format!("cpu: cannot read {}: ", stat.display())),
        "{msg}"
    );
    assert!(msg.contains("proc/self/mountinfo"), "{msg}");
}

#[test]
fn odd_input_never_panics() {
    let garbage: [&[u8]; 9] = [
        b"",
        b"\n\n\n",
        b"\xff\xfe\x00garbage\n",
        b"cpu\ncpu0\nbtime x\n",
        b"MemTotal: 99999999999999999999 kB\nMemFree: 18446744073709551615 kB\n\xc3\x84: 5 kB\n",
        b"nan inf -1 1/2 3\n",
        b"a:b:c:\n:\n 1 2 \\\\ \\777 \\04\n",
        b"1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23\n",
        b"Inter-|\n face |\n  x: 1 2\n",
    ];
    for g in garbage {
        let dir = fixture_root();
        for f in [
            "proc/stat",
            "proc/meminfo",
            "proc/loadavg",
            "proc/diskstats",
            "proc/net/dev",
            "proc/self/mountinfo",
        ] {
            fs::write(dir.path().join(f), g).unwrap();
        }
        // Ok or Err, but no panic.
        let _ = fixture_scraper(&fixture_config(dir.path())).scrape();
    }
    // Huge meminfo values are skipped, not overflowed.
    let dir = fixture_root();
    fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 99999999999999999999 kB\nMemFree: 18446744073709551615 kB\n",
    )
    .unwrap();
    let cfg = Config {
        scrapers: vec![ScraperKind::Memory],
        ..fixture_config(dir.path())
    };
    let e = fixture_scraper(&cfg).scrape().unwrap_err().to_string();
    assert!(e.contains("no MemTotal line"), "{e}");
}

#[test]
fn parse_errors_name_the_file_in_lowercase() {
    let dir = fixture_root();
    fs::write(dir.path().join("proc/loadavg"), "0.1 0.2\n").unwrap();
    let cfg = Config {
        scrapers: vec![ScraperKind::Load],
        ..fixture_config(dir.path())
    };
    let e = fixture_scraper(&cfg).scrape().unwrap_err().to_string();
    let path = dir.path().join("proc/loadavg");
    assert!(
        e.starts_with(&format!(
            "no host metrics collected: load: cannot parse {}: ",
            path.display()
        )),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn mountinfo_escapes() {
    assert_eq!(
        filesystem::unescape_for_test(r"/mnt/a\040b\011c\134d\012e"),
        "/mnt/a b\tc\\d\ne"
    );
    // Not an escape: kept as is.
    assert_eq!(filesystem::unescape_for_test(r"/a\9x\04"), r"/a\9x\04");
    assert_eq!(filesystem::unescape_for_test(r"\777"), r"\777");
}

/// A log sink for `tracing_subscriber::fmt`.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn failures_are_warned_once_with_fields_and_recovery_is_logged() {
    let dir = fixture_root();
    let meminfo = dir.path().join("proc/meminfo");
    fs::remove_file(&meminfo).unwrap();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    // tracing-core caches a callsite's interest when it is first hit. While exactly one
    // dispatcher is registered, it asks the *hitting thread's* default, so a callsite first hit
    // by another test thread (no subscriber there) stays "never" for ours. A second live
    // dispatcher makes it ask every registered one.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::subscriber::with_default(subscriber, || {
        let mut s = fixture_scraper(&fixture_config(dir.path()));
        for _ in 0..3 {
            s.scrape().unwrap();
        }
        fs::write(&meminfo, MEMINFO).unwrap();
        s.scrape().unwrap();
    });
    let text = logs.text();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("hostmetrics scraper failed"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("WARN"), "{text}");
    assert!(warned[0].contains("scraper=memory"), "{text}");
    assert!(
        warned[0].contains(&format!("error=cannot read {}", meminfo.display())),
        "{text}"
    );
    let recovered: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("hostmetrics scraper recovered"))
        .collect();
    assert_eq!(recovered.len(), 1, "{text}");
    assert!(recovered[0].contains("INFO") && recovered[0].contains("scraper=memory"));
    // The fixture's stale NFS mount: warned at its first failure only.
    let stale: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("statvfs failed"))
        .collect();
    assert_eq!(stale.len(), 1, "{text}");
    assert!(
        stale[0].contains("stale") && stale[0].contains("WARN"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// This host

fn read_meminfo_total() -> i64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    memory::parse_meminfo(&text)["MemTotal"] as i64
}

#[test]
fn scrape_this_host() {
    let cfg = Config {
        // lo is always there, so the network family has something to report in any namespace.
        network: NetworkConfig {
            exclude_interfaces: vec![],
        },
        ..Config::default()
    };
    cfg.validate().unwrap();
    let mut s = Scraper::new(&cfg);
    let m = s.scrape().unwrap();
    for name in [
        "system.cpu.time",
        "system.cpu.logical.count",
        "system.memory.usage",
        "system.memory.utilization",
        "system.cpu.load_average.1m",
        "system.disk.io",
        "system.network.io",
        "system.filesystem.usage",
        "system.filesystem.utilization",
    ] {
        assert!(!points(&m, name).is_empty(), "{name}: {:?}", names(&m));
    }

    // Memory states sum to MemTotal (exactly, by construction; 1% for the time between reads).
    let total = read_meminfo_total();
    let sum: i64 = points(&m, "system.memory.usage")
        .iter()
        .map(|(_, v)| v.f() as i64)
        .sum();
    assert!(
        (sum - total).abs() as f64 <= total as f64 * 0.01,
        "{sum} vs {total}"
    );
    for (_, v) in points(&m, "system.memory.utilization") {
        assert!((0.0..=1.0).contains(&v.f()), "{v:?}");
    }

    // CPUs: as many as the kernel reports online, every time positive, idle time counted.
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as i64;
    assert_eq!(value(&m, "system.cpu.logical.count", &[]), V::I(online));
    assert_eq!(
        attr_values(&m, "system.cpu.time", "cpu").len() as i64,
        online
    );
    for (_, v) in points(&m, "system.cpu.time") {
        assert!(v.f() >= 0.0);
    }
    let idle: f64 = points(&m, "system.cpu.time")
        .iter()
        .filter(|(a, _)| a["state"] == "idle")
        .map(|(_, v)| v.f())
        .sum();
    assert!(idle > 0.0);

    for w in ["1m", "5m", "15m"] {
        let l = value(&m, &format!("system.cpu.load_average.{w}"), &[]).f();
        assert!((0.0..10_000.0).contains(&l), "{w}: {l}");
    }
    assert!(!attr_values(&m, "system.network.io", "device").is_empty());

    // The root file system is reported, with a sane utilization.
    assert!(
        attr_values(&m, "system.filesystem.usage", "mountpoint").contains(&"/".to_string()),
        "{:?}",
        attr_values(&m, "system.filesystem.usage", "mountpoint")
    );
    let root_util = value(&m, "system.filesystem.utilization", &[("mountpoint", "/")]).f();
    assert!((0.0..=1.0).contains(&root_util), "{root_util}");

    // Start time: boot, in the past.
    let start = match &find(&m, "system.cpu.time").unwrap().data {
        Some(Data::Sum(s)) => s.data_points[0].start_time_unix_nano,
        _ => unreachable!(),
    };
    assert!(start > 0 && start < now_nanos());

    // Cost: one scrape, on this machine, in this (debug) build.
    let n = 20;
    let t0 = Instant::now();
    let mut count = 0;
    for _ in 0..n {
        count = crate::model::metric_point_count(&s.scrape().unwrap());
    }
    let per = t0.elapsed() / n;
    eprintln!(
        "hostmetrics: {count} points, {} metrics, {per:?} per scrape",
        metrics_of(&m).len()
    );
}
