//! `dynamo experiment NAME`: published results of the field, measured here with one command.
//!
//! Each experiment runs a few fixed configurations (not the nightly's random draws) over a range of
//! seeds, checks every history, sums the checker's figures over the seeds and prints them beside
//! the published figure, with what differs between their setup and ours (EXPERIMENTS.md has the
//! commands, the outputs and the discussion):
//!
//! - `riak`: Jepsen's "Call me maybe: Riak" (Kingsbury, 2013): clients add elements to one set
//!   while a partition cuts five nodes 2 | 3; the share of acknowledged adds lost, with
//!   last-write-wins (sloppy and strict quorum) and with siblings merged by set union.
//! - `versions`: Dynamo (DeCandia et al., SOSP 2007, §6.3): how many versions a read of a shopping
//!   cart returns.
//! - `pbs`: Probabilistically Bounded Staleness (Bailis et al., VLDB 2012): t-visibility, P(fresh
//!   | t), for N = 3 with R = W = 1, R = 1 W = 2 and R = W = 2.

use crate::nightly::parse_seeds;
use clap::{Args, ValueEnum};
use dynamo_checker::stats::{Stats, T_VISIBILITY_EDGES_US};
use dynamo_checker::{check, parse_reader};
use dynamo_node::config::Bug;
use dynamo_workloads::latency::preset;
use dynamo_workloads::plan::{
    FixedPartition, KeyDist, NemesisKind, NodeOptions, Plan, SimConfig, Workload,
};
use dynamo_workloads::run;
use std::fmt::Write as _;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Which experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Experiment {
    /// Jepsen's Riak set test (2013): acknowledged adds lost under a partition.
    Riak,
    /// Dynamo's versions per read (SOSP 2007, §6.3).
    Versions,
    /// PBS t-visibility (VLDB 2012) for N = 3 and three quorum settings.
    Pbs,
}

/// Options of `dynamo experiment`.
#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment.
    #[arg(value_enum)]
    experiment: Experiment,
    /// The seeds of every configuration: A..B (B excluded), A..=B, or one seed.
    #[arg(long, value_parser = parse_seeds, default_value = "0..10")]
    seeds: Range<u64>,
    /// Simulations at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Only these rows of the experiment's table, numbered from 1 (e.g. `--rows 1,3`).
    #[arg(long, value_delimiter = ',')]
    rows: Vec<usize>,
}

/// One configuration of an experiment: a row of its table.
struct Setup {
    /// The row's name.
    label: &'static str,
    /// The published figure for this row, as the source gives it.
    published: &'static str,
    config: SimConfig,
}

/// Five nodes, a partition n1 n2 | n3 n4 n5 from 1 s to 6 s, five clients adding to one set, each
/// bound to its own node: the shape of Jepsen's Riak runs (their partition lasted longer).
fn riak(bug: Option<Bug>, sloppy_quorum: bool) -> SimConfig {
    SimConfig {
        nodes: 5,
        clients: 5,
        ops: 2_000,
        keys: 1,
        workload: Workload::Cart,
        adds_only: true,
        pin_clients: true,
        nemesis: Vec::new(),
        fixed_partitions: vec![FixedPartition {
            groups: vec![vec![0, 1], vec![2, 3, 4]],
            from_ms: 1_000,
            until_ms: 6_000,
        }],
        bug,
        node: NodeOptions {
            sloppy_quorum,
            ..NodeOptions::default()
        },
        ..SimConfig::default()
    }
}

/// Model µs per tick in the PBS rows: LinkedIn's network latencies are a quarter of a millisecond,
/// so one tick stands for 50 µs of the model (a time dilation of 20, `SimConfig::tick_us`).
const PBS_TICK_US: u64 = 50;
/// Operations per seed of a PBS row.
const PBS_OPS: usize = 20_000;
/// Plain reads among a PBS row's operations: PBS follows each write with reads, and every read
/// after the first write of its key is one read/write pair, so a read-heavy mix gives the curve
/// most of its samples per simulated operation.
const PBS_READ_PERCENT: u32 = 80;

