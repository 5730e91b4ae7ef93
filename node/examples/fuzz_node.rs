//! The long fuzz run of issue 11: hostile frames of every wire type against a real node on
//! loopback, from anonymous clients, admins, a damaged peer and strangers (see
//! `dynamo_node::fuzz::hammer`). It asserts that the node never stops, that every write it
//! acknowledged is read back, that its ring never moves, and that the process's resident memory
//! stays within the node's budget of inbound bytes (plus the fuzzer's own and a margin).
//!
//! ```text
//! cargo run --release -p dynamo-node --example fuzz_node -- [FRAMES] [SEED] [WORKERS]
//! ```
//!
//! Defaults: 10,000,000 frames, seed 1, 16 connections at a time. Figures in BENCHMARKS.md.
//! With `RUST_LOG` set (for example `RUST_LOG=dynamo_node=info`), the node's log goes to stderr.

use dynamo_node::fuzz::{hammer, rss_bytes};
use dynamo_node::shell::INBOUND_BYTES_MAX;

/// Memory the fuzzer itself, the node's own state (keys, trees, rounds, queues) and the
/// allocator's slack may add to the node's budget of inbound bytes.
const RSS_MARGIN_BYTES: u64 = 128 * 1024 * 1024;

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .map(|a| a.replace('_', "").parse().expect("a number"))
            .unwrap_or(default)
    };
    let frames = arg(1, 10_000_000);
    let seed = arg(2, 1);
    let workers = arg(3, 16) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    eprintln!("fuzz_node: {frames} frames, seed {seed}, {workers} connections at a time");
    let report = hammer(seed, frames, workers, dir.path());
    let bound = report.rss_bytes_start + INBOUND_BYTES_MAX as u64 + RSS_MARGIN_BYTES;
    println!(
        "{} frames in {:.1} s ({:.0} frames/s) over {} connections ({} refused by the node, \
         {} handshakes with the secret timed out while the node was busy); \
         {} acknowledged writes all read back; ring unchanged; RSS {:.1} MiB at start, \
         {:.1} MiB at most (bound {:.1} MiB), {:.1} MiB at the end",
        report.frames,
        report.elapsed_s,
        report.frames as f64 / report.elapsed_s,
        report.connections,
        report.refused,
        report.handshakes_timed_out,
        report.acked_writes,
        mib(report.rss_bytes_start),
        mib(report.rss_bytes_max),
        mib(bound),
        mib(rss_bytes()),
    );
    assert!(
        report.rss_bytes_max <= bound,
        "resident memory {} passed the bound {bound}",
        report.rss_bytes_max
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
