//! Restart delays: the [`BackoffPolicy`] value type (the schedule) and the failure sequence of
//! one service (when the schedule starts over, when failures amount to a crash loop).
//!
//! Choices (SPEC §7 leaves them open):
//! - Restart `n` of a sequence (0-based) waits `first_ms` for `n = 0`, otherwise
//!   `initial_ms × multiplier^(n-1)`, capped at `max_ms`.
//! - Jitter multiplies a non-zero delay by a random factor in `[1 - jitter, 1 + jitter]`, and the
//!   result is capped at `max_ms` again: jitter never pushes a delay above the cap (at the cap
//!   it can only shorten it). A zero delay stays zero.
//! - The sequence starts over when the service had been healthy for `reset_after_ms` before
//!   it failed.
//! - The crash-loop window is independent of the sequence: `max_failures` failures within
//!   `failure_window_ms` make a crash loop even when the sequence was reset in between (a
//!   service that flaps slowly is still flapping). While in a crash loop every restart waits
//!   the cap. A manual start clears both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;
use registry::BackoffConfig;

/// A restart delay schedule (see the module docs for the exact rules).
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    first: Duration,
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: f64,
    reset_after: Duration,
}

impl BackoffPolicy {
    /// The policy of a service's `backoff = {…}` (multiplier below 1 is taken as 1, jitter is
    /// clamped to 0..=1).
    pub fn from_config(c: &BackoffConfig) -> BackoffPolicy {
        BackoffPolicy {
            first: c.first,
            initial: c.initial,
            multiplier: if c.multiplier.is_finite() && c.multiplier >= 1.0 { c.multiplier } else { 1.0 },
            max: c.max,
            jitter: if c.jitter.is_finite() { c.jitter.clamp(0.0, 1.0) } else { 0.0 },
            reset_after: c.reset_after,
        }
    }

    /// The delay of restart `n` (0-based) of a sequence, before jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        if n == 0 {
            return self.first.min(self.max);
        }
        let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
        let ms = self.initial.as_secs_f64() * 1000.0 * self.multiplier.powi(exp);
        let max_ms = self.max.as_secs_f64() * 1000.0;
        if !ms.is_finite() || ms >= max_ms { self.max } else { Duration::from_secs_f64(ms / 1000.0) }
    }

    /// The delay of restart `n` with a given jitter factor (clamped to the policy's range), capped.
    pub fn delay_with_factor(&self, n: u32, factor: f64) -> Duration {
        jittered(self.base_delay(n), factor, self.jitter, self.max)
    }

    /// The delay of restart `n` with a random jitter factor.
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with_factor(n, self.random_factor())
    }

    /// The cap, jittered (never above the cap): the wait between restarts in a crash loop.
    pub fn capped_delay(&self) -> Duration {
        jittered(self.max, self.random_factor(), self.jitter, self.max)
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Healthy uptime after which a failure starts a new sequence.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    fn random_factor(&self) -> f64 {
        if self.jitter == 0.0 { 1.0 } else { rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter) }
    }
}

