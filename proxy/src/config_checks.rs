//! The active health checks of a [`super::Config`]'s backends: the
//! `[health-check]` table checks every backend, and a `[[backend]]`
//! table's `check-*` keys check that one (or override the table's values
//! for it); `check = false` leaves a backend unchecked. A mistake names
//! `health-check.KEY` or `backend[N].check-KEY`, whichever gave the value.

use super::Names;
use crate::config_file::{BackendEntry, FileCheck};
use crate::health::{CheckSpec, Expect};
use crate::pattern::{unescape, Pattern};
use std::time::Duration;

/// The fewest and the most checks in a row `rise` and `fall` may ask for.
const COUNTS: (u32, u32) = (1, 1000);

/// The shortest and the longest check interval.
const INTERVALS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(86_400));

/// The file's `[health-check]` table with the command line's
/// `--check-interval`, `--check-rise` and `--check-fall` over it: any of
/// them checks every backend even without the table. Each is checked
/// here, so that a mistake names the option.
pub(super) fn with_cli(
    file: Option<FileCheck>,
    cli: &super::Cli,
    names: &Names<'_>,
) -> Result<Option<FileCheck>, String> {
    let given = [&cli.check_interval, &cli.check_rise, &cli.check_fall];
    if given.iter().all(|g| g.is_none()) {
        return Ok(file);
    }
    let mut top = file.unwrap_or_default();
    if let Some((d, text, _)) = names.duration("check-interval", &cli.check_interval, &None)? {
        let (lo, hi) = INTERVALS;
        if d < lo || d > hi {
            return Err(names.bad("check-interval", true, &text, "must be 10ms..=24h"));
        }
        top.interval = Some(text);
    }
    let (lo, hi) = COUNTS;
    if let Some((n, _)) = names.number("check-rise", &cli.check_rise, None, lo, hi)? {
        top.rise = Some(n);
    }
    if let Some((n, _)) = names.number("check-fall", &cli.check_fall, None, lo, hi)? {
        top.fall = Some(n);
    }
    Ok(Some(top))
}

/// The check of a backend given on the command line, or as a plain
/// address in the file: the `[health-check]` table's, if there is one.
pub(super) fn of_plain(
    top: Option<&FileCheck>,
    names: &Names<'_>,
) -> Result<Option<CheckSpec>, String> {
    match top {
        Some(top) => spec(&FileCheck::default(), top, None, names).map(Some),
        None => Ok(None),
    }
}

/// The check of the `n`th backend of the file (a table, counted from 1).
pub(super) fn of_entry(
    e: &BackendEntry,
    n: usize,
    top: Option<&FileCheck>,
    names: &Names<'_>,
) -> Result<Option<CheckSpec>, String> {
    if !e.table {
        return of_plain(top, names);
    }
    let own = e.check_keys();
    let sets_one = own.given().next();
    match (e.check, sets_one) {
        (Some(false), Some(key)) => Err(names.bad(
            &format!("backend[{n}].check"),
            false,
            false,
            format!("the table also sets check-{key}: drop one of them"),
        )),
        (Some(false), None) => Ok(None),
        (None, None) if top.is_none() => Ok(None),
        _ => spec(&own, top.unwrap_or(&FileCheck::default()), Some(n), names).map(Some),
    }
}

