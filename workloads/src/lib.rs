//! `dynamo-workloads`: drives real `dynamo-node` nodes inside the turmoil simulator with generated
//! client workloads and faults, deterministically from a seed, and records a history in the format
//! of shared/history-format.md.
//!
//! # Layout
//!
//! - [`plan`]: the configuration, client operations and fault windows of a run; `plan.json`.
//! - [`generate`]: the expansion of a seed into a plan (the project's own generator).
//! - [`prng`]: SplitMix64, the one pseudo-random generator of plans, nemesis choices and nightly
//!   draws.
//! - [`workload`]: the client processes of the `cart` and `register` workloads.
//! - [`history`]: the JSONL recorder.
//! - [`latency`]: latency models (`--latency`): per-kind delay distributions of peer messages,
//!   and the PBS paper's presets.
//! - [`nemesis_core`]: the nemesis itself, for the simulator and `dynamo live` alike: when fault
//!   windows open and close (overlapping, aimed at acknowledged writes, counted), and the
//!   supervision of nodes that stop by themselves; the environment trait that makes the faults.
//! - [`nemesis`]: that environment on the simulated cluster (turmoil's `Sim`, the hosts' knobs).
//! - [`rest`]: when a healed cluster is at rest, which ends the quiesce before its time.
//! - [`runner`]: the turmoil world: node hosts, the control host, the final phase.

pub mod generate;
pub mod history;
pub mod latency;
pub mod nemesis;
pub mod nemesis_core;
pub mod plan;
pub mod prng;
pub mod rest;
pub mod runner;
pub mod workload;

pub use plan::{Plan, SimConfig};
pub use runner::{RunOutput, RunSummary, run};
