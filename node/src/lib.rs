//! `dynamo-node`: a Dynamo-style key-value store node (DeCandia et al., SOSP 2007), built to be
//! verified. The same code serves real TCP (`dynamo serve`) and runs inside the turmoil simulator
//! (`dynamo sim`); only the [`env::Env`] differs.
//!
//! # Layout
//!
//! - [`ring`]: Q equal partitions of a stable hash ring, assigned by weight; preference lists.
//! - [`version`]: dotted version vectors: siblings, contexts, put and merge.
//! - [`store`]: the `Storage` trait, a memory store, the Bitcask-style log store, and the
//!   [`store::keyspace::Keyspace`] that encodes key states over them.
//! - [`fs`]: the small file-system trait the log store does its I/O through (real, simulated or
//!   in memory), and a wrapper that injects disk faults.
//! - [`wire`]: messages and length-delimited postcard frames with a size bound.
//! - [`auth`]: the cluster secret and client token, the handshake's proofs, frame MACs, and the
//!   MACs of the contexts a node hands to clients (a put's context must be one of them).
//! - [`conn`]: one connection's framing: budgeted buffers that grow as bytes arrive, MACed
//!   frames, the two sides of the handshake.
//! - [`coordinator`]: the quorum bookkeeping of one request (put, get, forward).
//! - [`merkle`]: per-partition Merkle trees for anti-entropy, updated on every write.
//! - [`hints`]: sloppy-quorum target selection and hinted-handoff bookkeeping.
//! - [`core`]: the protocol state machine: inputs in, [`core::Ready`] out; no I/O. One file per
//!   protocol concern: coordination, hints and hand-over, anti-entropy, membership.
//! - [`shell`]: the async driver of the core: connections, peer links, timers, disk; opening the
//!   disk, inbound connections and peer links have a file each.
//! - [`env`]: the environment (network, file system, wall clock, randomness): tokio or turmoil.
//! - [`client`]: the client library used by the CLI and the workloads; a [`client::Context`]
//!   keeps a context's clock and MAC together.
//! - [`fuzz`]: a seeded generator of hostile frames of every wire type, for the property tests
//!   and the long fuzz run.
//! - [`config`]: node options, the fsync policy, and the deliberate bugs.
//!
//! # What is not here yet
//!
//! Tombstones are kept forever (no garbage collection of deleted keys). Reads during a membership
//! change ask the new owners, which may not have a moved key yet (a stale read, never a lost one:
//! the old owner keeps the key, and keeps pushing it, until every new owner has acknowledged it).
//! Concurrent ring changes made at two nodes with the same version resolve to one of them; the
//! node that made the other (its own join or leave, an admin's join or forget through it) makes
//! it again on top of the winner for a while (core/membership.rs, with its limits).

pub mod auth;
pub mod client;
pub mod config;
pub mod conn;
pub mod coordinator;
pub mod core;
pub mod env;
pub mod fs;
pub mod fuzz;
pub mod hints;
pub mod merkle;
pub mod ring;
pub mod shell;
pub mod store;
pub mod version;
pub mod wire;
