//! Values in units a person reads at a glance (Gbit/s, MiB, µs or ms
//! chosen by size), for the compare table and the live progress line.
//! Raw values stay in the JSON.

use crate::spec::fmt_num;

/// `v`, in `unit` (a unit of `figures.rs`), scaled to its size.
pub fn value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return fmt_num(v);
    }
    let scaled = |steps: &[(f64, &str)]| {
        let (div, name) = steps
            .iter()
            .rev()
            .find(|(d, _)| v.abs() >= *d)
            .unwrap_or(&steps[0]);
        format!("{} {name}", short(v / div))
    };
    match unit {
        "bit/s" => scaled(&[
            (1.0, "bit/s"),
            (1e3, "kbit/s"),
            (1e6, "Mbit/s"),
            (1e9, "Gbit/s"),
        ]),
        "bytes" => scaled(&[(1.0, "B"), (1024.0, "KiB"), (1048576.0, "MiB")]),
        "KiB" => scaled(&[(1.0, "KiB"), (1024.0, "MiB"), (1048576.0, "GiB")]),
        "µs" => scaled(&[(1.0, "µs"), (1e3, "ms"), (1e6, "s")]),
        "msg/s" | "conn/s" => {
            let n = scaled(&[(1.0, ""), (1e3, "k"), (1e6, "M")]);
            format!("{} {unit}", n.trim_end().replace(' ', ""))
        }
        _ => fmt_num(v),
    }
}

/// Three significant figures, no trailing noise.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn values_are_scaled_to_their_size() {
        assert_eq!(value(10_189_013_012.8, "bit/s"), "10.2 Gbit/s");
        assert_eq!(value(122_700.0, "KiB"), "120 MiB");
        assert_eq!(value(3400.0, "bytes"), "3.32 KiB");
        assert_eq!(value(850.0, "µs"), "850 µs");
        assert_eq!(value(1_250.0, "µs"), "1.25 ms");
        assert_eq!(value(51_234.5, "msg/s"), "51.2k msg/s");
        assert_eq!(value(4.0, "calls/msg"), "4");
        assert_eq!(value(f64::NAN, "µs"), "n/a");
    }
}
