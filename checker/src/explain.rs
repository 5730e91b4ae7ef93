//! Wording: a one-sentence explanation per finding, and the short human summary of a result.
//!
//! Kept apart from the findings' data (`checks`), as Elle keeps its explanations apart from its
//! anomalies: the data is what tests match and reports lay out; the words are for the engineer.

use std::fmt::Write as _;

use crate::checks::{FinalState, Finding, Kind, ReadWitness, WriteWitness};
use crate::history::Version;
use crate::results::{Results, Validity};

/// Nanoseconds as milliseconds, e.g. `5.020 ms`.
fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn version(v: &Option<Version>) -> String {
    let Some(v) = v else {
        return "(no version)".to_owned();
    };
    let clock: Vec<String> = v.clock.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    match &v.dot {
        Some(d) => format!("dot {}:{} clock {{{}}}", d.node, d.counter, clock.join(",")),
        None => format!("clock {{{}}}", clock.join(",")),
    }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        "nothing".to_owned()
    } else {
        format!("[{}]", ids.join(", "))
    }
}

fn ack(w: &WriteWitness) -> String {
    let via = w
        .node
        .as_deref()
        .map(|n| format!(" via {n}"))
        .unwrap_or_default();
    match w.acked_at {
        Some(t) => format!("acknowledged at {} (process {}{via})", ms(t), w.process),
        None => format!(
            "invoked at {} (process {}{via}, {})",
            ms(w.invoked_at),
            w.process,
            w.outcome
        ),
    }
}

fn read_desc(r: &ReadWitness) -> String {
    match r.source {
        "replica-state" => format!(
            "the final state of replica {}",
            r.node.as_deref().unwrap_or("?")
        ),
        "observed" => format!(
            "the read that write {} (process {}, invoked at {}) was based on (its observed list)",
            r.write.as_deref().unwrap_or("?"),
            r.process.unwrap_or_default(),
            ms(r.invoked_at)
        ),
        source => format!(
            "a {} by process {} at {}",
            source.replace('-', " "),
            r.process.unwrap_or_default(),
            ms(r.completed_at.unwrap_or(r.invoked_at))
        ),
    }
}

/// What each replica holds, e.g. `n1 holds [a, b], n2 holds nothing`.
fn replicas_held(f: &FinalState) -> String {
    if f.replicas.is_empty() {
        return "no replica reported the key".to_owned();
    }
    let mut held = String::new();
    for (node, ids) in &f.replicas {
        let _ = write!(
            held,
            "{}{node} holds {}",
            if held.is_empty() { "" } else { ", " },
            list(ids)
        );
    }
    held
}

