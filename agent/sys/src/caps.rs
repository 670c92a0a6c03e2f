//! Capability sets from `/proc/<pid>/status`.

/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_SYS_RESOURCE`.
pub const CAP_SYS_RESOURCE: u32 = 24;
/// `CAP_PERFMON`.
pub const CAP_PERFMON: u32 = 38;
/// `CAP_BPF`.
pub const CAP_BPF: u32 = 39;

/// A capability bit set (`CapEff`, `CapPrm`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Whether the set holds capability number `cap`.
    pub fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1u64 << cap) != 0
    }
}

/// The named set (`"CapEff"`) from the text of `/proc/<pid>/status`; `None` when missing or
/// malformed.
pub fn parse_status(status: &str, field: &str) -> Option<CapSet> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key != field {
            return None;
        }
        u64::from_str_radix(value.trim(), 16).ok().map(CapSet)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let eff = parse_status(status, "CapEff").unwrap();
        assert!(eff.has(CAP_BPF) && eff.has(CAP_SYS_ADMIN) && eff.has(CAP_PERFMON));
        assert!(!eff.has(CAP_SYS_RESOURCE));
        assert!(!eff.has(200));
        assert_eq!(parse_status(status, "CapAmb"), None);
        assert_eq!(parse_status("CapEff:\tzz\n", "CapEff"), None);
    }
}
