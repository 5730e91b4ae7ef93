//! The verdict and its serialisation to results.json (history-format.md, "What the checker
//! concludes"): `valid`, `anomaly_types`, `anomalies`, `warnings`, `stats`.
//!
//! Validity has three values and composes as Jepsen's does: false beats unknown beats true. Each
//! finding is written as its data plus an `explanation` rendered by [`explain()`](crate::explain()).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::checks::{Finding, Kind};
use crate::explain::explain;
use crate::stats::Stats;

/// Whether the history is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    True,
    /// An anomaly was found.
    False,
    /// The checker could not decide (nothing acknowledged, no final state, a check failed).
    Unknown,
}

impl Validity {
    /// Composes two verdicts: false beats unknown beats true.
    pub fn and(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::True,
        }
    }

    /// The exit status convention: 0 true, 1 false, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::True => 0,
            Validity::False => 1,
            Validity::Unknown => 2,
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::True => s.serialize_bool(true),
            Validity::False => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// What the checker concludes about a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub valid: Validity,
    /// Anomalies by type (only types found; a type's list is empty when no finding kept its
    /// witnesses: `Options::findings_per_kind_max` 0), at most
    /// [`FINDINGS_PER_KIND_MAX`](crate::checks::FINDINGS_PER_KIND_MAX) each; the totals are in
    /// `stats.anomaly_counts`.
    pub anomalies: BTreeMap<Kind, Vec<Finding>>,
    /// Warnings by type, likewise.
    pub warnings: BTreeMap<Kind, Vec<Finding>>,
    pub stats: Stats,
}

impl Results {
    /// 0 when valid, 1 when an anomaly was found, 2 when unknown.
    pub fn exit_code(&self) -> i32 {
        self.valid.exit_code()
    }

    /// The types of anomaly found, in a fixed order.
    pub fn anomaly_types(&self) -> Vec<Kind> {
        self.anomalies.keys().copied().collect()
    }

    /// How many findings of a kind there were in all (anomaly or warning).
    pub fn count(&self, kind: Kind) -> usize {
        let counts = if kind.is_anomaly() {
            &self.stats.anomaly_counts
        } else {
            &self.stats.warning_counts
        };
        counts.get(&kind).copied().unwrap_or(0)
    }
}

/// A finding as written: its data, then its explanation.
#[derive(Serialize)]
struct Rendered<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    explanation: String,
}

impl<'a> Rendered<'a> {
    fn new(finding: &'a Finding) -> Rendered<'a> {
        Rendered {
            finding,
            explanation: explain(finding),
        }
    }
}

struct Group<'a>(&'a BTreeMap<Kind, Vec<Finding>>);

impl Serialize for Group<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (kind, findings) in self.0 {
            let rendered: Vec<Rendered> = findings.iter().map(Rendered::new).collect();
            map.serialize_entry(kind, &rendered)?;
        }
        map.end()
    }
}

impl Serialize for Results {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("valid", &self.valid)?;
        map.serialize_entry("anomaly_types", &self.anomaly_types())?;
        map.serialize_entry("anomalies", &Group(&self.anomalies))?;
        map.serialize_entry("warnings", &Group(&self.warnings))?;
        map.serialize_entry("stats", &self.stats)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_beats_unknown_beats_true() {
        use Validity::*;
        assert_eq!(True.and(True), True);
        assert_eq!(True.and(Unknown), Unknown);
        assert_eq!(Unknown.and(False), False);
        assert_eq!(False.and(True), False);
        assert_eq!(
            (True.exit_code(), False.exit_code(), Unknown.exit_code()),
            (0, 1, 2)
        );
        assert_eq!(serde_json::to_string(&Unknown).unwrap(), "\"unknown\"");
        assert_eq!(serde_json::to_string(&False).unwrap(), "false");
    }
}
