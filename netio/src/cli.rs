//! Command-line plumbing shared by the proxy, echo-backend and loadgen
//! binaries (and the workbench's scenario files): clap's errors as one
//! line, one duration syntax, and a panic on any thread ends the whole
//! process.

use std::process::ExitCode;
use std::time::Duration;

/// Parses the command line into `T`. `--help` and `--version` print and
/// come back as `Err(SUCCESS)`; a bad argument prints one line,
/// `NAME: what was wrong (see --help)`, and comes back as `Err(2)`.
pub fn parse<T: clap::Parser>(name: &str) -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Nothing runs yet that a stalled stderr could hold up, and a
        // closed one must not turn a usage error into a panic.
        crate::log::direct(format_args!(
            "{name}: {} (see --help)",
            one_line(&e.to_string())
        ));
        ExitCode::from(2)
    })
}

/// clap's message is several lines: what was wrong (perhaps continued on
/// indented lines, such as the possible values), a blank line, usage.
/// Keeps the first part, joined into one line.
pub fn one_line(text: &str) -> String {
    let what: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let what = what.join(" ");
    let what = what.trim_start_matches("error: ");
    if what.is_empty() {
        "invalid arguments".into()
    } else {
        what.into()
    }
}

/// Makes a panic on any thread abort the process after logging the usual
/// message (waiting at most [`crate::log::FLUSH`] for it): a worker that died must not leave a half-alive server behind
/// (the main thread sleeps in its signalfd and would never notice).
pub fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        // Through the log, never straight to stderr: a stalled stderr
        // must not keep a panicking process from aborting.
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        crate::log!("thread '{name}' {info}");
        crate::log::flush(crate::log::FLUSH);
        std::process::abort();
    }));
}

/// Parses a whole number for an option that allows `lo..=hi`, for the
/// binaries' option checks: the error (what is wrong, without the option's
/// name, which the caller adds) always says what is allowed. Underscores
/// are allowed as digit separators (`1_000_000`).
pub fn number<T>(value: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let text = value.trim().replace('_', "");
    let allowed = format!("must be {lo}..={hi}");
    let whole = !text.is_empty()
        && text
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit());
    match text.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        // Negative, too large for the type, or outside the range.
        _ if whole => Err(allowed),
        _ => Err(format!("not a whole number; {allowed}")),
    }
}

/// Parses a duration: a number and a unit, `ns`, `us` (or `µs`), `ms`,
/// `s` (or `sec`, `secs`), `m` (or `min`) or `h`; a bare number is
/// seconds. E.g. `250us`, `500ms`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative (0 or more, e.g. 500ms, 10s)".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit \"{other}\" (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a number with a unit, e.g. 500ms, 10s, 1m".to_string())?;
    let secs = n * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err("too large: at most 1000000000s".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::{number, one_line, parse_duration};

    #[test]
    fn numbers_say_what_is_allowed() {
        assert_eq!(number::<usize>("1_000", 1, 5000), Ok(1000));
        assert_eq!(number::<usize>("-1", 1, 256), Err("must be 1..=256".into()));
        assert_eq!(
            number::<u16>("70000", 0, 65535),
            Err("must be 0..=65535".into())
        );
        assert_eq!(
            number::<usize>("99999999999999999999999", 1, 9),
            Err("must be 1..=9".into())
        );
        assert_eq!(
            number::<usize>("lots", 0, 9),
            Err("not a whole number; must be 0..=9".into())
        );
        assert_eq!(
            number::<usize>("", 0, 9),
            Err("not a whole number; must be 0..=9".into())
        );
    }

    #[test]
    fn negative_durations_say_so() {
        let e = parse_duration("-1s").expect_err("negative");
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn clap_errors_become_one_line_with_their_possible_values() {
        let text = "error: invalid value 'bogus' for '--mode <MODE>'\n  [possible values: echo, http]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "invalid value 'bogus' for '--mode <MODE>' [possible values: echo, http]"
        );
        assert_eq!(one_line(""), "invalid arguments");
    }
}
