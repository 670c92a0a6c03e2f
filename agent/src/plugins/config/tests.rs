use super::*;

#[test]
fn scratch_and_network_settings() {
    let c: PluginConfig = serde_yaml::from_str(
        "path: /x\ntype: receiver\nlimits: {memory_max: 64MiB}\nnetwork: {connect: [443]}",
    )
    .unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(
        c.limits.scratch_bytes(),
        16 << 20,
        "a quarter of memory_max"
    );
    assert_eq!(c.limits.scratch_inodes, 4096);
    assert_eq!(c.network.as_ref().map(Network::granted), Some(true));
    let c: PluginConfig = serde_yaml::from_str(
        "path: /x\ntype: processor\nlimits: {memory_max: 64MiB, scratch_size: 8MiB, scratch_inodes: 100}",
    )
    .unwrap();
    assert_eq!(
        (c.limits.scratch_bytes(), c.limits.scratch_inodes),
        (8 << 20, 100)
    );
    // A `print-config` round trip keeps the values.
    let again: PluginConfig = serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
    for (yaml, field) in [
        ("type: receiver\nnetwork: true", "network"),
        ("type: receiver\nnetwork: {bind: [0]}", "network.bind[0]"),
        ("type: processor\nnetwork: {connect: [443]}", "network"),
        (
            "type: processor\nlimits: {scratch_size: 1KiB}",
            "limits.scratch_size",
        ),
        (
            "type: processor\nlimits: {memory_max: 64MiB, scratch_size: 1GiB}",
            "limits.scratch_size",
        ),
        (
            "type: processor\nlimits: {scratch_inodes: 0}",
            "limits.scratch_inodes",
        ),
    ] {
        let c: PluginConfig = serde_yaml::from_str(&format!("path: /x\n{yaml}")).unwrap();
        let fields: Vec<String> = c.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{yaml}");
    }
    let c: PluginConfig = serde_yaml::from_str("path: /x\ntype: receiver\nnetwork: true").unwrap();
    assert!(c.validate()[0].1.contains("connect: [443, 8123]"));
}

#[test]
fn defaults_and_validation() {
    let c: PluginConfig =
        serde_yaml::from_str("path: /bin/true\ntype: processor\nlimits: {memory_max: 64MiB}")
            .unwrap();
    let b: PluginConfig = serde_yaml::from_str("bundle: dedup\ntype: processor").unwrap();
    assert!(b.validate().is_empty());
    let both: PluginConfig =
        serde_yaml::from_str("bundle: dedup\npath: /x\ntype: processor").unwrap();
    assert_eq!(both.validate()[0].0, "path");
    let none: PluginConfig = serde_yaml::from_str("type: processor").unwrap();
    assert_eq!(none.validate()[0].0, "bundle");
    assert_eq!(c.limits.memory_max, 64 << 20);
    assert!(c.validate().is_empty());
    assert_eq!(c.uid("x"), c.gid("x"));
    assert!(DEFAULT_IDS.contains(&c.uid("x")));
    let bad: PluginConfig = serde_yaml::from_str("path: rel\ntype: processor\nuser: 0").unwrap();
    let paths: Vec<_> = bad.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["path", "user"]);
    // An unknown seccomp action is refused where the configuration is read (one enum from
    // there on), with the message validation gave before.
    let e = serde_yaml::from_str::<PluginConfig>(
        "path: /x\ntype: processor\nsandbox: {seccomp_action: maybe}",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("unknown action \"maybe\": use errno, kernel_errno, trap, kill or log"),
        "{e}"
    );
    for word in ["errno", "kernel_errno", "trap", "kill", "log"] {
        let c: PluginConfig = serde_yaml::from_str(&format!(
            "path: /x\ntype: processor\nsandbox: {{seccomp_action: {word}}}"
        ))
        .unwrap();
        assert_eq!(c.sandbox.seccomp_action.as_str(), word);
        let back = serde_yaml::to_string(&c.sandbox).unwrap();
        assert!(
            back.contains(&format!("seccomp_action: {word}\n")),
            "{back}"
        );
    }
    assert!(serde_yaml::from_str::<PluginConfig>("path: /x\ntype: processor\nbogus: 1").is_err());
}

/// The attack: a plugin whose default uid is one systemd hands to a `DynamicUser=` service
/// (61184–65519) can signal that service's processes and read its files; one inside a
/// container's subordinate id range (`/etc/subuid`, 100000 and up) can do the same to that
/// container. Every default id stays in systemd's unused 60578–61183.
#[test]
fn default_ids_avoid_dynamic_users_and_subordinate_ranges() {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20_000 {
        let id = default_id(&format!("plugin-{i}"));
        assert!(
            DEFAULT_IDS.contains(&id),
            "default id {id} of plugin-{i} is outside {DEFAULT_IDS:?}"
        );
        assert!(!(61184..=65519).contains(&id) && id < 100_000, "{id}");
        seen.insert(id);
    }
    assert_eq!(seen.len(), DEFAULT_IDS.count(), "the whole range is used");
}
