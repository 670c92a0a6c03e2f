//! Landlock and seccomp items.

use super::*;
use crate::sys::Errno;

#[test]
fn landlock_versions() {
    let mut h = hybrid_host();
    h.landlock = Ok(7);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Ok);
    assert!(
        get(&r, "landlock")
            .detail
            .starts_with("ABI 7: fs, fs refer")
    );
    assert!(get(&r, "landlock").detail.contains("net tcp bind/connect"));
    assert!(
        get(&r, "landlock")
            .srediag
            .contains("plugins granted TCP ports: only those ports"),
        "{:?}",
        get(&r, "landlock")
    );

    h.landlock = Ok(4);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Degraded);
    assert_eq!(
        get(&r, "landlock").srediag,
        "plugins without network: files by Landlock, network, signals and abstract sockets by \
         their own namespaces; plugins granted TCP ports refused unless sandbox.allow_degraded \
         (needs ABI 6 for abstract unix socket scoping (a plugin in the host network namespace))"
    );
    // Debian 12's kernel: plugins without network start, network grants need more.
    h.landlock = Ok(2);
    let s = get(&run(&h), "landlock").srediag.clone();
    assert!(
        s.starts_with("plugins without network: files by Landlock"),
        "{s}"
    );
    assert!(
        s.contains("needs ABI 4 for TCP port rules (the plugin's network grant), ABI 6"),
        "{s}"
    );
    h.landlock = Err(Errno::ENOSYS);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Unavailable);
    assert!(get(&r, "landlock").srediag.starts_with("no plugin starts"));
    assert!(
        get(&r, "landlock")
            .detail
            .starts_with("kernel built without Landlock: ENOSYS")
    );
    h.landlock = Err(Errno::EOPNOTSUPP);
    assert!(
        get(&run(&h), "landlock")
            .detail
            .contains("disabled at boot")
    );
    assert_eq!(lsm::landlock_features(99).len(), 7);
    assert!(lsm::landlock_features(-1).is_empty());
}

#[test]
fn seccomp_variants() {
    let mut h = hybrid_host();
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Ok);
    assert_status(&r, "seccomp_user_notif", Status::Ok);

    h.write(
        "/proc/sys/kernel/seccomp/actions_avail",
        "kill_process errno allow\n",
    );
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Degraded);
    assert!(
        get(&r, "seccomp_filter")
            .detail
            .ends_with("missing: trap log")
    );
    assert_status(&r, "seccomp_user_notif", Status::Unavailable);

    h.seccomp = Err(Errno::EINVAL);
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Unavailable);
    assert_status(&r, "seccomp_user_notif", Status::Unavailable);
}
