//! Hostile frames for tests and the long fuzz run: every wire type, with values at and past every
//! bound, from a seeded generator (so that a failure replays from its seed).
//!
//! Random bytes rarely get past the decoder; what finds bugs is a *valid* frame with a hostile
//! value: a ring of version `u64::MAX`, a context of 4,096 entries or at the counter limit, a
//! state whose siblings break the invariants, a key one byte too long, a Merkle level that does
//! not exist. [`FrameGen`] makes such frames of every variant, and [`FrameGen::mutate`] damages
//! encoded ones (truncation, flipped bytes, trailing bytes, a lying length). The generator never
//! uses the actors of the node under test, so whatever it sends cannot cover (and so supersede) a
//! version that node made: a write the node acknowledged must stay readable whatever arrives.
//!
//! Used by the core's and the shell's property tests (driven by proptest's seeds) and by the
//! long run, `cargo run --release -p dynamo-node --example fuzz_node` (BENCHMARKS.md).
//!
//! # Layout
//!
//! - `frame_gen`: [`FrameGen`], the seeded generator of hostile values, messages and frames, and
//!   the damage it does to encoded frames.
//! - `driver`: [`hammer`], the driver of the long run: a real node on loopback, connections of
//!   every kind sending the generator's frames, and the checks that the node survived them.

mod driver;
mod frame_gen;

pub use driver::{HammerReport, hammer, rss_bytes};
pub use frame_gen::FrameGen;
