use super::*;

#[test]
fn paths_under_proc_are_left_to_the_child_with_their_rights() {
    if let Err(e) = abi_version() {
        eprintln!("skipping: this kernel has no landlock ({e})");
        return;
    }
    let spec = LandlockSpec {
        read_exec: vec!["/usr/lib".into()],
        read_only: vec![
            "/proc".into(),
            "/proc/meminfo".into(),
            "/etc/hostname".into(),
            "/proc/no-such-file".into(),
        ],
        read_write: vec![],
        network: TcpPorts::default(),
        allow_degraded: true,
    };
    let (_rs, later) = Ruleset::build_deferring(&spec, &[Path::new("/proc")]).unwrap();
    assert_eq!(
        later,
        [
            (PathBuf::from("/proc"), fs::READ_FILE | fs::READ_DIR),
            // A file: directory rights are dropped, as for the agent's own rules.
            (PathBuf::from("/proc/meminfo"), fs::READ_FILE),
        ]
    );
    // Without deferral everything is added at once.
    let (_rs, none) = Ruleset::build_inner(&spec, &[]).unwrap();
    assert!(none.is_empty());
}

fn spec(network: TcpPorts, allow_degraded: bool) -> LandlockSpec {
    LandlockSpec {
        network,
        allow_degraded,
        ..Default::default()
    }
}

/// Debian 12's kernel has ABI 2, Ubuntu 22.04's ABI 1: a plugin without the network (own
/// network and pid namespaces) needs only the filesystem rules and starts there; a plugin
/// granted ports needs TCP port rules (4) and abstract-socket scoping (6), and fails closed
/// naming both.
#[test]
fn the_required_abi_follows_the_grants() {
    let none = spec(TcpPorts::default(), false);
    let granted = spec(
        TcpPorts {
            connect: vec![443],
            bind: vec![],
        },
        false,
    );
    assert_eq!((required_abi(false), required_abi(true)), (1, 6));
    for abi in 1..=7 {
        assert_eq!(
            enforcement_at(&none, Ok(abi)).unwrap(),
            Enforcement::Full { abi },
            "no network, ABI {abi}"
        );
    }
    for abi in 1..=5 {
        let e = enforcement_at(&granted, Ok(abi)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("kernel ABI {abi}: needs "))
                && e.contains("ABI 6 for abstract unix socket scoping"),
            "ABI {abi}: {e}"
        );
        assert_eq!(
            e.contains("ABI 4 for TCP port rules (the plugin's network grant)"),
            abi < 4,
            "ABI {abi}: {e}"
        );
    }
    assert_eq!(
        enforcement_at(&granted, Ok(6)).unwrap(),
        Enforcement::Full { abi: 6 }
    );
    // Degraded mode runs anyway and says what is missing; no Landlock at all fails closed.
    assert!(matches!(
        enforcement_at(&spec(granted.network.clone(), true), Ok(2)),
        Ok(Enforcement::Degraded(w)) if w.starts_with("kernel ABI 2: needs ABI 4 for TCP port rules")
    ));
    assert!(enforcement_at(&none, Err(Errno::EOPNOTSUPP)).is_err());
    assert!(matches!(
        enforcement_at(&spec(TcpPorts::default(), true), Err(Errno::ENOSYS)),
        Ok(Enforcement::Degraded(_))
    ));
}

#[test]
fn one_rule_per_port() {
    assert_eq!(
        port_rules(&TcpPorts {
            connect: vec![8123, 443],
            bind: vec![443],
        }),
        [
            (443, NET_CONNECT_TCP | NET_BIND_TCP),
            (8123, NET_CONNECT_TCP)
        ]
    );
}

/// The port rules enforced on one thread (Landlock and `no_new_privs` are per thread, so the
/// test process is otherwise untouched): a connect to the granted port works, to any other
/// port it is EACCES; binding a port not granted is EACCES.
#[test]
fn only_granted_ports_connect_or_bind() {
    match abi_version() {
        Ok(abi) if abi >= 4 => {}
        other => {
            eprintln!("skipping: landlock {other:?} has no TCP port rules");
            return;
        }
    }
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (gp, op) = (
        granted.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (bind_ok, bind_no) = (free(), free());
    let rs = Ruleset::build(&spec(
        TcpPorts {
            connect: vec![gp],
            bind: vec![bind_ok],
        },
        false,
    ))
    .unwrap();
    let results = std::thread::spawn(move || {
        // SAFETY: prctl with scalar arguments; no_new_privs applies to this thread only.
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        assert_eq!(r, 0);
        rs.restrict_self().unwrap();
        let code = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error());
        (
            code(std::net::TcpStream::connect(("127.0.0.1", gp)).map(drop)),
            code(std::net::TcpStream::connect(("127.0.0.1", op)).map(drop)),
            code(std::net::TcpListener::bind(("127.0.0.1", bind_ok)).map(drop)),
            code(std::net::TcpListener::bind(("127.0.0.1", bind_no)).map(drop)),
        )
    })
    .join()
    .unwrap();
    assert_eq!(
        results,
        (None, Some(libc::EACCES), None, Some(libc::EACCES)),
        "connect granted/other, bind granted/other"
    );
}
