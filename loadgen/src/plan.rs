//! The timetable of a run: which target is loaded when, and from when on
//! its results count.
//!
//! With one target the run is one segment: warm-up, then `--duration` of
//! measurement. With several, targets take turns in windows of `--window`
//! (only one target's connections send at a time; the others stay open and
//! idle), each target's first window starts with its own warm-up, and each
//! target gets an equal share of `--duration` as measured time. Measuring
//! the same load direct and through a proxy this way, interleaved, keeps
//! slow drifts of a shared machine out of the difference.

use std::time::Duration;

/// One stretch of time in which one target is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into the run's targets.
    pub target: usize,
    /// Offsets from the start of the run.
    pub start: Duration,
    /// Messages issued before this are warm-up and not counted.
    pub measure_from: Duration,
    pub end: Duration,
}

impl Segment {
    /// Measured time of this segment that lies before `until`.
    pub fn measured_before(&self, until: Duration) -> Duration {
        until
            .min(self.end)
            .saturating_sub(self.measure_from.min(until))
    }
}

/// Lays out the segments for `targets` targets.
pub fn plan(
    targets: usize,
    warmup: Duration,
    duration: Duration,
    window: Duration,
) -> Vec<Segment> {
    if targets <= 1 {
        return vec![Segment {
            target: 0,
            start: Duration::ZERO,
            measure_from: warmup,
            end: warmup + duration,
        }];
    }
    let share = duration / targets as u32;
    let mut left = vec![share; targets];
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    let mut first = true;
    while left.iter().any(|d| !d.is_zero()) {
        for (i, l) in left.iter_mut().enumerate() {
            let w = window.min(*l);
            let warm = if first { warmup } else { Duration::ZERO };
            if w.is_zero() && warm.is_zero() {
                continue;
            }
            out.push(Segment {
                target: i,
                start: t,
                measure_from: t + warm,
                end: t + warm + w,
            });
            t += warm + w;
            *l -= w;
        }
        first = false;
    }
    out
}

/// Longest stretch of measured time one [`Interval`] covers.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A piece of measured time with its own tally: every second of a
/// segment's measured time, counted from its `measure_from`, and a
/// shorter last piece where the segment ends. Warm-up is in none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Index into the run's targets.
    pub target: usize,
    /// Index into the plan.
    pub segment: usize,
    /// Offsets from the start of the run.
    pub start: Duration,
    pub end: Duration,
}

/// The intervals of `plan`, in time order. Every thread cuts the same
/// ones (they share the plan and the start instant), so an interval's
/// index names it across threads.
pub fn intervals(plan: &[Segment]) -> Vec<Interval> {
    let mut out = Vec::new();
    for (segment, s) in plan.iter().enumerate() {
        let mut start = s.measure_from;
        while start < s.end {
            let end = (start + INTERVAL).min(s.end);
            out.push(Interval {
                target: s.target,
                segment,
                start,
                end,
            });
            start = end;
        }
    }
    out
}

/// Total planned time of a run.
pub fn total(plan: &[Segment]) -> Duration {
    plan.last().map_or(Duration::ZERO, |s| s.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn one_target_is_warmup_then_duration() {
        let p = plan(1, S, 10 * S, S);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].measure_from, S);
        assert_eq!(total(&p), 11 * S);
    }

    #[test]
    fn two_targets_alternate_and_share_the_duration() {
        let p = plan(2, S, 4 * S, S);
        let order: Vec<usize> = p.iter().map(|s| s.target).collect();
        assert_eq!(order, [0, 1, 0, 1]);
        // Each first window carries its target's warm-up.
        assert_eq!(p[0].end - p[0].measure_from, S);
        assert_eq!(p[0].measure_from - p[0].start, S);
        assert_eq!(p[1].start, p[0].end);
        assert_eq!(p[2].measure_from, p[2].start);
        for t in 0..2 {
            let measured: Duration = p
                .iter()
                .filter(|s| s.target == t)
                .map(|s| s.end - s.measure_from)
                .sum();
            assert_eq!(measured, 2 * S);
        }
        assert_eq!(total(&p), 6 * S);
    }

    #[test]
    fn intervals_cut_every_second_and_at_every_window_without_the_warmup() {
        let ms = Duration::from_millis;
        // One target: 500 ms warm-up, then 2.5 s in pieces of 1, 1, 0.5 s.
        let one = intervals(&plan(1, ms(500), ms(2500), S));
        let spans: Vec<_> = one.iter().map(|i| (i.start, i.end)).collect();
        assert_eq!(
            spans,
            [
                (ms(500), ms(1500)),
                (ms(1500), ms(2500)),
                (ms(2500), ms(3000))
            ]
        );
        // Two targets in 1.5 s windows: each window is cut at 1 s and at
        // its end, and the first window of each starts after its warm-up.
        let p = plan(2, ms(200), ms(6000), ms(1500));
        let iv = intervals(&p);
        assert_eq!(iv.len(), 2 * p.len());
        for (k, i) in iv.iter().enumerate() {
            let s = &p[i.segment];
            assert_eq!(i.target, s.target);
            assert!(
                s.measure_from <= i.start && i.end <= s.end,
                "{i:?} in {s:?}"
            );
            assert!(i.end - i.start <= S);
            if let Some(next) = iv.get(k + 1) {
                assert!(i.end <= next.start, "in time order");
            }
        }
        assert_eq!(iv[0].start, ms(200), "warm-up excluded");
        let measured: Duration = iv.iter().map(|i| i.end - i.start).sum();
        assert_eq!(measured, ms(6000));
    }

    #[test]
    fn measured_time_is_cut_at_an_early_stop() {
        let s = Segment {
            target: 0,
            start: Duration::ZERO,
            measure_from: S,
            end: 3 * S,
        };
        assert_eq!(s.measured_before(S / 2), Duration::ZERO);
        assert_eq!(s.measured_before(2 * S), S);
        assert_eq!(s.measured_before(10 * S), 2 * S);
    }
}
