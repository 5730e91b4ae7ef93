//! `dynamo-workloads`: drives real `dynamo-node` nodes inside the turmoil simulator with generated
//! client workloads and faults, deterministically from a seed, and records a history in the format
//! of shared/history-format.md.
//!
//! # Layout
//!
//! - [`plan`]: the configuration and its expansion from a seed (proptest strategies) into client
//!   operations and a fault schedule; `plan.json`.
//! - [`workload`]: the client processes of the `cart` and `register` workloads.
//! - [`history`]: the JSONL recorder.
//! - [`runner`]: the turmoil world: node hosts, the control host, the nemesis, the final phase.

pub mod history;
pub mod plan;
pub mod runner;
pub mod workload;

pub use plan::{Plan, SimConfig};
pub use runner::{RunOutput, RunSummary, run};