impl FileCheck {
    /// The keys this set gives.
    fn given(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("interval", self.interval.is_some()),
            ("timeout", self.timeout.is_some()),
            ("rise", self.rise.is_some()),
            ("fall", self.fall.is_some()),
            ("send", self.send.is_some()),
            ("expect", self.expect.is_some()),
            ("expect-regex", self.expect_regex.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
    }
}

/// The settings of one check: each of `own` (backend `n`'s keys), else of
/// `top` (the `[health-check]` table), else the default.
fn spec(
    own: &FileCheck,
    top: &FileCheck,
    n: Option<usize>,
    names: &Names<'_>,
) -> Result<CheckSpec, String> {
    // The key a value came from, by whether the backend's own table gave it.
    let key = |k: &str, mine: bool| match (n, mine) {
        (Some(n), true) => format!("backend[{n}].check-{k}"),
        _ => format!("health-check.{k}"),
    };
    let pick =
        |k: &'static str, mine: &Option<String>, theirs: &Option<String>| match (mine, theirs) {
            (Some(v), _) => Some((key(k, true), v.clone())),
            (None, Some(v)) => Some((key(k, false), v.clone())),
            (None, None) => None,
        };
    let duration = |k, mine, theirs| -> Result<Option<(String, String, Duration)>, String> {
        let Some((key, v)) = pick(k, mine, theirs) else {
            return Ok(None);
        };
        let d = super::parse_duration(&v).map_err(|why| names.bad(&key, false, &v, why))?;
        Ok(Some((key, v, d)))
    };
    let defaults = CheckSpec::default();
    let interval = match duration("interval", &own.interval, &top.interval)? {
        Some((key, v, d)) if d < INTERVALS.0 || d > INTERVALS.1 => {
            return Err(names.bad(&key, false, v, "must be 10ms..=24h"))
        }
        Some((_, _, d)) => d,
        None => defaults.interval,
    };
    // A round must end before the next one starts: the timeout is at most
    // the interval (as HAProxy's connect timeout for checks is).
    let timeout = match duration("timeout", &own.timeout, &top.timeout)? {
        Some((key, v, d)) if d < Duration::from_millis(1) => {
            return Err(names.bad(&key, false, v, "must be at least 1ms"))
        }
        Some((_, _, d)) => d.min(interval),
        None => interval,
    };
    let count = |k: &'static str, mine: Option<u32>, theirs: Option<u32>, default: u32| {
        let (key, v) = match (mine, theirs) {
            (Some(v), _) => (key(k, true), v),
            (None, Some(v)) => (key(k, false), v),
            (None, None) => return Ok(default),
        };
        let (lo, hi) = COUNTS;
        if v < lo || v > hi {
            return Err(names.bad(&key, false, v, format!("must be {lo}..={hi}")));
        }
        Ok(v)
    };
    let rise = count("rise", own.rise, top.rise, defaults.rise)?;
    let fall = count("fall", own.fall, top.fall, defaults.fall)?;
    let send = match pick("send", &own.send, &top.send) {
        Some((key, v)) => unescape(&v).map_err(|why| names.bad(&key, false, &v, why))?,
        None => Vec::new(),
    };
    // The two kinds of expectation override each other as one setting: a
    // backend's own expect-regex replaces the table's expect.
    let mine = own.expect.is_some() || own.expect_regex.is_some();
    let from = if mine { own } else { top };
    let prefix = from.expect.clone().map(|v| (key("expect", mine), v));
    let regex = from
        .expect_regex
        .clone()
        .map(|v| (key("expect-regex", mine), v));
    let expect = match (prefix, regex) {
        (Some(_), Some((key, v))) => {
            return Err(names.bad(
                &key,
                false,
                v,
                "give expect (a prefix) or expect-regex, not both",
            ))
        }
        (Some((key, v)), None) => {
            let p = unescape(&v).map_err(|why| names.bad(&key, false, &v, why))?;
            if p.is_empty() {
                return Err(names.bad(
                    &key,
                    false,
                    v,
                    "an empty prefix matches anything: leave it out for a connect check",
                ));
            }
            Some(Expect::Prefix(p))
        }
        (None, Some((key, v))) if v.is_empty() => {
            return Err(names.bad(
                &key,
                false,
                v,
                "an empty pattern matches anything: leave it out for a connect check",
            ))
        }
        (None, Some((key, v))) => Some(Expect::Pattern(
            Pattern::new(&v).map_err(|why| names.bad(&key, false, &v, why))?,
        )),
        (None, None) => None,
    };
    Ok(CheckSpec {
        interval,
        timeout,
        rise,
        fall,
        send,
        expect,
    })
}
