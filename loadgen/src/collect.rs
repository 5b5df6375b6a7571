//! The intervals of a run ([`crate::plan::intervals`]): each load thread
//! cuts its tally of a target when the target's next interval begins and
//! sends it ([`crate::shared::Cut`]); the running thread adds the cuts
//! up, by target and interval index, into each target's total, each
//! interval's counts (the `rounds` of the report) and, with `--hlog`,
//! each interval's histogram line. The hot path is untouched: a message
//! is recorded once, in its target's tally, which is the interval's.
//!
//! An interval is complete once every thread has sent it; what is left at
//! the end (a run stopped early) is completed with what arrived.

use crate::engine::Worker;
use crate::hlog::Hlog;
use crate::mode::Protocol;
use crate::plan::{Interval, Segment};
use crate::report::Round;
use crate::shared::{Cut, Note};
use crate::stats::{Counts, Tally};
use std::collections::BTreeMap;
use std::time::Duration;

impl<P: Protocol> Worker<P> {
    /// Begins every interval whose time has come: the tally its target
    /// kept since its last interval began goes out, and a fresh one
    /// counts from here. (A message that completes after its target's
    /// interval ended, during another target's window, still counts in
    /// that interval: the tally is cut when the target's next one begins.)
    pub(crate) fn cut_intervals(&mut self) {
        while let Some(&i) = self.intervals.get(self.next_interval) {
            if self.now < self.start + i.start {
                return;
            }
            if let Some(k) = self.open[i.target] {
                self.send_cut(i.target, Some(k), self.intervals[k].end);
            }
            self.open[i.target] = Some(self.next_interval);
            self.next_interval += 1;
        }
    }

    fn send_cut(&mut self, target: usize, interval: Option<usize>, end: Duration) {
        let tally = std::mem::take(&mut self.targets[target].tally);
        // The receiver only goes away once the run is over.
        let _ = self.notes.send(Note::Cut(Box::new(Cut {
            target,
            interval,
            end,
            tally,
        })));
    }

    /// At the end of the run: sends what each target counted since its
    /// last interval began (or, if none did, since the start).
    pub(crate) fn send_last_cuts(&mut self, ran: Duration) {
        for target in 0..self.targets.len() {
            let interval = self.open[target];
            let end = interval.map_or(ran, |k| self.intervals[k].end.min(ran));
            self.send_cut(target, interval, end);
        }
    }
}

/// One interval, all threads added.
#[derive(Debug, Clone, Copy)]
struct Closed {
    counts: Counts,
    /// Where it ended: planned, or cut short by a stop.
    end: Duration,
}

/// An interval some threads have sent.
struct Open {
    tally: Tally,
    sent: usize,
    end: Duration,
}

/// Adds up the cuts of all load threads.
pub struct Collector {
    intervals: Vec<Interval>,
    threads: usize,
    open: BTreeMap<usize, Open>,
    closed: Vec<Option<Closed>>,
    totals: Vec<Tally>,
    hlog: Option<Hlog>,
}

/// A round's counts, measured start, measured time, and the machine's
/// busy ticks in it.
pub type RoundCounts = (Counts, Duration, Duration, Option<u64>);

/// What the threads counted, added up.
pub struct Collected {
    /// Per target, the whole run.
    pub totals: Vec<Tally>,
    /// Per target, its rounds in time order.
    pub rounds: Vec<Vec<RoundCounts>>,
    /// Per target, the machine's busy ticks over its measured time.
    pub machine: Vec<Option<u64>>,
    /// The interval log's histogram lines, in time order, if asked for.
    pub hlog: Option<Hlog>,
}

impl Collector {
    pub fn new(
        intervals: Vec<Interval>,
        threads: usize,
        targets: usize,
        hlog: Option<Hlog>,
    ) -> Collector {
        Collector {
            closed: vec![None; intervals.len()],
            intervals,
            threads,
            open: BTreeMap::new(),
            totals: (0..targets).map(|_| Tally::new()).collect(),
            hlog,
        }
    }

    /// Takes one thread's cut.
    pub fn add(&mut self, cut: Cut) {
        let Some(k) = cut.interval.filter(|&k| k < self.closed.len()) else {
            if let Some(t) = self.totals.get_mut(cut.target) {
                t.merge(&cut.tally);
            }
            return;
        };
        let open = self.open.entry(k).or_insert_with(|| Open {
            tally: Tally::new(),
            sent: 0,
            end: Duration::ZERO,
        });
        open.tally.merge(&cut.tally);
        open.sent += 1;
        open.end = open.end.max(cut.end);
        if open.sent >= self.threads {
            self.close(k);
        }
    }

    fn close(&mut self, k: usize) {
        let Some(open) = self.open.remove(&k) else {
            return;
        };
        let i = self.intervals[k];
        let end = open.end.clamp(i.start, i.end);
        self.totals[i.target].merge(&open.tally);
        if let Some(h) = self.hlog.as_mut() {
            h.interval(i.target, &open.tally.hist, i.start, end - i.start);
        }
        self.closed[k] = Some(Closed {
            counts: open.tally.counts(),
            end,
        });
    }

