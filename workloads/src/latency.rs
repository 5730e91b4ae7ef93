//! Latency models: how long a simulated peer message spends in the network, drawn per message
//! kind from named distributions (`--latency`).
//!
//! Why: turmoil's own latency is one exponential curve squeezed into a millisecond range and
//! rounded to the millisecond. The PBS paper (Bailis, Venkataraman, Franklin, Hellerstein, Stoica,
//! "Probabilistically Bounded Staleness for Practical Partial Quorums", VLDB 2012) shows that
//! staleness under partial quorums depends on the separate latencies of its WARS model: W, the
//! write reaching a replica; A, the replica's ack reaching the coordinator; R, a read reaching a
//! replica; S, the replica's response reaching the coordinator. A model here gives each of those,
//! and every other peer message, its own distribution in microseconds; the node's simulated
//! environment holds each received peer message back by a draw (independently per message, as
//! PBS assumes, so messages may overtake each other), and turmoil's own latency drops to nothing.
//! The simulation moves in ticks of 1 ms of the nodes' runtime, and every hop takes at least one:
//! a draw of d is served as a hop of max(1, ⌈d⌉) ticks. A tick stands for `tick_us` of the
//! model's time (1000 by default; less stretches the delays, see `SimConfig::tick_us`), so that
//! with `tick_us` = 50, LinkedIn's 0.235 ms writes are 5 ticks and not one.
//!
//! The draws come from the project's SplitMix64 ([`crate::prng`]), one generator per node seeded
//! from the run's seed, and from `f64::ln`/`powf`/`exp`, so the same seed gives the same delays
//! on the same platform.

use crate::prng::{SplitMix64, mix64};
use dynamo_node::env::{MessageKind, PeerDelays};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// The longest delay a draw may give, µs (a minute): a heavy Pareto tail (LinkedIn's disk writes,
/// α = 1.51) can draw hours once in a billion, which would outlast any run.
pub const DELAY_US_MAX: u64 = 60_000_000;
/// Most parts of one mixture, and deepest nesting of mixtures in a model.
pub const MIX_PARTS_MAX: usize = 16;
const MIX_DEPTH_MAX: usize = 4;

/// A distribution of delays, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Dist {
    /// Always `us`.
    Constant { us: f64 },
    /// Uniform in `[low_us, high_us]`.
    Uniform { low_us: f64, high_us: f64 },
    /// Exponential with mean `mean_us` (rate 1 / mean).
    Exponential { mean_us: f64 },
    /// Log-normal: the logarithm of the delay is normal, with median `median_us` (e^μ) and
    /// standard deviation `sigma` (of the logarithm).
    LogNormal { median_us: f64, sigma: f64 },
    /// Pareto with scale `xm_us` (the least value) and shape `alpha`: P(X > x) = (xm / x)^α.
    Pareto { xm_us: f64, alpha: f64 },
    /// A mixture: each draw picks a part with probability proportional to its weight.
    Mix { parts: Vec<(f64, Dist)> },
}

impl Dist {
    /// One draw, µs, in `0..=DELAY_US_MAX`.
    pub fn sample_us(&self, g: &mut SplitMix64) -> f64 {
        let us = match self {
            Dist::Constant { us } => *us,
            Dist::Uniform { low_us, high_us } => low_us + (high_us - low_us) * g.unit_f64(),
            // Inverse transform: 1 - u is in (0, 1], so the logarithm is finite.
            Dist::Exponential { mean_us } => -mean_us * (1.0 - g.unit_f64()).ln(),
            Dist::LogNormal { median_us, sigma } => median_us * (sigma * standard_normal(g)).exp(),
            Dist::Pareto { xm_us, alpha } => xm_us / (1.0 - g.unit_f64()).powf(1.0 / alpha),
            Dist::Mix { parts } => {
                let total: f64 = parts.iter().map(|(w, _)| w).sum();
                let mut draw = g.unit_f64() * total;
                let mut chosen = &parts[parts.len() - 1].1;
                for (w, d) in parts {
                    if draw < *w {
                        chosen = d;
                        break;
                    }
                    draw -= w;
                }
                return chosen.sample_us(g);
            }
        };
        us.clamp(0.0, DELAY_US_MAX as f64)
    }

