//! `dynamo sim` and `dynamo replay`: run the node in the simulator and write the run's files.

use clap::{Args, Parser};
use dynamo_node::config::{Bug, FsyncPolicy};
use dynamo_workloads::plan::{FixedPartition, KeyDist, NemesisKind, Plan, SimConfig, Workload};
use dynamo_workloads::{RunOutput, run};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `dynamo sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The seed; a random one (printed) if omitted.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Number of nodes (`dynamo live` also takes the addresses of a running cluster's nodes,
    /// comma-separated).
    #[arg(long, default_value = "5")]
    pub(crate) nodes: NodesArg,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Client operations to run.
    #[arg(long, default_value_t = 2_000)]
    ops: usize,
    /// Number of keys.
    #[arg(long, default_value_t = 20)]
    keys: usize,
    /// Key choice: zipf (a few hot keys), uniform, or owners (Dynamo's carts: each key but a few
    /// shared hot ones belongs to one client, which writes it almost alone).
    #[arg(long, default_value = "zipf")]
    key_dist: String,
    /// The Zipf skew s, with `--key-dist zipf`: key i (from 0) is chosen with weight 1 / (i+1)^s
    /// (1 is classic Zipf; larger, hotter hot keys; near 0, nearly uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf_exponent: f64,
    /// The workload: cart, register, or set (Jepsen's set test: a cart whose every operation is an
    /// add; with `--keys 1`, one set).
    #[arg(long, default_value = "cart")]
    workload: WorkloadArg,
    // Faults to mix: the help is made from `NemesisKind::ALL` (see `nemesis_help`), so that it
    // names every kind there is.
    #[arg(long, default_value = "all", help = nemesis_help(&NemesisKind::ALL))]
    nemesis: String,
    #[command(flatten)]
    quorum: crate::kv::QuorumArgs,
    /// The nodes' fsync policy: always, interval[:MS], none.
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,
    /// A deliberate bug for every node (lww, naive-clock, early-ack, no-fsync, reuse-actor,
    /// repair-drops-siblings, no-repair, keep-actor-on-recovery).
    #[arg(long)]
    bug: Option<Bug>,
    /// Mean number of client operations between the starts of two fault windows (the density of
    /// faults; every run with a nemesis has at least one).
    #[arg(long, default_value_t = dynamo_workloads::plan::FAULT_GAP_OPS_DEFAULT)]
    fault_gap_ops: u64,
    /// Mean duration of a fault window, simulated ms.
    #[arg(long, default_value_t = 2_000)]
    fault_ms: u64,
    /// The share of fault windows, in percent, that open together with an earlier one.
    #[arg(long, default_value_t = dynamo_workloads::plan::FAULT_OVERLAP_PERCENT_DEFAULT)]
    fault_overlap: u32,
    /// Longest pause of a client between two operations, simulated ms.
    #[arg(long, default_value_t = 20)]
    think_ms: u64,
    /// Simulated ms the healed cluster is left alone before the final reads, at most: the wait
    /// ends sooner once every replica agrees and nothing is left to move.
    #[arg(long, default_value_t = 5_000)]
    quiesce_ms: u64,
    /// Wait the whole --quiesce-ms even when the cluster is at rest sooner.
    #[arg(long)]
    full_quiesce: bool,
    /// Client c sends every operation to node c mod nodes (as Jepsen binds each client to one node).
    #[arg(long)]
    pin_clients: bool,
    #[command(flatten)]
    mechanisms: crate::kv::MechanismArgs,
    /// After the heal, poll the replicas until they agree and report how long that took.
    #[arg(long)]
    measure_convergence: bool,
    /// A partition at a fixed simulated time, on top of the drawn faults (with `--nemesis none`,
    /// the only fault), e.g. `n1,n2|n3,n4,n5@2s..11s`; repeatable.
    #[arg(long = "partition", value_name = "SIDES@FROM..UNTIL")]
    partitions: Vec<String>,
    /// Peer messages' latency, in µs, drawn per message kind: a preset (lnkd-ssd, lnkd-disk,
    /// ymmr: the PBS paper's fits), one distribution for all (constant(US), uniform(LO,HI),
    /// exponential(MEAN), lognormal(MEDIAN,SIGMA), pareto(XM,ALPHA), mix(W*DIST,...)), or
    /// KIND=DIST,... for write, ack, read, response, other (all=DIST: the kinds not named).
    /// Default: turmoil's 1 to 5 ms.
    #[arg(long, value_name = "MODEL", value_parser = dynamo_workloads::latency::parse_model)]
    latency: Option<dynamo_workloads::latency::LatencyModel>,
    /// Register workload: the percentage of plain reads; the rest are updates, blind puts and
    /// deletes, 3 : 2 : 1 (default: reads, updates, blind puts, deletes 3 : 3 : 2 : 1).
    #[arg(long, value_name = "PERCENT")]
    read_percent: Option<u32>,
    /// With --latency and no fault: model µs per 1 ms tick (10 to 1000). Below 1000 the model's
    /// delays stretch by 1000/tick-us so that sub-millisecond ones stay apart, and the history's
    /// times are model time; think times and timeouts still count ticks as ms.
    #[arg(long, default_value_t = dynamo_workloads::plan::TICK_US_DEFAULT)]
    tick_us: u64,
    /// Run the seed twice and fail unless both histories are byte-identical.
    #[arg(long)]
    pub(crate) check_determinism: bool,
    /// Where to write the run's files (default store/<workload>-<seed>/, and store/latest).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// `--workload`: the plan's workloads, and `set`, the cart with adds only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadArg {
    Cart,
    Register,
    Set,
}

impl WorkloadArg {
    /// The plan's workload.
    pub fn workload(self) -> Workload {
        match self {
            WorkloadArg::Cart | WorkloadArg::Set => Workload::Cart,
            WorkloadArg::Register => Workload::Register,
        }
    }
}

/// `--nodes`: how many nodes, or (for `dynamo live` on a running cluster) their addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodesArg {
    /// This many nodes, started by the harness.
    Count(usize),
    /// The client addresses of a running cluster's nodes, in order (n1, n2, ...).
    Addrs(Vec<String>),
}

impl NodesArg {
    /// How many nodes.
    pub fn count(&self) -> usize {
        match self {
            NodesArg::Count(n) => *n,
            NodesArg::Addrs(addrs) => addrs.len(),
        }
    }
}

impl std::str::FromStr for NodesArg {
    type Err = String;
    fn from_str(s: &str) -> Result<NodesArg, String> {
        if let Ok(count) = s.trim().parse() {
            return Ok(NodesArg::Count(count));
        }
        let addrs: Vec<String> = s
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.contains(':')) {
            return Err(format!(
                "--nodes {s:?} is neither a count nor host:port addresses"
            ));
        }
        Ok(NodesArg::Addrs(addrs))
    }
}

/// Options of `dynamo replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A plan.json written by `dynamo sim` (or shrunk).
    plan: PathBuf,
    /// Where to write the run's files (default: the plan's directory + /replay).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl SimArgs {
    /// `--nemesis` as given.
    pub(crate) fn nemesis_arg(&self) -> &str {
        &self.nemesis
    }

    /// The configuration these options give with `seed`.
    pub(crate) fn config(&self, seed: u64) -> Result<SimConfig, String> {
        let key_dist = match self.key_dist.as_str() {
            "uniform" => KeyDist::Uniform,
            "owners" => KeyDist::Owners,
            "zipf" => KeyDist::Zipf {
                exponent: self.zipf_exponent,
            },
            other => {
                return Err(format!(
                    "unknown --key-dist {other:?}: zipf, uniform or owners"
                ));
            }
        };
        let e = self.zipf_exponent;
        if !(e.is_finite() && e > 0.0 && e <= ZIPF_EXPONENT_MAX) {
            return Err(format!(
                "--zipf-exponent {e} is not above 0 and at most {ZIPF_EXPONENT_MAX}"
            ));
        }
        if self.zipf_exponent != 1.0 && !matches!(key_dist, KeyDist::Zipf { .. }) {
            return Err("--zipf-exponent applies to --key-dist zipf only".to_owned());
        }
        let config = SimConfig {
            seed,
            nodes: self.nodes.count(),
            clients: self.clients,
            ops: self.ops,
            keys: self.keys,
            key_dist,
            workload: self.workload.workload(),
            adds_only: self.workload == WorkloadArg::Set,
            pin_clients: self.pin_clients,
            nemesis: NemesisKind::parse_list(&self.nemesis)?,
            n: self.quorum.n,
            r: self.quorum.r,
            w: self.quorum.w,
            fsync: self.fsync,
            bug: self.bug,
            quiesce_ms: self.quiesce_ms,
            quiesce_until_rest: !self.full_quiesce,
            think_ms_max: self.think_ms,
            fault_gap_ops: self.fault_gap_ops,
            fault_duration_ms: self.fault_ms,
            fault_overlap_percent: self.fault_overlap,
            node: self.mechanisms.options(),
            measure_convergence: self.measure_convergence,
            fixed_partitions: self
                .partitions
                .iter()
                .map(|spec| FixedPartition::parse(spec, crate::duration::parse_duration))
                .collect::<Result<_, _>>()?,
            latency: self.latency.clone(),
            read_percent: self.read_percent,
            tick_us: self.tick_us,
            ..SimConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

pub(crate) fn random_seed() -> u64 {
    // The one place a seed is not given: the CLI picks it from the OS and prints it.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() % 1_000_000_000
}

/// `dynamo sim`.
pub fn sim(args: SimArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    if let NodesArg::Addrs(_) = args.nodes {
        return Err("dynamo sim runs its own nodes: --nodes takes a count".into());
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let config = args.config(seed)?;
    let plan = Plan::generate(config)?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("store").join(format!("{}-{seed}", plan.config.workload)),
    };
    eprintln!("dynamo sim: seed {seed}, writing {}", out.display());
    let (output, wall_s) = timed_run(&plan)?;
    if args.check_determinism {
        let (again, _) = timed_run(&plan)?;
        if again.history != output.history {
            let line = first_difference(&output.history, &again.history);
            eprintln!(
                "dynamo sim: seed {seed} is NOT deterministic: histories differ at line {line}"
            );
            write_run(&out, &plan, &output)?;
            std::fs::write(out.join("history.second.jsonl"), &again.history)
                .map_err(|e| format!("cannot write: {e}"))?;
            return Ok(ExitCode::from(2));
        }
        eprintln!("dynamo sim: seed {seed} is deterministic (two byte-identical histories)");
    }
    write_run(&out, &plan, &output)?;
    if args.out.is_none() {
        point_latest(&out);
    }
    print_summary(&plan, &output, wall_s);
    verdict(&out)
}

/// Checks the run in `dir`, writes its report, prints the summary, and returns the verdict as the
/// exit status.
pub(crate) fn verdict(dir: &Path) -> Result<ExitCode, String> {
    let results = crate::check::check_and_write(dir)?;
    out!("{}", dynamo_checker::summary(&results));
    // The verdict stands without the page: a report that cannot be written is only a warning.
    if let Err(e) = crate::report::write(dir) {
        eprintln!("dynamo: warning: no report: {e}");
    }
    outln!("files: {}", dir.display());
    Ok(ExitCode::from(results.exit_code() as u8))
}

/// The help of `--nemesis` where `all` means the kinds of `all` (`NemesisKind::ALL` for `dynamo
/// sim`, `NemesisKind::LIVE` for `dynamo live`): made from the lists, so that a new kind cannot be
/// left out of it (`membership` once was).
pub(crate) fn nemesis_help(all: &[NemesisKind]) -> String {
    let names = |kinds: &[NemesisKind]| {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        names.join(", ")
    };
    let mut known = NemesisKind::ALL.to_vec();
    known.extend(all.iter().filter(|k| !NemesisKind::ALL.contains(k)));
    let all_is = if all == NemesisKind::ALL {
        String::new()
    } else {
        format!(" (= {})", names(all))
    };
    format!(
        "Faults to mix: a comma-separated list of {}; all{all_is}; none. Kinds these settings cannot \
         have are left out (wipes and disk damage need W >= 2, membership more nodes than N)",
        names(&known)
    )
}

/// `--nemesis` for a list of kinds: `none`, `all`, or the names.
fn nemesis_arg(kinds: &[NemesisKind]) -> String {
    if kinds.is_empty() {
        "none".to_owned()
    } else if kinds == NemesisKind::ALL {
        "all".to_owned()
    } else {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        names.join(",")
    }
}

/// The largest `--zipf-exponent`: past it nearly every operation goes to key 0 anyway.
pub const ZIPF_EXPONENT_MAX: f64 = 10.0;

/// The `dynamo sim` options that give `c` (without the program and subcommand), leaving out those
/// equal to [`SimConfig::default`] unless `full`. `None` when the command line cannot express `c`.
pub fn sim_args(c: &SimConfig, full: bool) -> Option<Vec<String>> {
    let d = SimConfig::default();
    let mut args = vec!["--seed".to_owned(), c.seed.to_string()];
    let key_dist = |k: &KeyDist| match k {
        KeyDist::Uniform => "uniform".to_owned(),
        KeyDist::Zipf { .. } => "zipf".to_owned(),
        KeyDist::Owners => "owners".to_owned(),
    };
    let exponent = |k: &KeyDist| match k {
        KeyDist::Zipf { exponent } => *exponent,
        KeyDist::Uniform | KeyDist::Owners => 1.0,
    };
    let workload = |c: &SimConfig| match c.adds_only {
        true => "set".to_owned(),
        false => c.workload.to_string(),
    };
    // Each option as read from a configuration; "" for one not given.
    type Read<'a> = &'a dyn Fn(&SimConfig) -> String;
    let options: [(&str, Read); 22] = [
        ("nodes", &|c| c.nodes.to_string()),
        ("clients", &|c| c.clients.to_string()),
        ("ops", &|c| c.ops.to_string()),
        ("keys", &|c| c.keys.to_string()),
        ("key-dist", &|c| key_dist(&c.key_dist)),
        ("zipf-exponent", &|c| exponent(&c.key_dist).to_string()),
        ("workload", &workload),
        ("nemesis", &|c| nemesis_arg(&c.nemesis)),
        ("n", &|c| c.n.to_string()),
        ("r", &|c| c.r.to_string()),
        ("w", &|c| c.w.to_string()),
        ("fsync", &|c| c.fsync.to_string()),
        ("bug", &|c| c.bug.map(|b| b.to_string()).unwrap_or_default()),
        ("fault-gap-ops", &|c| c.fault_gap_ops.to_string()),
        ("fault-ms", &|c| c.fault_duration_ms.to_string()),
        ("fault-overlap", &|c| c.fault_overlap_percent.to_string()),
        ("think-ms", &|c| c.think_ms_max.to_string()),
        ("quiesce-ms", &|c| c.quiesce_ms.to_string()),
        ("anti-entropy-ms", &|c| {
            c.node.anti_entropy_interval_ms.to_string()
        }),
        ("tick-us", &|c| c.tick_us.to_string()),
        ("read-percent", &|c| {
            c.read_percent.map(|p| p.to_string()).unwrap_or_default()
        }),
        ("latency", &|c| {
            c.latency
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default()
        }),
    ];
    for (name, get) in options {
        let (value, default) = (get(c), get(&d));
        if !value.is_empty() && (full || value != default) {
            args.push(format!("--{name}"));
            args.push(value);
        }
    }
    for (flag, on) in [
        ("--strict-quorum", !c.node.sloppy_quorum),
        ("--no-read-repair", !c.node.read_repair),
        ("--no-hinted-handoff", !c.node.hinted_handoff),
        ("--no-anti-entropy", !c.node.anti_entropy),
        ("--measure-convergence", c.measure_convergence),
        ("--full-quiesce", !c.quiesce_until_rest),
        ("--pin-clients", c.pin_clients),
    ] {
        if on {
            args.push(flag.to_owned());
        }
    }
    for p in &c.fixed_partitions {
        args.push("--partition".to_owned());
        args.push(p.spec());
    }
    Some(args)
}

/// `dynamo sim` alone, to parse a command line back.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct SimLine {
    #[command(flatten)]
    args: SimArgs,
}

/// The one-line `dynamo sim ...` command whose plan is exactly `plan`, if there is one: the options
/// are parsed back through the real command line and the plan regenerated and compared, so the line
/// is never a guess. `None` for a shrunk or edited plan (replay it instead).
pub fn repro_command(plan: &Plan) -> Option<String> {
    for full in [false, true] {
        let args = sim_args(&plan.config, full)?;
        let Ok(line) =
            SimLine::try_parse_from(std::iter::once("sim".to_owned()).chain(args.clone()))
        else {
            continue;
        };
        let Ok(config) = line.args.config(plan.config.seed) else {
            continue;
        };
        if config == plan.config && Plan::generate(config).is_ok_and(|p| p == *plan) {
            let words: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
            return Some(format!("dynamo sim {}", words.join(" ")));
        }
    }
    None
}

/// `s` as one shell word: as it is when it is plain, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `dynamo replay`.
pub fn replay(args: ReplayArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    let text = std::fs::read_to_string(&args.plan)
        .map_err(|e| format!("cannot read {}: {e}", args.plan.display()))?;
    let plan = Plan::from_json(&text).map_err(|e| format!("{}: {e}", args.plan.display()))?;
    let out = match args.out {
        Some(dir) => dir,
        None => args.plan.parent().unwrap_or(Path::new(".")).join("replay"),
    };
    let (output, wall_s) = timed_run(&plan)?;
    write_run(&out, &plan, &output)?;
    print_summary(&plan, &output, wall_s);
    verdict(&out)
}

fn timed_run(plan: &Plan) -> Result<(RunOutput, f64), String> {
    let start = Instant::now();
    let output = run(plan)?;
    Ok((output, start.elapsed().as_secs_f64()))
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    a[..at].iter().filter(|&&c| c == b'\n').count() + 1
}

/// Writes history.jsonl and plan.json into `dir`.
pub fn write_run(dir: &Path, plan: &Plan, output: &RunOutput) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let plan_json = serde_json::to_string_pretty(plan).expect("plan serialises");
    std::fs::write(dir.join("plan.json"), plan_json + "\n")
        .and_then(|()| std::fs::write(dir.join("history.jsonl"), &output.history))
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))
}