    /// Completes what is left and groups the intervals into rounds: a
    /// target measured in several windows gets one round per window, one
    /// measured in a single window one per interval (second). `machine`
    /// is each interval's busy ticks of the whole machine
    /// ([`crate::machine::Sampler`]).
    pub fn finish(mut self, plan: &[Segment], machine: &[Option<u64>]) -> Collected {
        let left: Vec<usize> = self.open.keys().copied().collect();
        for k in left {
            self.close(k);
        }
        let mut rounds: Vec<Vec<RoundCounts>> = vec![Vec::new(); self.totals.len()];
        for (target, out) in rounds.iter_mut().enumerate() {
            let windows = plan.iter().filter(|s| s.target == target).count();
            let mut last_key = None;
            for (k, (i, c)) in self.intervals.iter().zip(&self.closed).enumerate() {
                let Some(c) = c.filter(|_| i.target == target) else {
                    continue;
                };
                let key = if windows > 1 { i.segment } else { k };
                let measured = c.end - i.start;
                let busy = machine.get(k).copied().flatten();
                match out.last_mut() {
                    Some((counts, _, d, m)) if last_key == Some(key) => {
                        Counts::add(counts, &c.counts);
                        *d += measured;
                        *m = m.zip(busy).map(|(a, b)| a + b);
                    }
                    _ => out.push((c.counts, i.start, measured, busy)),
                }
                last_key = Some(key);
            }
        }
        if let Some(h) = self.hlog.as_mut() {
            h.sort();
        }
        let machine = rounds
            .iter()
            .map(|r| r.iter().try_fold(0, |sum, r| Some(sum + r.3?)))
            .collect();
        Collected {
            totals: self.totals,
            rounds,
            machine,
            hlog: self.hlog,
        }
    }
}

impl Collected {
    /// Target `i`'s rounds as the report shows them.
    pub fn rounds_of(&self, i: usize, mode: crate::cli::Mode, message_size: usize) -> Vec<Round> {
        self.rounds[i]
            .iter()
            .map(|(c, start, measured, busy)| {
                Round::new(mode, message_size, c, *start, *measured, *busy)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{intervals, plan};

    const S: Duration = Duration::from_secs(1);

    fn cut(target: usize, interval: Option<usize>, end: Duration, messages: u64) -> Cut {
        let mut tally = Tally::new();
        for m in 0..messages {
            tally.record(1_000 + m);
        }
        tally.bytes_sent = messages * 10;
        Cut {
            target,
            interval,
            end,
            tally,
        }
    }

    #[test]
    fn threads_add_up_by_interval_and_windows_make_rounds() {
        // Two targets, 1.5 s windows: target 0's rounds are its windows.
        let p = plan(2, S / 5, 6 * S, 3 * S / 2);
        let iv = intervals(&p);
        let mut c = Collector::new(iv.clone(), 2, 2, None);
        for thread in 0..2u64 {
            for (k, i) in iv.iter().enumerate() {
                c.add(cut(i.target, Some(k), i.end, 1 + thread));
            }
            c.add(cut(0, None, Duration::ZERO, 0));
        }
        let got = c.finish(&p, &[]);
        let windows = p.iter().filter(|s| s.target == 0).count();
        assert_eq!(got.rounds[0].len(), windows);
        for (target, rounds) in got.rounds.iter().enumerate() {
            let sum: u64 = rounds.iter().map(|r| r.0.messages).sum();
            assert_eq!(sum, got.totals[target].messages);
            assert_eq!(got.totals[target].hist.len(), sum);
            let measured: Duration = rounds.iter().map(|r| r.2).sum();
            assert_eq!(measured, 3 * S);
        }
        // Each interval holds both threads' messages (1 + 2).
        assert_eq!(got.rounds[0][0].0.messages, 3 * 2);
        assert_eq!(got.rounds[0][0].1, S / 5, "starts after the warm-up");
    }

    #[test]
    fn one_window_makes_a_round_per_second_and_a_stop_cuts_the_last() {
        let p = plan(1, S, 3 * S, S);
        let iv = intervals(&p);
        let mut c = Collector::new(iv.clone(), 2, 1, None);
        // Stopped 1.5 s into the measured time: both threads sent
        // intervals 0 and 1 (cut short), none sent interval 2.
        let stop = S + 3 * S / 2;
        for _ in 0..2 {
            c.add(cut(0, Some(0), iv[0].end, 5));
            c.add(cut(0, Some(1), stop, 2));
        }
        let got = c.finish(&p, &[]);
        let r = &got.rounds[0];
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0.messages, r[0].1, r[0].2), (10, S, S));
        assert_eq!((r[1].0.messages, r[1].1, r[1].2), (4, 2 * S, S / 2));
        let round = got.rounds_of(0, crate::cli::Mode::Echo, 64);
        assert_eq!(round[1].rate, 8.0);
        assert_eq!(round[1].throughput_bps, 40.0 * 8.0 * 2.0);
    }
}
