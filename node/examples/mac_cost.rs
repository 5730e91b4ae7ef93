//! What a frame's MAC costs on this machine's CPU: the GMAC the node uses ([`FrameMac`]) beside
//! HMAC-SHA256 truncated to the same tag, as the node first had it (BENCHMARKS.md, "The cost of
//! authentication"). Instruction counts under valgrind cannot compare them: valgrind's CPU has no
//! SHA extensions, so `sha2` falls back to software there but not here.
//!
//! ```text
//! cargo run --release -p dynamo-node --example mac_cost
//! ```

use dynamo_node::auth::FrameMac;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Instant;

/// Frames per measurement; the fastest of [`ROUNDS`] counts (the machine is shared).
const FRAMES: usize = 200_000;
const ROUNDS: usize = 5;

/// HMAC-SHA256 over the sequence number and the frame, truncated to 16 bytes: the node's frame
/// MAC before GMAC.
fn hmac_tag(keyed: &Hmac<Sha256>, seq: u64, body: &[u8]) -> [u8; 16] {
    let mut mac = keyed.clone();
    mac.update(&seq.to_be_bytes());
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full[..16]);
    tag
}

fn fastest_ns_per_frame(mut f: impl FnMut(u64)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for seq in 0..FRAMES as u64 {
                f(seq);
            }
            start.elapsed().as_nanos() as f64 / FRAMES as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let key = [7u8; 32];
    let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
    println!("frame bytes | HMAC-SHA256 ns/frame | GMAC ns/frame");
    for size in [16usize, 64, 256, 1024, 4096, 16384] {
        let body = vec![0x5au8; size];
        let hmac = fastest_ns_per_frame(|seq| {
            black_box(hmac_tag(&keyed, seq, black_box(&body)));
        });
        let mut gmac = FrameMac::new(&key);
        let gmac = fastest_ns_per_frame(|_| {
            black_box(gmac.tag(black_box(&body)));
        });
        println!("{size:>11} | {hmac:>20.0} | {gmac:>13.0}");
    }
}
