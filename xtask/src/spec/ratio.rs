//! `[ratio_targets]`: targets on the ratio of two subjects of the same
//! run, one of them ours on one engine and the other ours on the other
//! (`rate = { of = "self-uring", vs = "self", min = 1.00 }`: the uring
//! engine's rate over the epoll engine's). The ratio is reported as the
//! figure `NAME_vs_VS`, under the subject `of`; both subjects are run in
//! every run of the scenario, whatever `--compare` says, and the target
//! gates like a peer ratio (the two ride the same machine in alternating
//! windows) unless `gate = false`.

use super::Bound;
use crate::figures::{self, Producer};
use crate::peers::Kind;
use serde::Deserialize;

/// One ratio target as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    of: String,
    vs: String,
    min: Option<f64>,
    max: Option<f64>,
    gate: Option<bool>,
}

/// One ratio target, checked: `of`'s figure over `vs`'s within `bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioTarget {
    pub of: Kind,
    pub vs: Kind,
    /// Never baselined: the ratio is judged on `of`, not the primary.
    pub bound: Bound,
}

impl<'de> Deserialize<'de> for RatioTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RatioTarget, D::Error> {
        use serde::de::Error;
        let w = Written::deserialize(d)?;
        let of = Kind::named(&w.of)
            .filter(|k| *k != Kind::Direct)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "of: \"{}\" is not a proxy of the run (one of: {})",
                    w.of,
                    names(Kind::ALL.iter().filter(|k| **k != Kind::Direct))
                ))
            })?;
        let vs = Kind::named(&w.vs)
            .filter(|k| Kind::OURS.contains(k))
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "vs: \"{}\" is not one of our engines ({}); against a peer, name \
                     NAME_vs_PEER in [targets]",
                    w.vs,
                    names(Kind::OURS.iter())
                ))
            })?;
        if of == vs {
            return Err(D::Error::custom(format!(
                "of and vs are both \"{}\": a ratio of two subjects",
                w.of
            )));
        }
        Ok(RatioTarget {
            of,
            vs,
            bound: Bound {
                min: w.min,
                max: w.max,
                gate: w.gate,
                baseline: None,
            },
        })
    }
}

fn names<'a>(kinds: impl Iterator<Item = &'a Kind>) -> String {
    kinds.map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

impl RatioTarget {
    /// The figure the ratio of `name` is reported as.
    pub fn figure(&self, name: &str) -> String {
        format!("{name}_vs_{}", self.vs.name())
    }
}

/// Checks the targets of a scenario of kind `producer`: each names a
/// figure of the table the scenario produces, with `min` or `max`.
pub fn check<'a>(
    targets: impl Iterator<Item = (&'a String, &'a RatioTarget)>,
    producer: Producer,
) -> Result<(), String> {
    for (name, t) in targets {
        if !figures::def(name).is_some_and(|d| d.from.serves(producer)) {
            return Err(format!(
                "ratio_targets.{name}: not a figure this scenario produces (one of: {})",
                figures::produced_by(producer)
                    .into_iter()
                    .filter(|f| !f.ends_with("_vs_PEER"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if t.bound.min.is_none() && t.bound.max.is_none() {
            return Err(format!("ratio_targets.{name}: give `min` or `max`"));
        }
    }
    Ok(())
}
