//! `dynamo`: the command line of the harness.
//!
//! `serve` runs a real node on TCP; `get`, `put` and `delete` are its clients, printing JSON on
//! stdout for scripts and human-readable errors on stderr (shared/DESIGN.md, "The command line").
//! Every command writes its stdout through `outln!` (module `out`), which survives a reader that
//! goes away; `println!` would panic there, so clippy is told to refuse it.

#![deny(clippy::print_stdout)]

// First: its macros are then in scope in every module below.
#[macro_use]
mod out;

mod bench;
mod check;
mod detection;
mod duration;
mod experiment;
mod kv;
mod live;
mod nightly;
mod report;
mod shrink;
mod sim;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dynamo",
    version,
    about = "A Dynamo key-value store and its consistency harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node on real TCP.
    Serve(kv::ServeArgs),
    /// Read a key: prints {"values":[...],"context":"..."}.
    Get(kv::GetArgs),
    /// Write a value: prints {"ok":true,...}.
    Put(kv::PutArgs),
    /// Delete the versions a context covers: prints {"ok":true,...}.
    Delete(kv::DeleteArgs),
    /// Print one node's raw stored state of a key (admin: no quorum, no repair).
    State(kv::StateArgs),
    /// Make a node leave the ring; its data moves to the new owners.
    Leave(kv::LeaveArgs),
    /// Remove a member gone for good from the ring (admin); the others take over its partitions.
    Forget(kv::ForgetArgs),
    /// Run the node in the simulator under a workload and faults; write the history.
    Sim(sim::SimArgs),
    /// Run a plan.json again.
    Replay(sim::ReplayArgs),
    /// Check a history: results.json to stdout and beside it; exit 0 valid, 1 anomaly, 2 unknown.
    Check(check::CheckArgs),
    /// (Re)write DIR/report.html from the run's history, plan and results.
    Report(report::ReportArgs),
    /// Run many seeds on parallel threads; summary.json, junit.xml and a folder per failing seed.
    Nightly(nightly::NightlyArgs),
    /// Detection power: the nightly's random seeds for the correct node and each deliberate bug; the
    /// share of seeds that catch each bug (and the correct node's false alarms, which must be none).
    Detection(detection::DetectionArgs),
    /// A published result measured here: riak (Jepsen 2013), versions (Dynamo 2007), pbs (PBS
    /// 2012); ours beside theirs.
    Experiment(experiment::ExperimentArgs),
    /// Combine the summary.json (and junit.xml) of nightly shards.
    Merge(nightly::MergeArgs),
    /// Search for a smaller plan that still fails with the same anomaly; writes DIR/shrunk/.
    Shrink(shrink::ShrinkArgs),
    /// Run the plan of `sim` against real `dynamo serve` processes with real faults; check it.
    Live(live::LiveArgs),
    /// Print a node's view of the ring and of its peers, as JSON.
    Status(status::StatusArgs),
    /// Load a real cluster with closed-loop clients; print ops/s and latency quantiles.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => kv::serve(args),
        Command::Get(args) => kv::get(args),
        Command::Put(args) => kv::put(args),
        Command::Delete(args) => kv::delete(args),
        Command::State(args) => kv::state(args),
        Command::Leave(args) => kv::leave(args),
        Command::Forget(args) => kv::forget(args),
        Command::Sim(args) => sim::sim(args),
        Command::Replay(args) => sim::replay(args),
        Command::Check(args) => check::check(args),
        Command::Report(args) => report::report(args),
        Command::Nightly(args) => nightly::nightly(args),
        Command::Detection(args) => detection::detection(args),
        Command::Experiment(args) => experiment::experiment(args),
        Command::Merge(args) => nightly::merge(args),
        Command::Shrink(args) => shrink::shrink(args),
        Command::Live(args) => live::live(args),
        Command::Status(args) => status::status(args),
        Command::Bench(args) => bench::bench(args),
    };
    out::flush();
    let code = match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("dynamo: {message}");
            ExitCode::from(2)
        }
    };
    // A reader that went away is no error (`dynamo sim | head -1`); an output cut short by a
    // failed write is, where the command would have succeeded.
    if out::failed() && code == ExitCode::SUCCESS {
        ExitCode::from(2)
    } else {
        code
    }
}

// A simulation allocates and frees small buffers (frames, sibling sets, history lines) at a high
// rate; glibc's malloc spent about 30% of a run's instructions (BENCHMARKS.md), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use dynamo_workloads::plan::NemesisKind;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The kinds a command's `--nemesis` help lists, as the help renders them.
    fn nemesis_kinds_in_help(command: &str) -> Vec<String> {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut(command)
            .expect("the command exists")
            .render_long_help()
            .to_string();
        let list = help
            .split_once("--nemesis <NEMESIS>")
            .and_then(|(_, rest)| rest.split_once("comma-separated list of "))
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(list, _)| list)
            .unwrap_or_else(|| panic!("no list of kinds in `dynamo {command} --help`:\n{help}"));
        list.split(',').map(|name| name.trim().to_owned()).collect()
    }

    /// `dynamo sim --help` once left `membership` out: the list now comes from the kinds.
    #[test]
    fn nemesis_help_lists_every_kind() {
        let names = |kinds: &[NemesisKind]| -> Vec<String> {
            kinds.iter().map(|k| k.name().to_owned()).collect()
        };
        assert_eq!(nemesis_kinds_in_help("sim"), names(&NemesisKind::ALL));
        let mut live = names(&NemesisKind::ALL);
        live.push(NemesisKind::Pause.name().to_owned());
        assert_eq!(nemesis_kinds_in_help("live"), live);
    }
}