/// `nodes` nodes, N = 3 with quorums `r` and `w` under a PBS latency preset, no fault, 32 clients
/// reading and
/// writing 8 registers (80% reads) with up to 2 ms (model time) between operations, so that reads start from zero
/// to a few milliseconds after a write of their key: staleness comes only from replication racing
/// the reads. With many nodes most coordinators hold no replica of the key, as in PBS's model
/// (Voldemort's clients route requests themselves): the write is acknowledged only after a
/// round trip, while it travels to the other replicas. A coordinator that holds a replica
/// acknowledges W = 1 at once, before any other replica could have the write.
fn pbs(nodes: usize, r: usize, w: usize, latency: &str) -> SimConfig {
    SimConfig {
        nodes,
        clients: 32,
        ops: PBS_OPS,
        keys: 8,
        // Ticks: 2 ms of the model.
        think_ms_max: 2_000 / PBS_TICK_US,
        key_dist: KeyDist::Uniform,
        workload: Workload::Register,
        nemesis: Vec::new(),
        n: 3,
        r,
        w,
        latency: Some(preset(latency).expect("a PBS preset")),
        read_percent: Some(PBS_READ_PERCENT),
        tick_us: PBS_TICK_US,
        // PBS's quorums are strict: a sloppy one takes stand-ins while the links come up, and
        // an R + W > N read may then miss a write (seed 2 did, 9 reads in its first 3 ms). Strict,
        // the checker also holds R + W > N to its promise (quorum-read-miss).
        node: NodeOptions {
            sloppy_quorum: false,
            ..NodeOptions::default()
        },
        ..SimConfig::default()
    }
}

/// 1,000 carts, each written by one client except 4 that everyone shares, every operation an add,
/// no fault: the paper's kind of shopping-cart traffic.
fn owned_carts() -> SimConfig {
    SimConfig {
        nemesis: Vec::new(),
        keys: 1_000,
        key_dist: KeyDist::Owners,
        adds_only: true,
        ops: 4_000,
        ..SimConfig::default()
    }
}

fn setups(experiment: Experiment) -> Vec<Setup> {
    match experiment {
        Experiment::Riak => vec![
            Setup {
                label: "last-write-wins, sloppy quorum",
                published: "1,478 of 1,964 acknowledged writes lost (75%)",
                config: riak(Some(Bug::Lww), true),
            },
            Setup {
                label: "last-write-wins, strict quorum",
                published: "124 of 985 lost (13%)",
                config: riak(Some(Bug::Lww), false),
            },
            Setup {
                label: "last-write-wins, sloppy quorum, no partition",
                published: "(no such run: how much of the loss the partition causes)",
                config: SimConfig {
                    fixed_partitions: Vec::new(),
                    ..riak(Some(Bug::Lww), true)
                },
            },
            Setup {
                label: "siblings, merged by set union",
                published: "0 of 5,944 lost",
                config: riak(None, true),
            },
        ],
        Experiment::Versions => vec![
            Setup {
                label: "shopping cart, 10,000 carts chosen uniformly, no fault",
                published: "1 version 99.94%, 2 versions 0.00057%, 3: 0.00047%, 4: 0.00009%",
                config: SimConfig {
                    nemesis: Vec::new(),
                    keys: 10_000,
                    key_dist: KeyDist::Uniform,
                    ops: 4_000,
                    ..SimConfig::default()
                },
            },
            Setup {
                label: "1,000 carts, each with one owner but 4 shared (2% of operations), every operation an add, no fault",
                published: "(the same production figure)",
                config: owned_carts(),
            },
            Setup {
                label: "the same owned carts, with partitions and crashes (the paper names failures as a cause)",
                published: "(the same production figure)",
                config: SimConfig {
                    nemesis: NemesisKind::parse_list("partition,crash").expect("known kinds"),
                    ..owned_carts()
                },
            },
            Setup {
                label: "shopping cart, 1,000 carts chosen by Zipf (s = 1), no fault",
                published: "(the same production figure)",
                config: SimConfig {
                    nemesis: Vec::new(),
                    keys: 1_000,
                    ops: 4_000,
                    ..SimConfig::default()
                },
            },
        ],
        Experiment::Pbs => vec![
            Setup {
                label: "LinkedIn SSD latencies (lnkd-ssd), N=3 R=1 W=1, 15 nodes (most coordinators hold no replica, as in PBS)",
                published: "97.4% fresh at t=0, >99.999% by about 5 ms",
                config: pbs(15, 1, 1, "lnkd-ssd"),
            },
            Setup {
                label: "LinkedIn SSD latencies (lnkd-ssd), N=3 R=1 W=1, 5 nodes (3 coordinators in 5 hold a replica)",
                published: "(PBS models no coordinator that holds a replica)",
                config: pbs(5, 1, 1, "lnkd-ssd"),
            },
            Setup {
                label: "LinkedIn SSD latencies (lnkd-ssd), N=3 R=1 W=2, 15 nodes",
                published: "(no figure quoted here)",
                config: pbs(15, 1, 2, "lnkd-ssd"),
            },
            Setup {
                label: "LinkedIn SSD latencies (lnkd-ssd), N=3 R=2 W=2, 15 nodes",
                published: "100% at t=0 (R+W>N)",
                config: pbs(15, 2, 2, "lnkd-ssd"),
            },
            Setup {
                label: "LinkedIn disk latencies (lnkd-disk), N=3 R=1 W=1, 15 nodes",
                published: "(slower writes than lnkd-ssd: stale for longer)",
                config: pbs(15, 1, 1, "lnkd-disk"),
            },
        ],
    }
}