pub(crate) fn point_latest(out: &Path) {
    let latest = Path::new("store").join("latest");
    let _ = std::fs::remove_file(&latest);
    if let Some(name) = out.file_name() {
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
}

fn print_summary(plan: &Plan, output: &RunOutput, wall_s: f64) {
    let s = output.summary;
    let rate = s.ops as f64 / wall_s.max(1e-9);
    outln!(
        "seed {}: {} ops ({} ok, {} fail, {} info), {} faults, {:.1} s simulated in {:.2} s wall, {:.0} simulated ops/s",
        plan.config.seed,
        s.ops,
        s.ok,
        s.fail,
        s.info,
        s.faults,
        s.sim_ms as f64 / 1000.0,
        wall_s,
        rate
    );
    let converged = match s.converged_after_heal_ms {
        Some(ms) => format!(
            ", replicas agreed {:.1} s after the heal",
            ms as f64 / 1000.0
        ),
        None if plan.config.measure_convergence => {
            ", replicas did not agree within the quiesce time".into()
        }
        None => String::new(),
    };
    outln!(
        "repair: {} hints delivered, {} pending; anti-entropy repaired {} keys; {} read repairs{converged}; ring version {}, {} copies outside preference lists",
        s.hints_delivered,
        s.hints_pending,
        s.ae_keys_repaired,
        s.read_repairs_sent,
        s.ring_version,
        s.non_owner_copies
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_partition_opens_when_it_says_and_is_in_the_repro_line() {
        let line = SimLine::try_parse_from([
            "sim",
            "--seed",
            "3",
            "--nemesis",
            "none",
            "--ops",
            "50",
            "--partition",
            "n1,n2|n3,n4,n5@2s..11s",
        ])
        .unwrap();
        let config = line.args.config(3).unwrap();
        let plan = Plan::generate(config).unwrap();
        let [w] = &plan.faults[..] else {
            panic!("one window: {:?}", plan.faults)
        };
        assert_eq!(w.start, dynamo_workloads::plan::Start::Ms(2_000));
        assert_eq!(w.duration_ms, 9_000);
        let repro = repro_command(&plan).expect("a command line gives it");
        assert!(
            repro.contains("--partition 'n1,n2|n3,n4,n5@2000ms..11000ms'"),
            "{repro}"
        );
        for bad in [
            "n1|n1@1s..2s",
            "n1|n7@1s..2s",
            "n1@1s..2s",
            "n1|n2@2s..1s",
            "x|n2@1s..2s",
        ] {
            let arg = format!("--partition={bad}");
            let line = SimLine::try_parse_from(["sim", arg.as_str()]).unwrap();
            assert!(line.args.config(1).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_latency_model_and_tick_are_in_the_repro_line() {
        for (spec, shown) in [
            ("lnkd-ssd", "--latency lnkd-ssd"),
            (
                "all=constant(100),write=mix(0.9*pareto(235,10),0.1*exponential(600))",
                "write=mix(0.9*pareto(235,10),0.1*exponential(600))",
            ),
        ] {
            let plan = Plan::generate(SimConfig {
                seed: 5,
                ops: 40,
                nemesis: Vec::new(),
                latency: Some(dynamo_workloads::latency::parse_model(spec).unwrap()),
                tick_us: 50,
                ..SimConfig::default()
            })
            .unwrap();
            let line = repro_command(&plan).expect("a command line gives it");
            assert!(line.contains(shown), "{line}");
            assert!(line.contains("--tick-us 50"), "{line}");
        }
        let reads = Plan::generate(SimConfig {
            seed: 5,
            ops: 40,
            workload: Workload::Register,
            read_percent: Some(80),
            ..SimConfig::default()
        })
        .unwrap();
        let line = repro_command(&reads).expect("a command line gives it");
        assert!(line.contains("--read-percent 80"), "{line}");
        let cart = ["sim", "--read-percent", "50"];
        let parsed = SimLine::try_parse_from(cart).unwrap();
        assert!(parsed.args.config(1).unwrap_err().contains("register"));
        let bad = ["sim", "--latency", "pareto(0,1)"];
        let e = SimLine::try_parse_from(bad).unwrap_err().to_string();
        assert!(e.contains("more than 0"), "{e}");
        let faults = ["sim", "--latency", "lnkd-ssd", "--tick-us", "50"];
        let parsed = SimLine::try_parse_from(faults).unwrap();
        assert!(parsed.args.config(1).unwrap_err().contains("no fault"));
    }

    #[test]
    fn a_zipf_exponent_is_in_the_repro_line_and_bounded() {
        let config = SimConfig {
            seed: 5,
            ops: 40,
            key_dist: KeyDist::Zipf { exponent: 1.5 },
            ..SimConfig::default()
        };
        let plan = Plan::generate(config).unwrap();
        let line = repro_command(&plan).expect("a command line gives it");
        assert!(line.contains("--zipf-exponent 1.5"), "{line}");
        let classic = Plan::generate(SimConfig {
            seed: 5,
            ops: 40,
            ..SimConfig::default()
        })
        .unwrap();
        let line = repro_command(&classic).unwrap();
        assert!(
            !line.contains("zipf-exponent"),
            "the default is left out: {line}"
        );
        for bad in ["0", "-1", "11", "nan", "inf"] {
            let arg = format!("--zipf-exponent={bad}");
            let args = ["sim", arg.as_str()];
            let parsed = SimLine::try_parse_from(args).unwrap();
            assert!(parsed.args.config(1).is_err(), "--zipf-exponent {bad}");
        }
        let uniform = ["sim", "--key-dist", "uniform", "--zipf-exponent", "2"];
        let parsed = SimLine::try_parse_from(uniform).unwrap();
        assert!(parsed.args.config(1).is_err());
    }

    #[test]
    fn the_set_workload_is_a_cart_of_adds_only_and_its_repro_line_says_set() {
        let line =
            SimLine::try_parse_from(["sim", "--workload", "set", "--keys", "1", "--ops", "60"])
                .unwrap();
        let config = line.args.config(4).unwrap();
        assert_eq!((config.workload, config.adds_only), (Workload::Cart, true));
        let plan = Plan::generate(config).unwrap();
        assert!(
            plan.ops
                .iter()
                .all(|op| op.kind == dynamo_workloads::plan::OpKind::Update && op.key == 0),
            "every operation an add to the one set"
        );
        let repro = repro_command(&plan).unwrap();
        assert!(repro.contains("--workload set"), "{repro}");
        let again = SimLine::try_parse_from(shell_words(&repro)).unwrap();
        assert_eq!(again.args.config(4).unwrap(), plan.config);
        // A cart plan keeps its mix, and a register plan cannot be adds only.
        let cart = Plan::generate(SimConfig {
            ops: 60,
            ..SimConfig::default()
        })
        .unwrap();
        assert!(
            cart.ops
                .iter()
                .any(|op| op.kind != dynamo_workloads::plan::OpKind::Update)
        );
        let register = SimConfig {
            workload: Workload::Register,
            adds_only: true,
            ..SimConfig::default()
        };
        assert!(register.validate().is_err());
    }

    #[test]
    fn pinned_clients_keep_to_one_node_and_change_nothing_else() {
        let config = SimConfig {
            ops: 200,
            ..SimConfig::default()
        };
        let free = Plan::generate(config.clone()).unwrap();
        let pinned = Plan::generate(SimConfig {
            pin_clients: true,
            ..config
        })
        .unwrap();
        let nodes = pinned.config.nodes as u32;
        assert!(pinned.ops.iter().all(|op| op.node == op.client % nodes));
        assert!(free.ops.iter().any(|op| op.node != op.client % nodes));
        for (a, b) in free.ops.iter().zip(&pinned.ops) {
            assert_eq!((a.client, a.key, a.kind), (b.client, b.key, b.kind));
        }
        assert_eq!(free.faults, pinned.faults);
        let repro = repro_command(&pinned).unwrap();
        assert!(repro.contains("--pin-clients"), "{repro}");
    }

    #[test]
    fn ending_the_quiesce_at_rest_gives_the_verdicts_of_the_whole_wait() {
        use dynamo_checker::{Validity, check, parse_reader};
        for seed in 0..3 {
            let config = SimConfig {
                seed,
                ops: 300,
                nemesis: vec![
                    NemesisKind::Crash,
                    NemesisKind::Partition,
                    NemesisKind::Wipe,
                ],
                fault_gap_ops: 60,
                fault_duration_ms: 400,
                ..SimConfig::default()
            };
            let verdict = |config: SimConfig| {
                let output = run(&Plan::generate(config).unwrap()).unwrap();
                let parsed = parse_reader(&output.history[..]).unwrap();
                let results = check(&parsed.history);
                let kinds: Vec<_> = results.anomalies.keys().copied().collect();
                (results.valid, kinds)
            };
            let early = verdict(config.clone());
            let full = verdict(SimConfig {
                quiesce_until_rest: false,
                ..config
            });
            assert_eq!(
                early, full,
                "seed {seed}: the quiesce's end changed the verdict"
            );
            assert_eq!(early.0, Validity::True, "seed {seed}");
        }
    }

    /// The words of a repro line (single-quoted words as the line quotes them).
    fn shell_words(line: &str) -> Vec<String> {
        let line = line.strip_prefix("dynamo ").unwrap_or(line);
        line.split(' ')
            .map(|w| w.trim_matches('\'').to_owned())
            .collect()
    }
}