    /// The distribution's mean, µs, before the clamp (infinite for a Pareto with α ≤ 1).
    pub fn mean_us(&self) -> f64 {
        match self {
            Dist::Constant { us } => *us,
            Dist::Uniform { low_us, high_us } => (low_us + high_us) / 2.0,
            Dist::Exponential { mean_us } => *mean_us,
            Dist::LogNormal { median_us, sigma } => median_us * (sigma * sigma / 2.0).exp(),
            Dist::Pareto { xm_us, alpha } if *alpha > 1.0 => alpha * xm_us / (alpha - 1.0),
            Dist::Pareto { .. } => f64::INFINITY,
            Dist::Mix { parts } => {
                let total: f64 = parts.iter().map(|(w, _)| w).sum();
                parts.iter().map(|(w, d)| w / total * d.mean_us()).sum()
            }
        }
    }

    fn validate(&self, depth: usize) -> Result<(), String> {
        let finite = |name: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be a finite number, at least 0 (got {x})"
                ))
            }
        };
        let positive = |name: &str, x: f64| {
            finite(name, x)?;
            if x > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be more than 0"))
            }
        };
        match self {
            Dist::Constant { us } => finite("constant's value", *us),
            Dist::Uniform { low_us, high_us } => {
                finite("uniform's low", *low_us)?;
                finite("uniform's high", *high_us)?;
                if low_us > high_us {
                    return Err(format!("uniform({low_us},{high_us}): low exceeds high"));
                }
                Ok(())
            }
            Dist::Exponential { mean_us } => positive("exponential's mean", *mean_us),
            Dist::LogNormal { median_us, sigma } => {
                positive("lognormal's median", *median_us)?;
                finite("lognormal's sigma", *sigma)
            }
            Dist::Pareto { xm_us, alpha } => {
                positive("pareto's scale", *xm_us)?;
                positive("pareto's shape", *alpha)
            }
            Dist::Mix { parts } => {
                if depth >= MIX_DEPTH_MAX {
                    return Err(format!("mixtures nest at most {MIX_DEPTH_MAX} deep"));
                }
                if parts.is_empty() || parts.len() > MIX_PARTS_MAX {
                    return Err(format!("a mixture has 1..={MIX_PARTS_MAX} parts"));
                }
                for (w, d) in parts {
                    positive("a mixture's weight", *w)?;
                    d.validate(depth + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// A standard normal draw (Box-Muller; the second value is thrown away so that every draw takes
/// the same two numbers from the generator).
fn standard_normal(g: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - g.unit_f64();
    let u2 = g.unit_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl fmt::Display for Dist {
    /// The `--latency` syntax, which [`parse_dist`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Constant { us } => write!(f, "constant({us})"),
            Dist::Uniform { low_us, high_us } => write!(f, "uniform({low_us},{high_us})"),
            Dist::Exponential { mean_us } => write!(f, "exponential({mean_us})"),
            Dist::LogNormal { median_us, sigma } => write!(f, "lognormal({median_us},{sigma})"),
            Dist::Pareto { xm_us, alpha } => write!(f, "pareto({xm_us},{alpha})"),
            Dist::Mix { parts } => {
                write!(f, "mix(")?;
                for (i, (w, d)) in parts.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{w}*{d}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Delays per kind of peer message: PBS's W, A, R and S, and `other` for the rest (forwarded
/// requests, read repair, hints, anti-entropy, gossip).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    /// The preset's name, when the model is one (for the reader of a plan; the distributions below
    /// are what runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// W: a write (a replica's `Store`) on its way to the replica.
    pub write: Dist,
    /// A: the replica's ack on its way back.
    pub ack: Dist,
    /// R: a read (`Fetch`) on its way to a replica.
    pub read: Dist,
    /// S: the replica's response on its way back.
    pub response: Dist,
    /// Every other peer message.
    pub other: Dist,
}

impl LatencyModel {
    /// The distribution for messages of `kind`.
    pub fn dist(&self, kind: MessageKind) -> &Dist {
        match kind {
            MessageKind::Write => &self.write,
            MessageKind::Ack => &self.ack,
            MessageKind::Read => &self.read,
            MessageKind::Response => &self.response,
            MessageKind::Other => &self.other,
        }
    }

    /// Checks every distribution; the error names the kind.
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in self.named() {
            d.validate(0)
                .map_err(|e| format!("latency of {name}: {e}"))?;
        }
        Ok(())
    }

    fn named(&self) -> [(&'static str, &Dist); 5] {
        [
            ("write", &self.write),
            ("ack", &self.ack),
            ("read", &self.read),
            ("response", &self.response),
            ("other", &self.other),
        ]
    }

    /// One distribution for every kind.
    pub fn uniform(dist: Dist) -> LatencyModel {
        LatencyModel {
            preset: None,
            write: dist.clone(),
            ack: dist.clone(),
            read: dist.clone(),
            response: dist.clone(),
            other: dist,
        }
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(preset) = &self.preset {
            return write!(f, "{preset}");
        }
        for (i, (name, d)) in self.named().iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{name}={d}")?;
        }
        Ok(())
    }
}

/// The presets: PBS's fits to production latencies (Table 3 of the VLDB 2012 paper, "WARS
/// latency distributions fitted to production measurements"; the paper's figures are in ms, here
/// in µs). Each is a mixture of a Pareto body and an exponential tail.
pub const PRESETS: [&str; 3] = ["lnkd-ssd", "lnkd-disk", "ymmr"];

/// PBS's mixture of a Pareto body (`pareto_share` of draws; scale in ms, shape) and an
/// exponential tail (rate per ms), converted to µs.
fn pbs_mix(pareto_share: f64, xm_ms: f64, alpha: f64, lambda_per_ms: f64) -> Dist {
    Dist::Mix {
        parts: vec![
            (
                pareto_share,
                Dist::Pareto {
                    xm_us: xm_ms * 1_000.0,
                    alpha,
                },
            ),
            (
                1.0 - pareto_share,
                Dist::Exponential {
                    mean_us: 1_000.0 / lambda_per_ms,
                },
            ),
        ],
    }
}

/// The model a preset names, or `None`.
pub fn preset(name: &str) -> Option<LatencyModel> {
    // LinkedIn's Voldemort on SSDs: W = A = R = S.
    let lnkd_network = pbs_mix(0.9122, 0.235, 10.0, 1.66);
    let (write, rest) = match name {
        "lnkd-ssd" => (lnkd_network.clone(), lnkd_network),
        // On spinning disks: slower writes, the same network for A, R and S.
        "lnkd-disk" => (pbs_mix(0.38, 1.05, 1.51, 0.183), lnkd_network),
        // Yammer's Riak: W, and A = R = S.
        "ymmr" => (
            pbs_mix(0.939, 3.0, 3.35, 0.0028),
            pbs_mix(0.982, 1.5, 3.8, 0.0217),
        ),
        _ => return None,
    };
    Some(LatencyModel {
        preset: Some(name.to_owned()),
        write,
        ack: rest.clone(),
        read: rest.clone(),
        response: rest.clone(),
        other: rest,
    })
}

/// Reads `--latency`: a preset's name (see [`PRESETS`]), one distribution for every kind, or
/// `KIND=DIST,...` with kinds `write`, `ack`, `read`, `response`, `other`, and `all` for every
/// kind not named (every kind needs a distribution). Distributions, in µs:
/// `constant(US)`, `uniform(LOW,HIGH)`, `exponential(MEAN)`, `lognormal(MEDIAN,SIGMA)`,
/// `pareto(XM,ALPHA)`, `mix(W*DIST,W*DIST,...)`.
pub fn parse_model(spec: &str) -> Result<LatencyModel, String> {
    let spec = spec.trim();
    if let Some(model) = preset(spec) {
        return Ok(model);
    }
    let mut p = Parser::new(spec);
    let model = if spec.contains('=') {
        let mut kinds: [Option<Dist>; 5] = Default::default();
        let mut all = None;
        loop {
            let name = p.word()?;
            p.expect('=')?;
            let dist = p.dist(0)?;
            let slot = match name.as_str() {
                "write" => 0,
                "ack" => 1,
                "read" => 2,
                "response" => 3,
                "other" => 4,
                "all" => {
                    all = Some(dist);
                    if !p.eat(',') {
                        break;
                    }
                    continue;
                }
                _ => {
                    return Err(format!(
                        "`{name}` is not a message kind (write, ack, read, response, other, all)"
                    ));
                }
            };
            kinds[slot] = Some(dist);
            if !p.eat(',') {
                break;
            }
        }
        for kind in &mut kinds {
            if kind.is_none() {
                kind.clone_from(&all);
            }
        }
        p.end()?;
        let names = ["write", "ack", "read", "response", "other"];
        let mut take = |i: usize| {
            kinds[i].take().ok_or_else(|| {
                format!(
                    "no distribution for `{}`: name it, or give `all=`",
                    names[i]
                )
            })
        };
        LatencyModel {
            preset: None,
            write: take(0)?,
            ack: take(1)?,
            read: take(2)?,
            response: take(3)?,
            other: take(4)?,
        }
    } else {
        let dist = p.dist(0)?;
        p.end()?;
        LatencyModel::uniform(dist)
    };
    model.validate()?;
    Ok(model)
}

/// Reads one distribution in the `--latency` syntax.
pub fn parse_dist(spec: &str) -> Result<Dist, String> {
    let mut p = Parser::new(spec.trim());
    let dist = p.dist(0)?;
    p.end()?;
    dist.validate(0)?;
    Ok(dist)
}

/// A small recursive-descent reader of the `--latency` syntax.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("`{c}` expected")))
        }
    }

    fn end(&mut self) -> Result<(), String> {
        self.skip_space();
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(self.error("nothing more expected"))
        }
    }

    fn error(&self, what: &str) -> String {
        format!(
            "latency `{}`: {what} at `{}`",
            self.text,
            self.rest().chars().take(20).collect::<String>()
        )
    }

    fn word(&mut self) -> Result<String, String> {
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("a name expected"));
        }
        let word = self.rest()[..len].to_ascii_lowercase();
        self.at += len;
        Ok(word)
    }

    fn number(&mut self) -> Result<f64, String> {
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
            .unwrap_or(self.rest().len());
        let text = &self.rest()[..len];
        let x: f64 = text
            .parse()
            .map_err(|_| self.error("a number (µs) expected"))?;
        self.at += len;
        Ok(x)
    }

    fn numbers<const K: usize>(&mut self) -> Result<[f64; K], String> {
        self.expect('(')?;
        let mut out = [0.0; K];
        for (i, x) in out.iter_mut().enumerate() {
            if i > 0 {
                self.expect(',')?;
            }
            *x = self.number()?;
        }
        self.expect(')')?;
        Ok(out)
    }

    fn dist(&mut self, depth: usize) -> Result<Dist, String> {
        let name = self.word()?;
        Ok(match name.as_str() {
            "constant" => {
                let [us] = self.numbers()?;
                Dist::Constant { us }
            }
            "uniform" => {
                let [low_us, high_us] = self.numbers()?;
                Dist::Uniform { low_us, high_us }
            }
            "exponential" | "exp" => {
                let [mean_us] = self.numbers()?;
                Dist::Exponential { mean_us }
            }
            "lognormal" => {
                let [median_us, sigma] = self.numbers()?;
                Dist::LogNormal { median_us, sigma }
            }
            "pareto" => {
                let [xm_us, alpha] = self.numbers()?;
                Dist::Pareto { xm_us, alpha }
            }
            "mix" => {
                if depth >= MIX_DEPTH_MAX {
                    return Err(self.error(&format!("mixtures nest at most {MIX_DEPTH_MAX} deep")));
                }
                self.expect('(')?;
                let mut parts = Vec::new();
                loop {
                    let weight = self.number()?;
                    self.expect('*')?;
                    parts.push((weight, self.dist(depth + 1)?));
                    if parts.len() > MIX_PARTS_MAX {
                        return Err(
                            self.error(&format!("a mixture has at most {MIX_PARTS_MAX} parts"))
                        );
                    }
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect(')')?;
                Dist::Mix { parts }
            }
            _ => {
                return Err(format!(
                    "latency: `{name}` is neither a preset ({}) nor a distribution (constant, uniform, exponential, lognormal, pareto, mix)",
                    PRESETS.join(", ")
                ));
            }
        })
    }
}

