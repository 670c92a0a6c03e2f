//! Byte sizes as limits are written in configuration and manifests (`256MiB`, `1.5GiB`, `4096`):
//! one parser for the agent's configuration and the trust crate's manifest checks.

/// A size that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error("invalid size {0:?}: use e.g. 256MiB")]
    NotASize(String),
    /// Negative, infinite or NaN.
    #[error("invalid size {0:?}")]
    OutOfRange(String),
}

/// Parses a byte size: a number with an optional unit `B`, `KB`, `MB`, `GB` (powers of 1000) or
/// `KiB`, `MiB`, `GiB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1000),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.trim(), *m)))
    .unwrap_or((s, 1));
    let n: f64 = num
        .parse()
        .map_err(|_| SizeError::NotASize(s.to_string()))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(SizeError::OutOfRange(s.to_string()));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("lots"), Err(SizeError::NotASize("lots".into())));
        assert_eq!(
            parse_bytes("-1MiB"),
            Err(SizeError::OutOfRange("-1MiB".into()))
        );
    }
}
