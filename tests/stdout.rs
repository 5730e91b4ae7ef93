//! A command whose stdout goes away (`dynamo sim | head -1`) finishes its work quietly and exits
//! with its usual status: no panic, no message, its files written; a stdout that fails otherwise (a
//! full disk) is an error, said once, and the exit status 2 (issue 14).

mod common;

use common::DYNAMO;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `dynamo sim --seed 1 --ops 50`: a valid run (exit 0) of a few output lines.
fn sim_args(out: &Path) -> Vec<String> {
    ["sim", "--seed", "1", "--ops", "50", "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
}

fn assert_quiet_and_complete(run: &Output, out: &Path) {
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains("cannot write to stdout"),
        "a closed stdout is no error: {stderr}"
    );
    assert_eq!(run.status.code(), Some(0), "the verdict of seed 1 (valid)");
    for file in ["history.jsonl", "plan.json", "results.json", "report.html"] {
        assert!(out.join(file).is_file(), "the run went on to write {file}");
    }
}

#[test]
fn sim_piped_into_a_reader_that_stops_after_one_line_exits_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = Command::new(DYNAMO)
        .args(sim_args(&out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("seed 1: "), "{first}");
    // `head -1` exits: the read end closes while the run still has lines to print.
    drop(stdout);
    let run = child.wait_with_output().unwrap();
    assert_quiet_and_complete(&run, &out);
}

/// The same with the reader gone before the first line, so that every write meets the closed
/// pipe, whatever the timing.
#[test]
fn sim_and_check_with_stdout_closed_from_the_start_exit_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let run = Command::new(DYNAMO)
        .args(sim_args(&out))
        .stdout(closed())
        .output()
        .unwrap();
    assert_quiet_and_complete(&run, &out);
    let check = Command::new(DYNAMO)
        .args(["check", out.to_str().unwrap()])
        .stdout(closed())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(check.status.code(), Some(0), "{stderr}");
}

/// A write that fails for another reason cuts the output short: that must not pass for success.
#[test]
fn a_stdout_that_fails_to_take_a_write_is_an_error() {
    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here: skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let run = Command::new(DYNAMO)
        .args(sim_args(&out))
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.matches("dynamo: cannot write to stdout").count(),
        1,
        "said once: {stderr}"
    );
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(out.join("results.json").is_file(), "the run still finished");
}
