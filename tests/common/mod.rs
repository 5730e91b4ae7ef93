//! Helpers shared by the tests that run the `dynamo` binary.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const DYNAMO: &str = env!("CARGO_BIN_EXE_dynamo");

/// Runs `dynamo ARGS`, echoing the command and its output to stderr (shown when a test fails).
#[allow(dead_code)] // Not every test file runs commands this way.
pub fn dynamo(args: &[&str]) -> Output {
    let out = Command::new(DYNAMO)
        .args(args)
        .output()
        .expect("run dynamo");
    eprintln!(
        "$ dynamo {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A JSON file, parsed.
#[allow(dead_code)] // Not every test file reads JSON files.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A loopback port for a node a test starts, not handed out before by this test process.
///
/// Peers must know each other's addresses before they start, so a node cannot take port 0; a port
/// found by binding port 0 and closing it again races with every other test (and with the kernel's
/// ephemeral ports for outgoing connections, which is where port 0 comes from). Instead the ports
/// come from below Linux's ephemeral range (32768 and up), from a block of this process's own (by
/// pid), one at a time, skipping any that cannot be bound at the moment.
#[allow(dead_code)] // Not every test file starts nodes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    /// Ports of this process's block handed out so far.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const FIRST_PORT: u16 = 20_000;
    const BLOCK_PORTS: u16 = 256;
    const BLOCKS: u16 = (32_768 - FIRST_PORT) / BLOCK_PORTS;
    let block = FIRST_PORT + (std::process::id() % u32::from(BLOCKS)) as u16 * BLOCK_PORTS;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            offset < BLOCK_PORTS,
            "this test process used its {BLOCK_PORTS} ports"
        );
        let port = block + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
