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

    h.landlock = Ok(4);
    assert_status(&run(&h), "landlock", Status::Degraded);
    h.landlock = Ok(2);
    assert!(get(&run(&h), "landlock").srediag.contains("files only"));
    h.landlock = Err(Errno::ENOSYS);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Unavailable);
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
