//! Figures in human units, for every rendering of a report: bit rates in
//! Gbit/s or Mbit/s, bytes in MiB, KiB or B, latencies in µs, ms or s by
//! size, large rates with k or M, ratios as `0.97×`. `report.json` keeps
//! the raw values; only what a person reads goes through here.

use crate::spec::{fmt_num, Bound};

/// Three significant digits, without trailing noise: `9.94`, `45.3`, `120`.
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `v` scaled by the first of `steps` (factor, suffix) it reaches, the
/// steps largest first; the last is taken for anything smaller.
fn scaled(v: f64, steps: &[(f64, &str)]) -> String {
    let (f, suffix) = steps
        .iter()
        .find(|(f, _)| v.abs() >= *f)
        .or(steps.last())
        .copied()
        .unwrap_or((1.0, ""));
    format!("{} {suffix}", sig3(v / f))
}

/// A latency of `us` microseconds, in µs, ms or s by its size.
pub fn duration_us(us: f64) -> String {
    scaled(us, &[(1e6, "s"), (1e3, "ms"), (1.0, "µs")])
}

/// A count of bytes in MiB, KiB or B.
pub fn bytes(b: f64) -> String {
    if b.abs() < 1024.0 {
        return format!("{} B", fmt_num(b.round()));
    }
    scaled(
        b,
        &[
            (1024.0 * 1024.0 * 1024.0, "GiB"),
            (1024.0 * 1024.0, "MiB"),
            (1024.0, "KiB"),
        ],
    )
}

/// A ratio as `0.97×`.
pub fn ratio(r: f64) -> String {
    if r.abs() >= 10.0 {
        format!("{}×", sig3(r))
    } else {
        format!("{r:.2}×")
    }
}

/// `v` of `unit` (a unit of `figures.rs`) as a person reads it.
pub fn human(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let rate = |suffix: &str| {
        if v.abs() >= 1e3 {
            scaled(v, &[(1e9, "G"), (1e6, "M"), (1e3, "k")]).replace(' ', "") + " " + suffix
        } else {
            format!("{} {suffix}", sig3(v))
        }
    };
    match unit {
        "bit/s" => scaled(
            v,
            &[
                (1e9, "Gbit/s"),
                (1e6, "Mbit/s"),
                (1e3, "kbit/s"),
                (1.0, "bit/s"),
            ],
        ),
        "bytes" => bytes(v),
        "KiB" => bytes(v * 1024.0),
        "µs" => duration_us(v),
        "ms" => duration_us(v * 1e3),
        "s" => duration_us(v * 1e6),
        "µs/msg" => duration_us(v) + "/msg",
        "msg/s" | "req/s" | "conn/s" => rate(unit),
        "ratio" => ratio(v),
        "%" => format!("{} %", sig3(v)),
        "count" => fmt_num(v),
        _ => match unit.strip_prefix("x ") {
            Some(of) => format!("{} {of}", ratio(v)),
            None => format!("{} {unit}", fmt_num(v)),
        },
    }
}

/// A target in the units of its figure: `≥ 10k msg/s`, `≤ 10 µs`.
pub fn target(b: &Bound, unit: &str) -> String {
    match (b.min, b.max) {
        (Some(a), Some(z)) => format!("{} – {}", human(a, unit), human(z, unit)),
        (Some(a), None) => format!("≥ {}", human(a, unit)),
        (None, Some(z)) => format!("≤ {}", human(z, unit)),
        (None, None) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_rates_in_gbit_and_mbit() {
        assert_eq!(human(10_189_013_012.8, "bit/s"), "10.2 Gbit/s");
        assert_eq!(human(940_000_000.0, "bit/s"), "940 Mbit/s");
        assert_eq!(human(5_500_000.0, "bit/s"), "5.50 Mbit/s");
        assert_eq!(human(12.0, "bit/s"), "12.0 bit/s");
    }

    #[test]
    fn bytes_and_kib_in_binary_units() {
        assert_eq!(human(122_700.0, "KiB"), "120 MiB");
        assert_eq!(human(3400.0, "bytes"), "3.32 KiB");
        assert_eq!(human(0.0, "bytes"), "0 B");
        assert_eq!(human(812.4, "bytes"), "812 B");
        assert_eq!(human(2048.0, "KiB"), "2.00 MiB");
    }

    #[test]
    fn latencies_by_size() {
        assert_eq!(human(45.26, "µs"), "45.3 µs");
        assert_eq!(human(1_500.0, "µs"), "1.50 ms");
        assert_eq!(human(2_500_000.0, "µs"), "2.50 s");
        assert_eq!(human(120.0, "ms"), "120 ms");
        assert_eq!(
            human(-3.2, "µs"),
            "-3.20 µs",
            "an added latency can be negative"
        );
        assert_eq!(human(0.0, "µs"), "0 µs");
        assert_eq!(human(1.23, "µs/msg"), "1.23 µs/msg");
    }

    #[test]
    fn large_rates_with_k_and_m() {
        assert_eq!(human(120_000.0, "msg/s"), "120k msg/s");
        assert_eq!(human(1_234_567.0, "msg/s"), "1.23M msg/s");
        assert_eq!(human(950.0, "conn/s"), "950 conn/s");
        assert_eq!(human(45_678.0, "conn/s"), "45.7k conn/s");
        assert_eq!(human(226_172.6, "req/s"), "226k req/s");
    }

    #[test]
    fn every_rate_of_the_figure_table_is_scaled() {
        for d in crate::figures::TABLE {
            if d.unit.ends_with("/s") && d.unit != "bit/s" {
                let got = human(226_172.6, d.unit);
                assert_eq!(got, format!("226k {}", d.unit), "{}", d.name);
            }
        }
    }

    #[test]
    fn ratios_counts_and_others() {
        assert_eq!(human(0.9712, "ratio"), "0.97×");
        assert_eq!(human(1.1, "x haproxy"), "1.10× haproxy");
        assert_eq!(human(12.34, "x best peer"), "12.3× best peer");
        assert_eq!(human(3.0, "count"), "3");
        assert_eq!(human(12.5, "%"), "12.5 %");
        assert_eq!(human(4.0, "calls/msg"), "4 calls/msg");
        assert_eq!(human(f64::NAN, "µs"), "n/a");
    }

    #[test]
    fn targets_in_the_figure_units() {
        let b = |min, max| Bound {
            min,
            max,
            ..Bound::default()
        };
        assert_eq!(target(&b(Some(10_000.0), None), "msg/s"), "≥ 10.0k msg/s");
        assert_eq!(target(&b(None, Some(10.0)), "µs"), "≤ 10.0 µs");
        assert_eq!(target(&b(None, Some(1024.0)), "bytes"), "≤ 1.00 KiB");
        assert_eq!(target(&b(None, Some(0.0)), "count"), "≤ 0");
    }
}