/// A node's source of delays: the model and a generator of its own, so that the delays of one
/// node do not move when another node draws more.
#[derive(Debug)]
pub struct ModelDelays {
    model: LatencyModel,
    rng: Mutex<SplitMix64>,
    tick_us: u64,
}

impl ModelDelays {
    /// The delays of node `node` in the run with `seed`, one tick standing for `tick_us` of the
    /// model's time.
    pub fn new(model: LatencyModel, seed: u64, node: usize, tick_us: u64) -> ModelDelays {
        assert!(tick_us > 0, "a tick stands for some time");
        // A stream unrelated to the plan's and the node's other draws.
        let stream = mix64(seed ^ mix64(0x6c61_7465_6e63_7900 ^ node as u64));
        ModelDelays {
            model,
            rng: Mutex::new(SplitMix64::new(stream)),
            tick_us,
        }
    }

    /// How many ticks a message of `kind` spends on the way: at least the one every hop takes.
    pub fn ticks(&self, kind: MessageKind) -> u64 {
        let mut rng = self.rng.lock().expect("delay rng lock");
        let us = self.model.dist(kind).sample_us(&mut rng);
        ((us / self.tick_us as f64).ceil() as u64).max(1)
    }
}

impl PeerDelays for ModelDelays {
    /// The hold-back on top of the hop's own tick (which turmoil, with no latency of its own,
    /// takes to move any message).
    fn delay(&self, kind: MessageKind) -> Duration {
        Duration::from_millis(self.ticks(kind) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(d: &Dist, draws: usize) -> f64 {
        let mut g = SplitMix64::new(42);
        (0..draws).map(|_| d.sample_us(&mut g)).sum::<f64>() / draws as f64
    }

    #[test]
    fn draws_follow_their_distribution() {
        let cases = [
            parse_dist("constant(250)").unwrap(),
            parse_dist("uniform(100, 300)").unwrap(),
            parse_dist("exponential(500)").unwrap(),
            parse_dist("lognormal(400,0.5)").unwrap(),
            parse_dist("pareto(235,10)").unwrap(),
            parse_dist("mix(0.5*constant(100),0.5*constant(300))").unwrap(),
        ];
        for d in &cases {
            let (want, got) = (d.mean_us(), mean_of(d, 200_000));
            assert!(
                (got - want).abs() < want * 0.02,
                "{d}: mean {got} against {want}"
            );
        }
        // The Pareto's least value is its scale; the exponential's median is mean·ln 2.
        let mut g = SplitMix64::new(1);
        let p = parse_dist("pareto(235,10)").unwrap();
        assert!((0..10_000).all(|_| p.sample_us(&mut g) >= 235.0));
        let e = parse_dist("exponential(1000)").unwrap();
        let below = (0..100_000)
            .filter(|_| e.sample_us(&mut g) < 1000.0 * std::f64::consts::LN_2)
            .count();
        assert!((49_000..51_000).contains(&below), "{below}");
    }

    #[test]
    fn a_heavy_tail_is_clamped() {
        let d = parse_dist("pareto(1000,0.05)").unwrap();
        let mut g = SplitMix64::new(3);
        let max = (0..10_000).map(|_| d.sample_us(&mut g)).fold(0.0, f64::max);
        assert_eq!(max, DELAY_US_MAX as f64);
    }

    #[test]
    fn presets_are_pbs_table_3() {
        let ssd = parse_model("lnkd-ssd").unwrap();
        assert_eq!(ssd.write, ssd.response);
        // 91.22% × 0.235·10/9 ms + 8.78% × 1/1.66 ms = 0.2909 ms.
        assert!(
            (ssd.write.mean_us() - 291.0).abs() < 1.0,
            "{}",
            ssd.write.mean_us()
        );
        let disk = parse_model("lnkd-disk").unwrap();
        assert_ne!(disk.write, disk.ack);
        assert_eq!(disk.ack, ssd.ack);
        // 38% × 1.05·1.51/0.51 ms + 62% × 1/0.183 ms = 4.569 ms.
        assert!(
            (disk.write.mean_us() - 4_569.0).abs() < 5.0,
            "{}",
            disk.write.mean_us()
        );
        let ymmr = parse_model("ymmr").unwrap();
        assert!(ymmr.write.mean_us() > 20_000.0);
        for name in PRESETS {
            assert_eq!(parse_model(name).unwrap().to_string(), name);
        }
    }

    #[test]
    fn kinds_are_named_or_all() {
        let m = parse_model("all=constant(100), write=exponential(2000)").unwrap();
        assert_eq!(m.write, Dist::Exponential { mean_us: 2000.0 });
        assert_eq!(m.ack, Dist::Constant { us: 100.0 });
        let either_order = parse_model("write=exponential(2000),all=constant(100)").unwrap();
        assert_eq!(
            either_order, m,
            "`all` fills the kinds not named, wherever it stands"
        );
        let round_trip = parse_model(&m.to_string()).unwrap();
        assert_eq!(round_trip, m);
        let one = parse_model("uniform(10,20)").unwrap();
        assert_eq!(
            one.other,
            Dist::Uniform {
                low_us: 10.0,
                high_us: 20.0
            }
        );
        let e = parse_model("write=constant(1)").unwrap_err();
        assert!(e.contains("no distribution for `ack`"), "{e}");
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for (spec, says) in [
            ("", "a name expected"),
            ("linkedin", "neither a preset"),
            ("constant()", "a number"),
            ("constant(-1)", "at least 0"),
            ("constant(NaN)", "a number"),
            ("constant(1e999)", "finite"),
            ("constant(inf)", "a number"),
            ("uniform(5,1)", "low exceeds high"),
            ("exponential(0)", "more than 0"),
            ("pareto(100,0)", "more than 0"),
            ("pareto(0,2)", "more than 0"),
            ("mix()", "a number"),
            ("mix(0*constant(1))", "more than 0"),
            (
                "mix(1*mix(1*mix(1*mix(1*mix(1*constant(1))))))",
                "nest at most",
            ),
            ("constant(1) junk", "nothing more"),
            ("wat=constant(1)", "not a message kind"),
            ("write=constant(1),", "a name expected"),
        ] {
            let e = parse_model(spec).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
        let many = format!(
            "mix({})",
            vec!["1*constant(1)"; MIX_PARTS_MAX + 1].join(",")
        );
        assert!(parse_model(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn each_node_draws_its_own_stream_the_same_each_time() {
        let m = parse_model("exponential(1000)").unwrap();
        let draws = |node| {
            let d = ModelDelays::new(m.clone(), 7, node, 1_000);
            (0..5)
                .map(|_| d.delay(MessageKind::Write))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(0), draws(0));
        assert_ne!(draws(0), draws(1));
    }

    #[test]
    fn a_draw_is_a_whole_number_of_ticks_and_at_least_one() {
        let ticks = |spec: &str, tick_us| {
            let d = ModelDelays::new(parse_model(spec).unwrap(), 1, 0, tick_us);
            (d.ticks(MessageKind::Ack), d.delay(MessageKind::Ack))
        };
        assert_eq!(ticks("constant(0)", 1_000), (1, Duration::ZERO));
        assert_eq!(ticks("constant(235)", 1_000), (1, Duration::ZERO));
        assert_eq!(ticks("constant(235)", 50), (5, Duration::from_millis(4)));
        assert_eq!(
            ticks("constant(3000)", 1_000),
            (3, Duration::from_millis(2))
        );
        assert_eq!(
            ticks("constant(3001)", 1_000),
            (4, Duration::from_millis(3))
        );
    }
}
