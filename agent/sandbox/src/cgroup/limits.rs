//! [`Limits`]: the resource limits of one plugin, in cgroup v2 terms.

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// Smallest CFS period and quota the kernel accepts, in µs (1 ms).
pub const CPU_MIN_US: u64 = 1_000;
/// Largest CFS period the kernel accepts, in µs (1 s).
pub const CPU_MAX_PERIOD_US: u64 = 1_000_000;
/// The range of `cpu.weight` (v2).
pub const CPU_WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

/// Resource limits of one plugin's cgroup. `None` leaves the kernel default of a new cgroup
/// (unlimited, weight 100). Values are in kernel units; human forms such as `"128MiB"` are parsed
/// by the configuration layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Hard memory limit in bytes (anonymous + page cache + kernel memory). Reaching it triggers
    /// the OOM killer inside the cgroup, counted in `oom_kill`. v2 `memory.max`, v1
    /// `memory.limit_in_bytes` (rounded down to a page by the kernel). Swap is not limited here.
    pub memory_max: Option<u64>,
    /// Memory throttling threshold in bytes: above it the kernel reclaims aggressively and slows
    /// allocations, but never OOM-kills. v2 `memory.high`. cgroup v1 has no equivalent: it is
    /// written to `memory.soft_limit_in_bytes`, which only takes effect under host-wide memory
    /// pressure (reclaim priority), so on v1 it is a hint, not a throttle.
    pub memory_high: Option<u64>,
    /// Relative CPU share when CPUs are contended, 1..=10000 (default 100), v2 `cpu.weight`
    /// semantics. On v1 it becomes `cpu.shares = weight * 1024 / 100` (at least 2), the inverse of
    /// systemd's `CPUShares=` to `CPUWeight=` mapping: 100 gives the v1 default 1024, 1 gives 10,
    /// 10000 gives 102400.
    pub cpu_weight: Option<u32>,
    /// Hard CPU cap: `(quota_us, period_us)` = at most `quota_us` of CPU time per `period_us` of
    /// wall time, summed over all CPUs (`(20000, 100000)` = 20% of one CPU). Period 1000..=1000000
    /// µs, quota at least 1000 µs. v2 `cpu.max` `"quota period"`; v1 `cpu.cfs_period_us` then
    /// `cpu.cfs_quota_us`.
    pub cpu_max: Option<(u64, u64)>,
    /// Maximum number of tasks (processes and threads) in the cgroup; `fork`/`clone` beyond it
    /// fails with `EAGAIN`. v1 and v2 `pids.max`.
    pub pids_max: Option<u64>,
}

impl Limits {
    /// Checks the values against the kernel's ranges and each other.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let bad = |reason: String| Err(CgroupError::InvalidLimits { reason });
        if self.memory_max == Some(0) {
            return bad("memory_max must be at least 1 byte".into());
        }
        if let (Some(high), Some(max)) = (self.memory_high, self.memory_max)
            && high > max
        {
            return bad(format!(
                "memory_high ({high}) must not exceed memory_max ({max})"
            ));
        }
        if let Some(w) = self.cpu_weight
            && !CPU_WEIGHT_RANGE.contains(&w)
        {
            return bad(format!("cpu_weight {w} is outside 1..=10000"));
        }
        if let Some((quota, period)) = self.cpu_max {
            if !(CPU_MIN_US..=CPU_MAX_PERIOD_US).contains(&period) {
                return bad(format!(
                    "cpu_max period {period} µs is outside {CPU_MIN_US}..={CPU_MAX_PERIOD_US}"
                ));
            }
            if quota < CPU_MIN_US {
                return bad(format!("cpu_max quota {quota} µs is below {CPU_MIN_US}"));
            }
        }
        if self.pids_max == Some(0) {
            return bad("pids_max must be at least 1".into());
        }
        Ok(())
    }
}

/// v1 `cpu.shares` for a v2 `cpu.weight`: `weight * 1024 / 100`, at least 2 (the v1 minimum).
pub fn shares_from_weight(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_to_shares() {
        assert_eq!(shares_from_weight(100), 1024);
        assert_eq!(shares_from_weight(1), 10);
        assert_eq!(shares_from_weight(50), 512);
        assert_eq!(shares_from_weight(10_000), 102_400);
    }

    #[test]
    fn validation() {
        let ok = Limits {
            memory_max: Some(64 << 20),
            memory_high: Some(48 << 20),
            cpu_weight: Some(100),
            cpu_max: Some((20_000, 100_000)),
            pids_max: Some(8),
        };
        ok.validate().unwrap();
        Limits::default().validate().unwrap();
        let cases: &[(Limits, &str)] = &[
            (
                Limits {
                    cpu_weight: Some(0),
                    ..ok
                },
                "cpu_weight 0",
            ),
            (
                Limits {
                    cpu_weight: Some(10_001),
                    ..ok
                },
                "cpu_weight 10001",
            ),
            (
                Limits {
                    cpu_max: Some((500, 100_000)),
                    ..ok
                },
                "quota 500",
            ),
            (
                Limits {
                    cpu_max: Some((20_000, 999)),
                    ..ok
                },
                "period 999",
            ),
            (
                Limits {
                    cpu_max: Some((20_000, 2_000_000)),
                    ..ok
                },
                "period 2000000",
            ),
            (
                Limits {
                    memory_high: Some(65 << 20),
                    ..ok
                },
                "memory_high",
            ),
            (
                Limits {
                    memory_max: Some(0),
                    memory_high: None,
                    ..ok
                },
                "memory_max",
            ),
            (
                Limits {
                    pids_max: Some(0),
                    ..ok
                },
                "pids_max",
            ),
        ];
        for (limits, needle) in cases {
            let e = limits.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
            assert!(e.starts_with("invalid cgroup limits: "), "{e}");
        }
    }

    #[test]
    fn serde_is_strict() {
        let l: Limits =
            serde_json::from_str(r#"{"memory_max": 1048576, "cpu_max": [50000, 100000]}"#).unwrap();
        assert_eq!(l.memory_max, Some(1 << 20));
        assert_eq!(l.cpu_max, Some((50_000, 100_000)));
        assert_eq!(l.pids_max, None);
        let e = serde_json::from_str::<Limits>(r#"{"memory_limit": 1}"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `memory_limit`"),
            "{e}"
        );
    }
}
