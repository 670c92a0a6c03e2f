//! Text a plugin (or a bundle, or the network) supplied, made safe for a terminal and a log.
//!
//! A plugin controls its handshake name and version, its error messages and every line it
//! prints. Written raw, `ESC [ 1 ; 3 1 m` recolours the operator's terminal, an OSC sequence
//! (`ESC ] 0 ; … BEL`) retitles it, `\r` overwrites the start of a log line and a newline forges a
//! whole line. [`escape_control`] renders every such character visibly instead; every table cell
//! and error line of the CLI goes through it, and the supervisor runs forwarded plugin output
//! through it. [`check_handshake_text`] is stricter: the handshake's name, version and
//! capabilities are printable ASCII from a small charset, with a length cap.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is rendered as an escape: C0 controls (with TAB, LF and CR), DEL, C1 controls
/// (U+0080–U+009F: `U+009B` is a one-character CSI on some terminals), and the Unicode
/// formatting characters that reorder or hide text (bidi overrides and isolates, line and
/// paragraph separators, zero-width characters, the BOM).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// `s` with every [`is_unsafe_char`] rendered visibly: `\t`, `\n`, `\r`, `\0` as such, other
/// ASCII controls and DEL as `\xHH` (ESC is `\x1b`), anything else as `\u{HHHH}`. Other text,
/// including backslashes, is unchanged; borrowed when nothing needed escaping.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`escape_control`] but keeps `\n` (for multi-line text such as a rendered table, where
/// every line has been built by the CLI and only the cells came from elsewhere).
pub fn escape_control_keep_newlines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c == '\n' {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// Like [`escape_control`] but keeps `\n` and `\t`: for text a plugin writes to the operator's
/// terminal (a diagnostics verb's output), whose lines and columns are its own but whose escape
/// sequences, carriage returns and bidi tricks are not.
pub fn escape_control_keep_layout(s: &str) -> Cow<'_, str> {
    let keep = |c: char| c == '\n' || c == '\t';
    if !s.chars().any(|c| !keep(c) && is_unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if keep(c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// At most `max_chars` characters of `s`, escaped, with `…(N more bytes)` when cut: for quoting
/// hostile text in an error message without repeating all of it.
pub fn escape_truncated(s: &str, max_chars: usize) -> String {
    let cut = s
        .char_indices()
        .nth(max_chars)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let mut out = escape_control(&s[..cut]).into_owned();
    if cut < s.len() {
        let _ = write!(out, "…({} more bytes)", s.len() - cut);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    if !is_unsafe_char(c) {
        out.push(c);
        return;
    }
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\0' => out.push_str("\\0"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

/// A handshake field a plugin fills in (`hello`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeField {
    /// `name`: ASCII letters, digits, `_`, `-`, `.`; at most 64 bytes.
    Name,
    /// `version`: ASCII letters, digits, `.`, `+`, `-` (semver's alphabet); at most 64 bytes.
    Version,
    /// `sdk_version`: as `version`.
    SdkVersion,
    /// One of `capabilities` (`processor/vectorhash`): letters, digits, `_`, `-`, `.`, `/`, `:`;
    /// at most 128 bytes.
    Capability,
}

impl HandshakeField {
    /// The field's name in the `hello` message.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeField::Name => "name",
            HandshakeField::Version => "version",
            HandshakeField::SdkVersion => "sdk_version",
            HandshakeField::Capability => "capabilities",
        }
    }

    /// Longest accepted value in bytes.
    pub fn max_len(self) -> usize {
        match self {
            HandshakeField::Name | HandshakeField::Version | HandshakeField::SdkVersion => 64,
            HandshakeField::Capability => 128,
        }
    }

    fn allows(self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || match self {
                HandshakeField::Name => matches!(b, b'_' | b'-' | b'.'),
                HandshakeField::Version | HandshakeField::SdkVersion => {
                    matches!(b, b'.' | b'+' | b'-')
                }
                HandshakeField::Capability => matches!(b, b'_' | b'-' | b'.' | b'/' | b':'),
            }
    }
}

/// Why a handshake field was refused. The message quotes at most 32 characters of the value,
/// escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeTextError {
    /// Empty.
    #[error("handshake {field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// Longer than the cap.
    #[error("handshake {field} is {len} bytes, more than {max} (starts \"{start}\")")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
        /// Its first characters, escaped.
        start: String,
    },
    /// A character outside the field's charset.
    #[error("handshake {field} \"{value}\" has {ch} at byte {at}: only {allowed} are allowed")]
    BadChar {
        /// The field.
        field: &'static str,
        /// The value (first characters, escaped).
        value: String,
        /// The character, escaped.
        ch: String,
        /// Its byte offset.
        at: usize,
        /// The charset, in words.
        allowed: &'static str,
    },
}

