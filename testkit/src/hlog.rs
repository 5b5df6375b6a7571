//! Reading HdrHistogram interval logs (the format `loadgen --hlog`
//! writes): every interval's tag, start, length and histogram, decoded.
//! The workbench's `cargo xtask merge` and loadgen's tests read logs with
//! it; the crate's iterator parses the lines, this decodes their base64.

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use std::time::Duration;

/// One interval of a log.
pub struct Interval {
    pub tag: Option<String>,
    /// Since the log's BaseTime (or StartTime, or the epoch: as written).
    pub start: Duration,
    pub length: Duration,
    pub hist: Histogram<u64>,
}

/// A whole log.
#[derive(Default)]
pub struct Log {
    /// `#[StartTime: ...]`, seconds since the epoch.
    pub start_time: Option<Duration>,
    /// `#[BaseTime: ...]`, seconds since the epoch.
    pub base_time: Option<Duration>,
    pub intervals: Vec<Interval>,
}

impl Log {
    /// Where interval timestamps count from, in seconds since the epoch:
    /// BaseTime; else, with a StartTime only, StartTime when the first
    /// timestamp is more than a year smaller than it (a delta) and zero
    /// when not (Java's HistogramLogWriter writes absolute timestamps
    /// after a StartTime unless given a BaseTime: its reader's rule);
    /// else zero (timestamps are absolute).
    pub fn base(&self) -> Duration {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        match (self.base_time, self.start_time) {
            (Some(base), _) => base,
            (None, Some(start)) => match self.intervals.first() {
                Some(i) if i.start + YEAR > start => Duration::ZERO,
                _ => start,
            },
            (None, None) => Duration::ZERO,
        }
    }
}

/// Parses and decodes `bytes`; an error names the line (from 1) and what
/// is wrong with it.
pub fn read(bytes: &[u8]) -> Result<Log, String> {
    let line_of = |offset: usize| {
        bytes[..offset.min(bytes.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let mut log = Log::default();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|LogIteratorError::ParseError { offset }| {
            format!("line {}: not an interval log line", line_of(offset))
        })?;
        match entry {
            LogEntry::StartTime(t) => log.start_time = Some(t),
            LogEntry::BaseTime(t) => log.base_time = Some(t),
            LogEntry::Interval(i) => {
                let encoded = i.encoded_histogram();
                let at = encoded.as_ptr() as usize - bytes.as_ptr() as usize;
                let bad = |what: String| format!("line {}: {what}", line_of(at));
                let raw =
                    base64(encoded).ok_or_else(|| bad("the histogram is not base64".into()))?;
                let hist: Histogram<u64> = de
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| bad(format!("the histogram does not decode: {e:?}")))?;
                log.intervals.push(Interval {
                    tag: i.tag().map(|t| t.as_str().to_string()),
                    start: i.start_timestamp(),
                    length: i.duration(),
                    hist,
                });
            }
        }
    }
    Ok(log)
}

/// Decodes standard base64 (padding optional); `None` on any other byte.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("a+/9").map(|v| v.len()), Some(3));
        assert!(base64("a b").is_none());
    }

    /// A log of `header` lines and one interval at `start` (an empty
    /// histogram, V2 deflated).
    fn log_with(header: &str, start: &str) -> Log {
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
        let h = Histogram::<u64>::new(3).expect("histogram");
        let mut raw = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&h, &mut raw)
            .expect("serialize");
        let b64 = encode(&raw);
        let text = format!("{header}{start},1.000,0.000,{b64}\n");
        read(text.as_bytes()).expect("reads")
    }

    /// Standard base64, for the test's own logs.
    fn encode(raw: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in raw.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..=c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            }
        }
        while out.len() % 4 != 0 {
            out.push('=');
        }
        out
    }

    #[test]
    fn timestamps_after_a_start_time_alone_are_deltas_or_absolute_as_java_reads_them() {
        let start =
            "#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]\n";
        let s = Duration::from_secs(1_700_000_000);
        // Java's writer without a BaseTime: absolute timestamps.
        assert_eq!(log_with(start, "1700000001.500").base(), Duration::ZERO);
        // Small timestamps: seconds since StartTime.
        assert_eq!(log_with(start, "1.500").base(), s);
        let both = format!("{start}#[BaseTime: 1600000000.000 (seconds since epoch)]\n");
        assert_eq!(
            log_with(&both, "1.500").base(),
            Duration::from_secs(1_600_000_000)
        );
        assert_eq!(log_with("", "1700000001.500").base(), Duration::ZERO);
    }

    #[test]
    fn a_line_that_is_not_a_log_line_is_named() {
        let e = read(b"#[BaseTime: 1.000 (seconds since epoch)]\nhello\n")
            .err()
            .expect("fails");
        assert_eq!(e, "line 2: not an interval log line");
    }
}
