//! The restart policy: backoff with jitter after a crash, quarantine after too many crashes in a
//! window. Pure logic over instants, so unit tests drive it without a clock.

use crate::plugins::config::RestartConfig;
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to do after an incarnation ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Start again after this long.
    RetryAfter(Duration),
    /// Stop trying until an operator acts: this many crashes fell within the window.
    Quarantine {
        /// Crashes within `restart.window`.
        crashes: usize,
    },
}

/// Crash history of one plugin.
#[derive(Debug)]
pub(super) struct RestartPolicy {
    cfg: RestartConfig,
    crashes: VecDeque<Instant>,
    consecutive: u32,
}

impl RestartPolicy {
    pub(super) fn new(cfg: RestartConfig) -> RestartPolicy {
        RestartPolicy {
            cfg,
            crashes: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// An incarnation that ran for `ran` ended badly at `now`.
    pub(super) fn crashed(&mut self, now: Instant, ran: Duration) -> Verdict {
        if ran > self.cfg.window {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.cfg.window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() as u32 >= self.cfg.quarantine_after {
            return Verdict::Quarantine {
                crashes: self.crashes.len(),
            };
        }
        Verdict::RetryAfter(backoff(
            self.cfg.initial_backoff,
            self.cfg.max_backoff,
            self.consecutive,
        ))
    }

    /// A requested restart, or an operator took the plugin out of quarantine: start over.
    pub(super) fn reset(&mut self) {
        self.crashes.clear();
        self.consecutive = 0;
    }

    /// Only the consecutive count starts over (a requested restart of a healthy plugin).
    pub(super) fn reset_consecutive(&mut self) {
        self.consecutive = 0;
    }
}

/// ±20% jitter around `d`, from a cheap clock-seeded generator (no RNG dependency needed).
fn jitter(d: Duration) -> Duration {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(n) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let f = 0.8 + (x % 4001) as f64 / 10_000.0;
    d.mul_f64(f)
}

/// Backoff before restart number `n` (1-based): `initial · 2^(n-1)`, at most `max`, ±20%.
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << n.saturating_sub(1).min(20));
    jitter(exp.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RestartConfig {
        RestartConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            quarantine_after: 3,
            window: Duration::from_secs(10),
        }
    }

    fn within(d: Duration, base: Duration) -> bool {
        d >= base.mul_f64(0.79) && d <= base.mul_f64(1.21)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let mut p = RestartPolicy::new(RestartConfig {
            quarantine_after: 100,
            ..cfg()
        });
        let t0 = Instant::now();
        let expect = [100, 200, 400, 800, 1000, 1000];
        for (i, ms) in expect.iter().enumerate() {
            match p.crashed(t0 + Duration::from_secs(i as u64), Duration::ZERO) {
                Verdict::RetryAfter(d) => {
                    assert!(within(d, Duration::from_millis(*ms)), "{i}: {d:?}")
                }
                v => panic!("{i}: {v:?}"),
            }
        }
    }

    #[test]
    fn quarantine_after_n_crashes_within_the_window_only() {
        let mut p = RestartPolicy::new(cfg());
        let t0 = Instant::now();
        assert!(matches!(
            p.crashed(t0, Duration::ZERO),
            Verdict::RetryAfter(_)
        ));
        // 11 s later the first crash left the window.
        let t1 = t0 + Duration::from_secs(11);
        assert!(matches!(
            p.crashed(t1, Duration::ZERO),
            Verdict::RetryAfter(_)
        ));
        assert!(matches!(
            p.crashed(t1 + Duration::from_secs(1), Duration::ZERO),
            Verdict::RetryAfter(_)
        ));
        assert_eq!(
            p.crashed(t1 + Duration::from_secs(2), Duration::ZERO),
            Verdict::Quarantine { crashes: 3 }
        );
        p.reset();
        assert!(matches!(
            p.crashed(t1 + Duration::from_secs(3), Duration::ZERO),
            Verdict::RetryAfter(_)
        ));
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut p = RestartPolicy::new(RestartConfig {
            quarantine_after: 100,
            ..cfg()
        });
        let t0 = Instant::now();
        p.crashed(t0, Duration::ZERO);
        p.crashed(t0, Duration::ZERO);
        match p.crashed(t0 + Duration::from_secs(100), Duration::from_secs(60)) {
            Verdict::RetryAfter(d) => assert!(within(d, Duration::from_millis(100)), "{d:?}"),
            v => panic!("{v:?}"),
        }
    }
}