/// One sentence saying what went wrong and why it matters.
pub fn explain(f: &Finding) -> String {
    match f {
        Finding::LostWrite(l) => {
            let w = &l.write;
            let held = replicas_held(&l.final_state);
            match l.rule {
                "cart-item" => format!(
                    "{} {} to {} was {}, but its item {} is in no final sibling's value and no delete that saw it survives ({held}).",
                    w.f,
                    w.write,
                    w.key,
                    ack(w),
                    w.write
                ),
                "delete" => format!(
                    "Delete {} of {} was {}, but its tombstone is gone and {} that it removed {} present again ({held}).",
                    w.write,
                    w.key,
                    ack(w),
                    list(&l.resurrected),
                    if l.resurrected.len() == 1 {
                        "is"
                    } else {
                        "are"
                    }
                ),
                _ => format!(
                    "{} {} to {} was {}, but no replica holds it{} and no write present in the final state descends from it ({held}).",
                    w.f,
                    w.write,
                    w.key,
                    ack(w),
                    if w.f == "delete" {
                        " as a tombstone"
                    } else {
                        ""
                    }
                ),
            }
        }
        Finding::PhantomRead(p) => match &p.written {
            None => format!(
                "{} of {} returned write {}, which no put or delete on that key invoked.",
                read_desc(&p.read),
                p.key,
                p.write
            ),
            Some(_) if p.reason == "unknown-item" => format!(
                "{} of {} returned write {} with items {} that no put on that key invoked.",
                read_desc(&p.read),
                p.key,
                p.write,
                list(&p.unknown_items)
            ),
            Some(written) => format!(
                "{} of {} returned write {} with value {}, but that write wrote {}{}.",
                read_desc(&p.read),
                p.key,
                p.write,
                p.returned
                    .as_ref()
                    .map_or("nothing".to_owned(), |v| v.to_string()),
                written,
                if p.unknown_items.is_empty() {
                    String::new()
                } else {
                    format!(" (items no put invoked: {})", list(&p.unknown_items))
                }
            ),
        },
        Finding::FailedWriteVisible(v) => format!(
            "{} {} to {} ended fail at {}, yet {} showed it ({} time(s) in all).",
            v.write.f,
            v.write.write,
            v.write.key,
            ms(v.write.completed_at.unwrap_or(v.write.invoked_at)),
            read_desc(&v.seen_in),
            v.times_seen
        ),
        Finding::FalseDominance(d) => format!(
            "The store orders {} ({}) before {} ({}), but {}'s client never read {}, directly or transitively, so the store may silently drop it.",
            d.write.write,
            version(&d.write.version),
            d.dominated_by.write,
            version(&d.dominated_by.version),
            d.dominated_by.write,
            d.write.write
        ),
        Finding::Divergence(d) => format!(
            "After the final quiescence the replicas of {} disagree: {}.",
            d.key,
            replicas_held(&d.final_state)
        ),
        Finding::ClockRegression(c) => format!(
            "{}'s client read {}, but {}'s version ({}) does not succeed {}'s ({}): the store did not record that causality.",
            c.write.write,
            c.observed_write.write,
            c.write.write,
            version(&c.write.version),
            c.observed_write.write,
            version(&c.observed_write.version)
        ),
        Finding::QuorumReadMiss(q) => {
            let faults: Vec<String> = q
                .faults_between
                .iter()
                .map(|f| match f.nodes.as_slice() {
                    [] => f.f.clone(),
                    nodes => format!("{} {}", f.f, nodes.join(",")),
                })
                .collect();
            format!(
                "With a strict quorum (N={} R={} W={}), {} of {} returned {} although {} {} was {}{}; {} was wiped, hit by a disk or power fault, or crashed without fsync, and no node joined or left in between (faults in between: {}).",
                q.n,
                q.r,
                q.w,
                read_desc(&q.read),
                q.write.key,
                list(&q.read.siblings),
                q.write.f,
                q.write.write,
                ack(&q.write),
                match q.missed_count {
                    1 => String::new(),
                    n => format!(", and it missed {} other acknowledged write(s)", n - 1),
                },
                if q.replicas.is_empty() {
                    // The key has no replica-state event: any node may hold it, so no node was.
                    "no node".to_owned()
                } else {
                    format!("no replica of the key ({})", q.replicas.join(", "))
                },
                if faults.is_empty() {
                    "none".to_owned()
                } else {
                    faults.join(", ")
                }
            )
        }
        Finding::FalseConcurrency(c) => format!(
            "{} of {} returned {} and {} as siblings, although {}'s client had read {}, which should have been superseded.",
            read_desc(&c.read),
            c.key,
            c.ancestor,
            c.descendant,
            c.descendant,
            c.ancestor
        ),
        Finding::StaleRead(s) => format!(
            "A read of {} starting at {} missed {} {}, {}{}.",
            s.key,
            ms(s.read.invoked_at),
            s.missed.f,
            s.missed.write,
            ack(&s.missed),
            match s.missed_count {
                1 => String::new(),
                n => format!(", and {} other acknowledged write(s)", n - 1),
            }
        ),
    }
}

/// A short human summary: the verdict, each anomaly type with its count and first witness, warning
/// counts, operation counts and latencies, and why the verdict is unknown if it is.
pub fn summary(r: &Results) -> String {
    let mut out = String::new();
    let verdict = match r.valid {
        Validity::True => "valid",
        Validity::False => "INVALID",
        Validity::Unknown => "unknown",
    };
    let _ = writeln!(out, "{verdict}");
    for (kind, findings) in &r.anomalies {
        let first = findings.first().map(explain).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}: {} - e.g. {first}",
            kind.as_str(),
            r.count(*kind)
        );
    }
    let warnings: Vec<String> = Kind::ALL
        .iter()
        .filter(|k| !k.is_anomaly())
        .map(|&k| format!("{} {}", k.as_str(), r.count(k)))
        .collect();
    let _ = writeln!(out, "  warnings: {}", warnings.join(", "));
    let s = &r.stats;
    let lat: Vec<String> = s
        .latency_ns
        .iter()
        .map(|(f, q)| format!("{f} p50 {} p99 {}", ms(q.p50), ms(q.p99)))
        .collect();
    let _ = writeln!(
        out,
        "  ops: {} (ok {}, fail {}, info {}, pending {}); {}",
        s.totals.ops,
        s.totals.ok,
        s.totals.fail,
        s.totals.info,
        s.totals.pending,
        if lat.is_empty() {
            "no latencies".to_owned()
        } else {
            lat.join("; ")
        }
    );
    let w = &s.writes;
    let _ = writeln!(
        out,
        "  writes: {} acknowledged, {} failed, {} indeterminate; {} acknowledged lost ({:.2}%)",
        w.acknowledged,
        w.failed,
        w.indeterminate,
        w.lost,
        w.lost_share * 100.0
    );
    for reason in &s.unknown {
        let _ = writeln!(out, "  unknown: {reason}");
    }
    out
}