fn jittered(base: Duration, factor: f64, jitter: f64, max: Duration) -> Duration {
    if base.is_zero() {
        return base;
    }
    let factor = if factor.is_finite() { factor.clamp(1.0 - jitter, 1.0 + jitter) } else { 1.0 };
    Duration::from_secs_f64(base.as_secs_f64() * factor).min(max)
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RestartPlan {
    /// Wait this long, then restart.
    pub delay: Duration,
    /// Failures within the window reached `max_failures`.
    pub crash_loop: bool,
    /// Failures within the window, this one included.
    pub failures_in_window: usize,
}

/// The failure history of one service.
#[derive(Debug, Clone)]
pub(crate) struct RestartSequence {
    policy: BackoffPolicy,
    max_failures: u32,
    window: Duration,
    /// Restarts scheduled so far in the current sequence.
    next_index: u32,
    failures: VecDeque<Instant>,
    healthy_since: Option<Instant>,
}

impl RestartSequence {
    pub(crate) fn new(policy: BackoffPolicy, max_failures: u32, window: Duration) -> Self {
        RestartSequence {
            policy,
            max_failures: max_failures.max(1),
            window,
            next_index: 0,
            failures: VecDeque::new(),
            healthy_since: None,
        }
    }

    /// The service became healthy at `now` (idempotent while it stays healthy).
    pub(crate) fn healthy(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// Whether failures within the window currently amount to a crash loop.
    pub(crate) fn in_crash_loop(&self, now: Instant) -> bool {
        self.failures.iter().filter(|t| now.saturating_duration_since(**t) <= self.window).count()
            >= self.max_failures as usize
    }

    /// Records a failure at `now` and plans the restart; `factor` is the jitter factor (None = random).
    pub(crate) fn failure_with(&mut self, now: Instant, factor: Option<f64>) -> RestartPlan {
        if let Some(since) = self.healthy_since.take()
            && now.saturating_duration_since(since) >= self.policy.reset_after
        {
            self.next_index = 0;
        }
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|t| now.saturating_duration_since(*t) > self.window) {
            self.failures.pop_front();
        }
        let crash_loop = self.failures.len() >= self.max_failures as usize;
        let delay = match (crash_loop, factor) {
            (true, Some(f)) => jittered(self.policy.max, f, self.policy.jitter, self.policy.max),
            (true, None) => self.policy.capped_delay(),
            (false, Some(f)) => self.policy.delay_with_factor(self.next_index, f),
            (false, None) => self.policy.delay(self.next_index),
        };
        self.next_index = self.next_index.saturating_add(1);
        RestartPlan { delay, crash_loop, failures_in_window: self.failures.len() }
    }

    /// Records a failure at `now` with random jitter.
    pub(crate) fn failure(&mut self, now: Instant) -> RestartPlan {
        self.failure_with(now, None)
    }

    /// A manual start: a new sequence, no crash loop.
    pub(crate) fn reset(&mut self) {
        self.next_index = 0;
        self.failures.clear();
        self.healthy_since = None;
    }

    /// New rules from a reload; the failure history stays.
    pub(crate) fn reconfigure(&mut self, policy: BackoffPolicy, max_failures: u32, window: Duration) {
        self.policy = policy;
        self.max_failures = max_failures.max(1);
        self.window = window;
    }

    /// The policy.
    pub(crate) fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(first: u64, initial: u64, mult: f64, max: u64, jitter: f64) -> BackoffConfig {
        BackoffConfig {
            first: Duration::from_millis(first),
            initial: Duration::from_millis(initial),
            multiplier: mult,
            max: Duration::from_millis(max),
            jitter,
            reset_after: Duration::from_millis(1000),
        }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    #[test]
    fn schedule_table() {
        // (first, initial, multiplier, max) -> delays of restarts 0..8
        type Row = ((u64, u64, f64, u64), [u64; 8]);
        let table: [Row; 4] = [
            ((0, 250, 2.0, 60_000), [0, 250, 500, 1000, 2000, 4000, 8000, 16_000]),
            ((0, 250, 2.0, 1000), [0, 250, 500, 1000, 1000, 1000, 1000, 1000]),
            ((100, 100, 1.0, 500), [100, 100, 100, 100, 100, 100, 100, 100]),
            ((700, 300, 3.0, 500), [500, 300, 500, 500, 500, 500, 500, 500]),
        ];
        for ((first, initial, mult, max), want) in table {
            let p = BackoffPolicy::from_config(&config(first, initial, mult, max, 0.0));
            let got: Vec<u64> = (0..8).map(|n| ms(p.base_delay(n))).collect();
            assert_eq!(got, want, "first={first} initial={initial} mult={mult} max={max}");
            // No jitter configured: the random delay is the base delay.
            let random: Vec<u64> = (0..8).map(|n| ms(p.delay(n))).collect();
            assert_eq!(random, want);
        }
        // Huge exponents saturate at the cap instead of overflowing.
        let p = BackoffPolicy::from_config(&config(0, 250, 10.0, 60_000, 0.0));
        assert_eq!(p.base_delay(u32::MAX), Duration::from_millis(60_000));
    }

    #[test]
    fn jitter_bounds() {
        let p = BackoffPolicy::from_config(&config(0, 1000, 2.0, 3000, 0.2));
        // Extremes of the factor, and out-of-range factors clamped to them.
        assert_eq!(ms(p.delay_with_factor(1, 0.8)), 800);
        assert_eq!(ms(p.delay_with_factor(1, 1.2)), 1200);
        assert_eq!(ms(p.delay_with_factor(1, 0.1)), 800);
        assert_eq!(ms(p.delay_with_factor(1, 5.0)), 1200);
        // Never above the cap, even with positive jitter at the cap.
        assert_eq!(ms(p.delay_with_factor(3, 1.2)), 3000);
        assert_eq!(ms(p.delay_with_factor(5, 0.8)), 2400);
        // Zero stays zero.
        assert_eq!(ms(p.delay_with_factor(0, 1.2)), 0);
        for _ in 0..500 {
            let d = ms(p.delay(2));
            assert!((1600..=2400).contains(&d), "{d}");
            let c = ms(p.capped_delay());
            assert!((2400..=3000).contains(&c), "{c}");
        }
        // Bad config values are clamped, not trusted.
        let p = BackoffPolicy::from_config(&config(0, 100, 0.5, 1000, 7.0));
        assert_eq!(ms(p.base_delay(3)), 100);
        assert!(ms(p.delay(1)) <= 200);
    }

    #[test]
    fn sequence_resets_after_stable_uptime() {
        let policy = BackoffPolicy::from_config(&config(0, 100, 2.0, 10_000, 0.0));
        let mut seq = RestartSequence::new(policy, 100, Duration::from_secs(3600));
        let t0 = Instant::now();
        let delays: Vec<u64> =
            (0..4).map(|i| ms(seq.failure_with(t0 + Duration::from_millis(i * 10), Some(1.0)).delay)).collect();
        assert_eq!(delays, [0, 100, 200, 400]);
        // Healthy, but not long enough: the sequence goes on.
        seq.healthy(t0 + Duration::from_millis(100));
        assert_eq!(ms(seq.failure_with(t0 + Duration::from_millis(600), Some(1.0)).delay), 800);
        // Healthy for reset_after (1 s): the next failure starts a new sequence.
        seq.healthy(t0 + Duration::from_millis(1000));
        seq.healthy(t0 + Duration::from_millis(1500)); // still the same healthy period
        let plan = seq.failure_with(t0 + Duration::from_millis(2000), Some(1.0));
        assert_eq!(ms(plan.delay), 0);
        assert_eq!(ms(seq.failure_with(t0 + Duration::from_millis(2010), Some(1.0)).delay), 100);
    }

    #[test]
    fn crash_loop_counts_failures_in_the_window() {
        let policy = BackoffPolicy::from_config(&config(0, 100, 2.0, 1000, 0.0));
        let mut seq = RestartSequence::new(policy, 3, Duration::from_millis(1000));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let p1 = seq.failure_with(at(0), Some(1.0));
        let p2 = seq.failure_with(at(100), Some(1.0));
        assert!(!p1.crash_loop && !p2.crash_loop);
        // Third failure within 1 s: crash loop, waiting the cap.
        let p3 = seq.failure_with(at(200), Some(1.0));
        assert!(p3.crash_loop);
        assert_eq!((ms(p3.delay), p3.failures_in_window), (1000, 3));
        assert!(seq.in_crash_loop(at(300)));
        // Old failures leave the window: no longer a crash loop, back on the schedule.
        assert!(!seq.in_crash_loop(at(1150)));
        let p4 = seq.failure_with(at(1150), Some(1.0));
        assert!(!p4.crash_loop, "{p4:?}");
        assert_eq!(p4.failures_in_window, 2);
        assert_eq!(ms(p4.delay), 400);
        // A manual start clears everything.
        seq.failure_with(at(1160), Some(1.0));
        assert!(seq.in_crash_loop(at(1170)));
        seq.reset();
        assert!(!seq.in_crash_loop(at(1170)));
        let p = seq.failure_with(at(1180), Some(1.0));
        assert_eq!((ms(p.delay), p.crash_loop), (0, false));
    }
}
