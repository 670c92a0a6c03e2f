//! What this machine's apt knows: the Debian mirror it uses (from `/etc/apt/sources.list` and
//! `/etc/apt/sources.list.d/*.{list,sources}`), so that another suite (bookworm-backports for
//! QEMU and the 6.12 kernel, bullseye for 5.10) comes from the same mirror and is checked with the
//! same keyring.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The keyring Debian's own sources are signed with (package `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_ARCHIVE: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY: &str = "http://deb.debian.org/debian-security";

/// One `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suites: Vec<String>,
}

/// The mirrors this machine uses for Debian's archive and its security archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    pub archive: String,
    pub security: String,
}

/// Parses a one-line-style `sources.list` (`deb [opts] URI SUITE COMPONENT…`).
pub fn parse_list(text: &str) -> Vec<Source> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let rest = l.strip_prefix("deb ")?.trim_start();
            // Options in brackets come first: `deb [signed-by=…] URI SUITE …`.
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut it = rest.split_whitespace();
            let uri = it.next()?.trim_end_matches('/').to_string();
            let suite = it.next()?.to_string();
            Some(Source {
                uri,
                suites: vec![suite],
            })
        })
        .collect()
}

/// Parses a deb822 `.sources` file (stanzas separated by blank lines).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut types, mut uris, mut suites, mut enabled) = ("", "", "", true);
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = v.trim(),
                "uris" => uris = v.trim(),
                "suites" => suites = v.trim(),
                "enabled" => enabled = v.trim() != "no",
                _ => {}
            }
        }
        if !enabled || !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = suites.split_whitespace().map(str::to_string).collect();
        for uri in uris.split_whitespace() {
            out.push(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
            });
        }
    }
    out
}

/// Every `deb` source apt reads on this machine.
pub fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        out.extend(parse_list(&t));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let Ok(t) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_list(&t)),
            Some("sources") => out.extend(parse_deb822(&t)),
            _ => {}
        }
    }
    out
}

/// The Debian mirrors among `sources`: the URI serving `bookworm` (else any suite without a
/// `-security` suffix) and the one serving a `*-security` suite; Debian's own hosts otherwise.
pub fn mirrors_of(sources: &[Source]) -> Mirrors {
    let debianish = |s: &&Source| s.uri.contains("debian");
    let archive = sources
        .iter()
        .filter(debianish)
        .find(|s| s.suites.iter().any(|x| x == "bookworm"))
        .or_else(|| {
            sources
                .iter()
                .filter(debianish)
                .find(|s| s.suites.iter().all(|x| !x.ends_with("-security")))
        })
        .map(|s| s.uri.clone())
        .unwrap_or_else(|| DEFAULT_ARCHIVE.to_string());
    let security = sources
        .iter()
        .filter(debianish)
        .find(|s| s.suites.iter().any(|x| x.ends_with("-security")))
        .map(|s| s.uri.clone())
        .unwrap_or_else(|| DEFAULT_SECURITY.to_string());
    Mirrors { archive, security }
}

/// This machine's mirrors.
pub fn mirrors() -> Mirrors {
    mirrors_of(&sources())
}

/// Whether some source of this machine already serves `suite`.
pub fn has_suite(suite: &str) -> bool {
    sources()
        .iter()
        .any(|s| s.suites.iter().any(|x| x == suite))
}

/// A deb822 stanza for `suite` of `uri`, checked with Debian's keyring.
pub fn stanza(uri: &str, suites: &[&str]) -> String {
    format!(
        "Types: deb\nURIs: {uri}\nSuites: {}\nComponents: main\nSigned-By: {DEBIAN_KEYRING}\n",
        suites.join(" ")
    )
}

/// Adds `suite` (from this machine's Debian mirror) to apt's sources, once: a no-op when some
/// source already serves it. Returns whether a file was written (then `apt-get update` is due).
pub fn ensure_suite(suite: &str) -> Result<bool> {
    if has_suite(suite) {
        return Ok(false);
    }
    let path = Path::new("/etc/apt/sources.list.d").join(format!("srediag-{suite}.sources"));
    let text = format!(
        "# Added by `cargo xtask deps` (srediag, scripts/deps.txt): packages taken from {suite}.\n{}",
        stanza(&mirrors().archive, &[suite])
    );
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    println!("deps: added {suite} to apt's sources ({})", path.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_from_either_format() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security/\n\
                      Suites: bookworm-security\nComponents: main\n\nTypes: deb-src\n\
                      URIs: http://src.example/debian\nSuites: bookworm\n";
        let s = parse_deb822(deb822);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            mirrors_of(&s),
            Mirrors {
                archive: "http://mirror.example/debian".into(),
                security: "http://mirror.example/debian-security".into(),
            }
        );
        let list = "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n\
                    # deb http://old.example/debian bullseye main\n\
                    deb http://m.example/debian-security bookworm-security main\n";
        let s = parse_list(list);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(mirrors_of(&s).archive, "http://m.example/debian");
        assert_eq!(mirrors_of(&s).security, "http://m.example/debian-security");
        // Nothing Debian-looking: Debian's own hosts.
        assert_eq!(mirrors_of(&[]).archive, DEFAULT_ARCHIVE);
    }
}
