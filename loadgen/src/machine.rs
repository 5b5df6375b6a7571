//! The whole machine's busy CPU over each interval of a run, from the
//! aggregate `cpu ` line of `/proc/stat`: the work a message causes is
//! not all charged to the processes that send and relay it (softirq work
//! lands on whichever task is running), so the workbench divides the
//! machine's busy time by the messages of the window it was spent in.
//!
//! The running thread samples `/proc/stat` at every interval boundary as
//! it passes ([`Sampler`]); an interval's busy time is the difference of
//! the samples at its ends. Where `/proc/stat` cannot be read the figures
//! are `None` (null in the report), not an error.

use crate::plan::Interval;
use std::time::Duration;

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, 100 on every Linux
/// the workspace runs on).
pub const TICKS_PER_SEC: f64 = 100.0;

/// Busy ticks of the whole machine so far, from the text of `/proc/stat`:
/// user + nice + system + irq + softirq + steal. Idle and iowait are not
/// busy; guest and guest_nice are already inside user and nice.
pub fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    (f.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// The machine's busy ticks now, if `/proc/stat` can be read.
pub fn read_busy() -> Option<u64> {
    busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Ticks as seconds.
pub fn seconds(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_SEC
}

/// Samples the machine's busy ticks at every interval boundary.
pub struct Sampler {
    /// Offsets from the start of the timetable, sorted, each once.
    points: Vec<Duration>,
    samples: Vec<Option<u64>>,
    next: usize,
}

impl Sampler {
    pub fn new(intervals: &[Interval]) -> Sampler {
        let mut points: Vec<Duration> = intervals.iter().flat_map(|i| [i.start, i.end]).collect();
        points.sort_unstable();
        points.dedup();
        Sampler {
            samples: vec![None; points.len()],
            points,
            next: 0,
        }
    }

    /// When the next sample is due, as an offset into the timetable.
    pub fn next_due(&self) -> Option<Duration> {
        self.points.get(self.next).copied()
    }

    /// Takes one reading for every boundary passed by `elapsed`.
    pub fn sample_due(&mut self, elapsed: Duration, read: impl FnOnce() -> Option<u64>) {
        if self.next_due().is_none_or(|p| p > elapsed) {
            return;
        }
        let now = read();
        while self.next_due().is_some_and(|p| p <= elapsed) {
            self.samples[self.next] = now;
            self.next += 1;
        }
    }

    /// At the end of the run: one reading for every boundary not yet
    /// passed (a run stopped early), then each interval's busy ticks.
    pub fn finish(
        mut self,
        intervals: &[Interval],
        read: impl FnOnce() -> Option<u64>,
    ) -> Vec<Option<u64>> {
        self.sample_due(Duration::MAX, read);
        let at = |t: Duration| {
            self.points
                .binary_search(&t)
                .ok()
                .and_then(|k| self.samples[k])
        };
        intervals
            .iter()
            .map(|i| Some(at(i.end)?.saturating_sub(at(i.start)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{intervals, plan};

    /// Captured from a 2-core machine.
    const STAT: &str = "cpu  1118852 1687537 1612943 2526913 15609 0 559630 27153 0 0\n\
cpu0 533249 811148 803952 1325630 3680 0 281776 13555 0 0\n\
cpu1 585602 876388 808991 1201282 11929 0 277854 13597 0 0\n\
intr 1 2 3\nctxt 123\nbtime 1700000000\n";

    #[test]
    fn busy_is_the_aggregate_line_without_idle_and_iowait() {
        // user + nice + system + irq (0 here) + softirq + steal.
        let want = 1118852 + 1687537 + 1612943 + 559630 + 27153;
        assert_eq!(busy_ticks(STAT), Some(want));
        // Guest time is inside user and nice: not added again.
        let guest = "cpu  10 20 30 1000 500 1 2 3 7 8\n";
        assert_eq!(busy_ticks(guest), Some(66));
        // Old kernels end after iowait.
        assert_eq!(busy_ticks("cpu  1 2 3 4 5\n"), Some(6));
        assert_eq!(busy_ticks("cpu0 1 2 3 4\n"), None);
        assert_eq!(busy_ticks("cpu  1 x 3 4\n"), None);
        assert_eq!(seconds(250), 2.5);
    }

    #[test]
    fn each_interval_gets_the_ticks_between_its_boundaries() {
        let ms = Duration::from_millis;
        let p = plan(2, ms(200), ms(3000), ms(1500));
        let iv = intervals(&p);
        let mut s = Sampler::new(&iv);
        // The reading at each boundary is its offset in milliseconds.
        while let Some(t) = s.next_due() {
            s.sample_due(t, || Some(t.as_millis() as u64));
        }
        let busy = s.finish(&iv, || None);
        assert_eq!(busy.len(), iv.len());
        for (i, b) in iv.iter().zip(&busy) {
            assert_eq!(*b, Some((i.end - i.start).as_millis() as u64));
        }
        // Unreadable: no figures, and a stop fills what is left.
        let mut s = Sampler::new(&iv);
        s.sample_due(ms(200), || Some(5));
        let busy = s.finish(&iv, || Some(9));
        assert_eq!(busy[0], Some(4));
        assert!(busy[1..].iter().all(|b| *b == Some(0)));
        let s = Sampler::new(&iv);
        assert!(s.finish(&iv, || None).iter().all(Option::is_none));
    }
}
