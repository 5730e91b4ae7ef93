//! Helpers shared by the tests that run the `dynamo` binary.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const DYNAMO: &str = env!("CARGO_BIN_EXE_dynamo");

/// Runs `dynamo ARGS`, echoing the command and its output to stderr (shown when a test fails).
#[allow(dead_code)] // Not every test file runs the binary this way.
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
