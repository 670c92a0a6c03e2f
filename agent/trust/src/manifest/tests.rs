use super::*;

fn sample() -> String {
    let h = "a".repeat(64);
    format!(
        "api_version: srediag.io/plugin/v1\nname: dedup\ntype: processor\nversion: 1.2.0\nentrypoint: ./bin/dedup\nsha256: {h}\ncapabilities: [processor/dedup]\nrequires:\n  srediag: \">=0.1\"\n  ipc_protocol: 1\n  schema_version: 1\nfiles:\n  bin/dedup:\n    sha256: {h}\n"
    )
}

#[test]
fn parses_and_signs_deterministically() {
    let m = Manifest::parse(sample().as_bytes()).unwrap();
    assert_eq!(m.entrypoint_path(), "bin/dedup");
    let mut signed = m.clone();
    signed.cosign_signature = Some("MEUC".into());
    assert_eq!(
        m.statement(),
        signed.statement(),
        "the signature is not part of the signed bytes"
    );
    let s = String::from_utf8(m.statement()).unwrap();
    assert!(
        s.starts_with(
            r#"{"_type":"https://srediag.io/plugin-bundle/statement/v1","manifest":{"api_version""#
        ),
        "{s}"
    );
    assert!(!s.contains(' ') || s.contains("\">=0.1\""));
}

#[test]
fn errors_have_positions() {
    let bad = sample().replace("version: 1.2.0", "version: 1.2.0\nbogus: 1");
    let e = Manifest::parse(bad.as_bytes()).unwrap_err();
    assert!(e.msg.contains("unknown field"), "{e}");
    assert_eq!(e.line, 5, "{e}");
    let bad = sample().replace("entrypoint: ./bin/dedup", "entrypoint: ../dedup");
    let e = Manifest::parse(bad.as_bytes()).unwrap_err();
    assert_eq!((e.line, e.msg.contains("..")), (5, true), "{e}");
    let bad = sample().replace("name: dedup", "name: dedup\nname: other");
    let e = Manifest::parse(bad.as_bytes()).unwrap_err();
    assert!(e.msg.contains("duplicate key"), "{e}");
}

#[test]
fn hostile_yaml() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
    assert!(
        Manifest::parse(bomb.as_bytes())
            .unwrap_err()
            .msg
            .contains("anchors")
    );
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(
        Manifest::parse(deep.as_bytes())
            .unwrap_err()
            .msg
            .contains("nesting")
    );
    let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
    assert!(Manifest::parse(&big).unwrap_err().msg.contains("limit"));
    assert!(Manifest::parse(b"!!binary x: 1").is_err());
    assert!(Manifest::parse(b"a: 1\n---\nb: 2\n").is_err());
}

#[test]
fn network_grants_name_ports() {
    let with = |net: &str| {
        sample()
            .replace("type: processor", "type: receiver")
            .replace("files:\n", &format!("sandbox:\n  network: {net}\nfiles:\n"))
    };
    let m = Manifest::parse(with("{connect: [443, 8123], bind: [13133]}").as_bytes()).unwrap();
    assert_eq!(
        m.sandbox.network.ports(),
        TcpPorts {
            connect: vec![443, 8123],
            bind: vec![13133]
        }
    );
    // `false` is signed as it always was (the statement of an old manifest is unchanged).
    let m = Manifest::parse(with("false").as_bytes()).unwrap();
    assert!(!m.sandbox.network.granted());
    assert!(
        String::from_utf8(m.statement())
            .unwrap()
            .contains(r#""network":false"#)
    );
    // `true` (every port) is refused, saying how to list ports, at its line.
    let e = Manifest::parse(with("true").as_bytes()).unwrap_err();
    assert!(
        e.msg.starts_with("sandbox.network: `true` (every TCP port")
            && e.msg.contains("connect: [443, 8123]"),
        "{e}"
    );
    assert_eq!(e.line, 13, "{e}");
    for (bad, what) in [
        ("{connect: [0]}", "sandbox.network.connect[0]: port 0"),
        (
            "{bind: [80, 80]}",
            "sandbox.network.bind[1]: port 80 is listed twice",
        ),
        ("{connect: [70000]}", "70000"),
        ("{connect: [443], udp: [53]}", "unknown field `udp`"),
    ] {
        let e = Manifest::parse(with(bad).as_bytes()).unwrap_err();
        assert!(e.msg.contains(what), "{bad}: {e}");
    }
    // Processors get no network.
    let e = Manifest::parse(
        with("{connect: [443]}")
            .replace("type: receiver", "type: processor")
            .as_bytes(),
    )
    .unwrap_err();
    assert!(
        e.msg.contains("only receivers, exporters and extensions"),
        "{e}"
    );
}

#[test]
fn paths() {
    assert_eq!(safe_relative_path("./a/b").unwrap(), "a/b");
    let e = |p: &str| safe_relative_path(p).unwrap_err();
    assert_eq!(e(""), UnsafePath::Empty);
    assert_eq!(e("/etc/passwd"), UnsafePath::Absolute("/etc/passwd".into()));
    assert_eq!(e("a/../b"), UnsafePath::Parent("a/../b".into()));
    assert_eq!(e(".."), UnsafePath::Parent("..".into()));
    assert_eq!(e("a//b"), UnsafePath::EmptyComponent("a//b".into()));
    assert_eq!(e("a/./b"), UnsafePath::EmptyComponent("a/./b".into()));
    assert_eq!(e("a\\b"), UnsafePath::Character("a\\b".into()));
    assert_eq!(
        e(&"x".repeat(256)),
        UnsafePath::LongComponent("x".repeat(256))
    );
}