/// Checks one handshake field against its charset and length cap.
pub fn check_handshake_text(field: HandshakeField, s: &str) -> Result<(), HandshakeTextError> {
    if s.is_empty() {
        return Err(HandshakeTextError::Empty {
            field: field.as_str(),
        });
    }
    if s.len() > field.max_len() {
        return Err(HandshakeTextError::TooLong {
            field: field.as_str(),
            len: s.len(),
            max: field.max_len(),
            start: escape_truncated(s, 32),
        });
    }
    if let Some((at, c)) = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii() || !field.allows(*c as u8))
    {
        return Err(HandshakeTextError::BadChar {
            field: field.as_str(),
            value: escape_truncated(s, 32),
            ch: {
                let mut e = String::new();
                if is_unsafe_char(c) {
                    push_escaped(&mut e, c);
                } else {
                    let _ = write!(e, "{c:?}");
                }
                e
            },
            at,
            allowed: match field {
                HandshakeField::Name => "ASCII letters, digits, `_`, `-` and `.`",
                HandshakeField::Version | HandshakeField::SdkVersion => {
                    "ASCII letters, digits, `.`, `+` and `-`"
                }
                HandshakeField::Capability => "ASCII letters, digits, `_`, `-`, `.`, `/` and `:`",
            },
        });
    }
    Ok(())
}

/// True when `s` passes [`check_handshake_text`].
pub fn valid_handshake_text(field: HandshakeField, s: &str) -> bool {
    check_handshake_text(field, s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte that starts a terminal control sequence survives: ESC, CSI (8-bit), BEL (ends OSC),
    /// CR, LF, BS, DEL.
    fn assert_inert(s: &str) {
        for c in s.chars() {
            assert!(
                !is_unsafe_char(c),
                "{c:?} left raw in {s:?} (escaped output must be inert)"
            );
        }
    }

    #[test]
    fn escapes_terminal_sequences_visibly() {
        let hostile = "1.0\x1b[1;31mRED\x1b]0;pwned title\x07\rfake\nline\u{9b}2J\x7f\x08\0\t";
        let e = escape_control(hostile);
        assert_inert(&e);
        assert_eq!(
            e,
            "1.0\\x1b[1;31mRED\\x1b]0;pwned title\\x07\\rfake\\nline\\u{009b}2J\\x7f\\x08\\0\\t"
        );
        assert!(matches!(escape_control("plain text ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\\x1b"),
            "a\\x1b",
            "backslashes stay as they are"
        );
        let bidi = escape_control("abc\u{202e}fed");
        assert_inert(&bidi);
        assert_eq!(bidi, "abc\\u{202e}fed");
    }

    #[test]
    fn keep_newlines_keeps_only_newlines() {
        let e = escape_control_keep_newlines("a\x1b[2J\nb\r\n");
        assert_eq!(e, "a\\x1b[2J\nb\\r\n");
    }

    #[test]
    fn truncation_counts_the_rest() {
        let long = format!("\x1b{}", "v".repeat(100));
        let t = escape_truncated(&long, 4);
        assert_eq!(t, "\\x1bvvv…(97 more bytes)");
        assert_eq!(escape_truncated("short", 32), "short");
        // Never cuts inside a character.
        assert_eq!(escape_truncated("ééé", 2), "éé…(2 more bytes)");
    }

    #[test]
    fn handshake_charsets() {
        use HandshakeField::*;
        for (f, ok) in [
            (Name, "vectorhashprocessor"),
            (Name, "my_plugin-2.x"),
            (Version, "1.2.3-rc.1+build.5"),
            (SdkVersion, "0.1.0"),
            (Capability, "processor/vectorhash"),
            (Capability, "diagnostics:seccomp"),
        ] {
            assert!(valid_handshake_text(f, ok), "{f:?} {ok:?} refused");
        }
        for (f, bad) in [
            (Version, "1.0\x1b[1;31m"),
            (Version, "1.0\r"),
            (Version, "1.0 beta"),
            (Version, "1.0/2"),
            (Name, "a\u{202e}b"),
            (Name, "naïve"),
            (Name, ""),
            (Capability, "x\ny"),
        ] {
            assert!(!valid_handshake_text(f, bad), "{f:?} {bad:?} accepted");
        }
        let long = "9".repeat(60 * 1024);
        let e = check_handshake_text(Version, &long).unwrap_err();
        assert!(matches!(e, HandshakeTextError::TooLong { len: 61440, .. }));
        // The message quotes a bounded, escaped prefix only.
        assert!(e.to_string().len() < 200, "{e}");
        let e = check_handshake_text(Version, "1.0\x1b]0;t\x07").unwrap_err();
        let msg = e.to_string();
        assert_inert(&msg);
        assert!(msg.contains("\\x1b at byte 3"), "{msg}");
    }
}