/// The checker's figures of one seed of `config`.
/// One seed's figures, and its anomaly types when the checker found it invalid.
struct SeedOutcome {
    stats: Stats,
    invalid: Option<String>,
}

fn one(config: &SimConfig, seed: u64) -> Result<SeedOutcome, String> {
    let plan = Plan::generate(SimConfig {
        seed,
        ..config.clone()
    })?;
    let output = run(&plan)?;
    let parsed = parse_reader(&output.history[..]).map_err(|e| format!("seed {seed}: {e}"))?;
    let results = check(&parsed.history);
    // The verdict travels with the figures: a row of a correct node must stay valid.
    let invalid = (results.valid == dynamo_checker::Validity::False).then(|| {
        let types: Vec<&str> = results.anomaly_types().iter().map(|k| k.as_str()).collect();
        types.join(", ")
    });
    Ok(SeedOutcome {
        stats: results.stats,
        invalid,
    })
}

/// The seeds whose history the checker found invalid, with the anomaly types, for the row's line.
fn verdicts(outcomes: &[SeedOutcome], seeds: &Range<u64>) -> Option<String> {
    let invalid: Vec<String> = seeds
        .clone()
        .zip(outcomes)
        .filter_map(|(seed, o)| Some(format!("seed {seed} INVALID: {}", o.invalid.as_ref()?)))
        .collect();
    (!invalid.is_empty()).then(|| {
        format!(
            "{} of {} seeds invalid; first: {}",
            invalid.len(),
            outcomes.len(),
            invalid[0]
        )
    })
}

/// Every seed of `config` on `jobs` threads, the figures in seed order.
fn all(config: &SimConfig, seeds: &Range<u64>, jobs: usize) -> Result<Vec<SeedOutcome>, String> {
    let seeds: Vec<u64> = seeds.clone().collect();
    let next = AtomicUsize::new(0);
    let out = Mutex::new((0..seeds.len()).map(|_| None).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let stats = one(config, seed);
                    out.lock().expect("no panic holds it")[i] = Some(stats);
                }
            });
        }
    });
    out.into_inner()
        .expect("no panic holds it")
        .into_iter()
        .map(|s| s.expect("every seed ran"))
        .collect()
}

/// Our figure for one row, summed over its seeds.
fn ours(experiment: Experiment, stats: &[Stats]) -> String {
    match experiment {
        Experiment::Riak => {
            let acked: usize = stats.iter().map(|s| s.writes.acknowledged).sum();
            let lost: usize = stats.iter().map(|s| s.writes.lost).sum();
            let refused: usize = stats.iter().map(|s| s.writes.failed).sum();
            let unknown: usize = stats.iter().map(|s| s.writes.indeterminate).sum();
            format!(
                "{lost} of {acked} acknowledged lost ({:.1}%); {refused} refused, {unknown} indeterminate",
                percent(lost, acked)
            )
        }
        Experiment::Versions => {
            let count = |label: &str| -> usize {
                stats
                    .iter()
                    .map(|s| s.siblings_per_read.counts.get(label).copied().unwrap_or(0))
                    .sum()
            };
            let reads: usize = stats.iter().map(|s| s.siblings_per_read.reads).sum();
            let mut line = format!(
                "{reads} reads: 1 version {:.2}%",
                percent(count("1"), reads)
            );
            for label in ["2", "3", "4+"] {
                let _ = write!(line, ", {label}: {:.5}%", percent(count(label), reads));
            }
            line
        }
        Experiment::Pbs => {
            let mut pairs = vec![0usize; T_VISIBILITY_EDGES_US.len()];
            let mut fresh = vec![0usize; T_VISIBILITY_EDGES_US.len()];
            for s in stats {
                for (i, bin) in s.t_visibility.iter().flat_map(|v| &v.bins).enumerate() {
                    pairs[i] += bin.pairs;
                    fresh[i] += bin.fresh;
                }
            }
            let total: usize = pairs.iter().sum();
            let mut line = format!("{total} read/write pairs; P(fresh) for t in ms:");
            let ms = |us: u64| us as f64 / 1_000.0;
            for (i, &from_us) in T_VISIBILITY_EDGES_US.iter().enumerate() {
                // The figure stops at 10 ms: past it every row is fresh.
                if pairs[i] == 0 || from_us >= 10_000 {
                    continue;
                }
                let until_us = T_VISIBILITY_EDGES_US
                    .get(i + 1)
                    .copied()
                    .unwrap_or(u64::MAX);
                let _ = write!(
                    line,
                    "\n             [{}, {}): {:.3}% of {}",
                    ms(from_us),
                    ms(until_us),
                    percent(fresh[i], pairs[i]),
                    pairs[i]
                );
            }
            line
        }
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Runs `dynamo experiment`.
pub fn experiment(args: ExperimentArgs) -> Result<ExitCode, String> {
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let setups = setups(args.experiment);
    if let Some(bad) = args.rows.iter().find(|&&r| r == 0 || r > setups.len()) {
        return Err(format!(
            "--rows {bad}: the {:?} experiment has rows 1..={}",
            args.experiment,
            setups.len()
        ));
    }
    let started = Instant::now();
    outln!(
        "dynamo experiment {:?}: seeds {}..{} per row, {jobs} jobs",
        args.experiment,
        args.seeds.start,
        args.seeds.end
    );
    for (i, setup) in setups.into_iter().enumerate() {
        if !args.rows.is_empty() && !args.rows.contains(&(i + 1)) {
            continue;
        }
        let row = Instant::now();
        let outcomes = all(&setup.config, &args.seeds, jobs)?;
        let stats: Vec<Stats> = outcomes.iter().map(|o| o.stats.clone()).collect();
        outln!("{}. {}", i + 1, setup.label);
        outln!("  published: {}", setup.published);
        outln!(
            "  ours:      {} ({:.0} s)",
            ours(args.experiment, &stats),
            row.elapsed().as_secs_f64()
        );
        if let Some(line) = verdicts(&outcomes, &args.seeds) {
            outln!("  checker:   {line}");
        }
    }
    outln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_is_a_valid_plan() {
        for experiment in [Experiment::Riak, Experiment::Versions, Experiment::Pbs] {
            for setup in setups(experiment) {
                setup
                    .config
                    .validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", setup.label));
            }
        }
    }

    #[test]
    fn the_riak_rows_tell_lww_from_siblings() {
        let mut lww = riak(Some(Bug::Lww), true);
        let mut union = riak(None, true);
        for c in [&mut lww, &mut union] {
            c.ops = 300;
            c.fixed_partitions[0].until_ms = 2_000;
        }
        let lost = |c: &SimConfig| one(c, 1).unwrap().stats.writes.lost;
        assert!(lost(&lww) > 0, "last-write-wins loses adds");
        assert_eq!(lost(&union), 0, "siblings merged by union lose none");
        let line = ours(Experiment::Riak, &[one(&lww, 1).unwrap().stats]);
        assert!(line.contains("acknowledged lost"), "{line}");
        let verdict = verdicts(&[one(&union, 1).unwrap(), one(&lww, 1).unwrap()], &(0..2));
        let verdict = verdict.expect("last-write-wins is invalid");
        assert!(
            verdict.starts_with("1 of 2 seeds invalid; first: seed 1 INVALID: "),
            "{verdict}"
        );
        assert!(verdict.contains("lost-write"), "{verdict}");
    }
}
