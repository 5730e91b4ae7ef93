//! Issue 10, item 4, on real processes: a node whose synced data was damaged while it was down
//! (a torn tail, a flipped byte in the middle of its data file, a lost data file) comes back under
//! a new actor id, so that a blind put through it cannot reuse the dot of an acknowledged write;
//! anti-entropy then makes every replica agree, and every acknowledged write stays readable.
//!
//! Found on the main branch before this test existed: the node kept its actor id after each of
//! these, the blind put reused the dot (actor, 1) of an acknowledged write with another value, the
//! replicas diverged for good, and a later update erased the acknowledged write everywhere.
//!
//! The blind put is made while the two peers are paused (SIGSTOP), so that anti-entropy cannot
//! refill the damaged node before it, which would hide a reused counter; it then fails for want
//! of a quorum, but its version is stored on the damaged node and reaches the peers when they
//! resume (SIGCONT).

mod common;

use dynamo_node::fs::StdFs;
use dynamo_node::store::log::damage::{Damage, apply_damage};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a node may take to come up.
const STARTUP_TIMEOUT_MS: u64 = 15_000;
/// How long the replicas may take to agree.
const CONVERGENCE_TIMEOUT_MS: u64 = 20_000;
/// Attempts to find ports and start a cluster before giving up.
const START_ATTEMPTS_MAX: u32 = 5;
/// The node that is damaged (index into the cluster).
const VICTIM_NODE: usize = 2;
/// The key whose acknowledged version the damage hits.
const VICTIM_KEY: &str = "victim";

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
    logs: PathBuf,
    _logs_dir: tempfile::TempDir,
}

impl Cluster {
    fn start(size: usize) -> Cluster {
        for attempt in 0..START_ATTEMPTS_MAX {
            let logs_dir = tempfile::tempdir().unwrap();
            let mut cluster = Cluster {
                dirs: (0..size).map(|_| tempfile::tempdir().unwrap()).collect(),
                // Each attempt takes new ports (see `common::free_port`).
                addrs: (0..size)
                    .map(|_| format!("127.0.0.1:{}", common::free_port()))
                    .collect(),
                procs: (0..size).map(|_| None).collect(),
                logs: logs_dir.path().to_path_buf(),
                _logs_dir: logs_dir,
            };
            for i in 0..size {
                cluster.spawn(i);
            }
            if cluster.wait_ready() {
                return cluster;
            }
            eprintln!("attempt {attempt}: a node did not come up; trying other ports");
        }
        panic!("no cluster after {START_ATTEMPTS_MAX} attempts");
    }

    fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..self.addrs.len())
            .filter(|&j| j != i)
            .map(|j| format!("n{}={}", j + 1, self.addrs[j]))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let child = Command::new(common::DYNAMO)
            .args(["serve", "--id", &format!("n{}", i + 1)])
            .args(["--listen", &self.addrs[i], "--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dirs[i].path())
            .args(["--request-timeout-ms", "1000", "--anti-entropy-ms", "200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dynamo serve");
        self.procs[i] = Some(child);
    }

    fn log(&self, i: usize) -> PathBuf {
        self.logs.join(format!("n{}.log", i + 1))
    }

    /// Waits until every node answers a quorum read (so its links to its peers are up), or one
    /// of them exits (its port was taken, say): false.
    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        for i in 0..self.addrs.len() {
            while !self.cli(i, &["get", "ready-probe"]).status.success() {
                let exited = self.procs[i]
                    .as_mut()
                    .is_some_and(|child| child.try_wait().unwrap().is_some());
                if exited || start.elapsed() > Duration::from_millis(STARTUP_TIMEOUT_MS) {
                    eprintln!("{}", std::fs::read_to_string(self.log(i)).unwrap());
                    return false;
                }
                sleep(Duration::from_millis(50));
            }
        }
        true
    }

    fn kill(&mut self, i: usize) {
        let mut child = self.procs[i].take().expect("running");
        child.kill().unwrap(); // SIGKILL: no clean shutdown, no final sync.
        child.wait().unwrap();
    }

    /// Sends `signal` (STOP or CONT) to node `i`.
    fn signal(&self, i: usize, signal: &str) {
        let pid = self.procs[i].as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().unwrap();
        Command::new(common::DYNAMO)
            .arg(cmd)
            .args(["--node", &self.addrs[i], "--timeout-ms", "3000"])
            .args(rest)
            .output()
            .expect("run dynamo")
    }

    fn put_ok(&self, i: usize, key: &str, value: &str) {
        let out = self.cli(i, &["put", key, value]);
        assert!(
            out.status.success(),
            "put {key} through n{} failed: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Node `i`'s raw state of `key`, as `dynamo state` prints it.
    fn state(&self, i: usize, key: &str) -> Value {
        let out = self.cli(i, &["state", key]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The values a quorum read through node `i` returns (retried for a while: links to peers
    /// that were just resumed come back within seconds).
    fn get(&self, i: usize, key: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_millis(CONVERGENCE_TIMEOUT_MS);
        let out = loop {
            let out = self.cli(i, &["get", key]);
            if out.status.success() || Instant::now() >= deadline {
                break out;
            }
            sleep(Duration::from_millis(100));
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until every node holds the same state of each key, and returns it.
    fn converged(&self, keys: &[String]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_millis(CONVERGENCE_TIMEOUT_MS);
        keys.iter()
            .map(|key| {
                loop {
                    let states: Vec<Value> =
                        (0..self.addrs.len()).map(|i| self.state(i, key)).collect();
                    if states.iter().all(|s| *s == states[0]) {
                        break states[0].clone();
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the replicas of {key} never agreed: {states:#?}; logs in {}",
                        self.logs.display()
                    );
                    sleep(Duration::from_millis(100));
                }
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.procs.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The data files of a node's directory, oldest first.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "data"))
        .collect();
    files.sort();
    files
}

/// Where the last record of the victim key starts in `bytes` (at its key, `d/victim`).
fn victim_record(bytes: &[u8]) -> usize {
    let needle = format!("d/{VICTIM_KEY}");
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())
        .expect("the victim's record is in the file")
}

/// The actor of the sibling holding `value` in a raw state.
fn actor_of(state: &Value, value: &str) -> Option<String> {
    state["siblings"]
        .as_array()?
        .iter()
        .find(|s| s["value"] == value)
        .map(|s| s["dot"][0].as_str().unwrap().to_string())
}

/// Damages the victim node's data directory.
fn damage(dir: &Path, damage: Damage) {
    let newest = data_files(dir).pop().expect("a data file");
    let mut bytes = std::fs::read(&newest).unwrap();
    let victim = victim_record(&bytes);
    match damage {
        // As found: 5 bytes cut off the newest file, whose last record is the victim's.
        Damage::TornTail => {
            assert!(
                bytes.len() - victim < 400,
                "the victim's record is the last one"
            );
            bytes.truncate(bytes.len() - 5);
        }
        // A byte of the victim's value, with the records of other keys after it.
        Damage::FlipByte => {
            assert!(
                bytes[victim..].windows(3).filter(|w| w == b"d/k").count() >= 3,
                "records follow the victim's"
            );
            bytes[victim + VICTIM_KEY.len() + 4] ^= 0xff;
        }
        other => {
            let what = apply_damage(&StdFs, dir, other, 0, None).unwrap();
            eprintln!("damage: {what:?}");
            return;
        }
    }
    std::fs::write(&newest, bytes).unwrap();
}

fn survives(kind: Damage) {
    let mut c = Cluster::start(3);
    let other_keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    // The acknowledged writes. The victim key is written through the victim node, so its dot
    // is (victim's actor, 1); for a torn tail it is the last write, for a flipped byte the first.
    if kind != Damage::TornTail {
        c.put_ok(VICTIM_NODE, VICTIM_KEY, "acked");
    }
    for (i, key) in other_keys.iter().enumerate() {
        c.put_ok(i % 3, key, &format!("v{i}"));
    }
    if kind == Damage::TornTail {
        // A put returns after W of the three replicas stored it: wait for the third, so that the
        // victim's record is the last one of its file.
        c.converged(&other_keys);
        c.put_ok(VICTIM_NODE, VICTIM_KEY, "acked");
    }
    let mut keys = other_keys.clone();
    keys.push(VICTIM_KEY.to_string());
    // Every replica has every write before the crash, so nothing else changes its files.
    let before = c.converged(&keys);
    let old_actor = actor_of(before.last().unwrap(), "acked").expect("the acked version");

    c.kill(VICTIM_NODE);
    damage(c.dirs[VICTIM_NODE].path(), kind);
    let peers: Vec<usize> = (0..3).filter(|&i| i != VICTIM_NODE).collect();
    for &peer in &peers {
        c.signal(peer, "STOP");
    }
    c.spawn(VICTIM_NODE);
    let start = Instant::now();
    while !c
        .cli(VICTIM_NODE, &["state", "ready-probe"])
        .status
        .success()
    {
        assert!(start.elapsed() < Duration::from_millis(STARTUP_TIMEOUT_MS));
        sleep(Duration::from_millis(50));
    }
    if !matches!(kind, Damage::LoseNewestFile | Damage::EmptyNewestFile) {
        // Recovery kept every record the damage did not touch (no peer can have refilled them).
        for key in &other_keys {
            let state = c.state(VICTIM_NODE, key);
            assert_eq!(
                state["siblings"].as_array().unwrap().len(),
                1,
                "{key}: {state}"
            );
        }
    }
    // The blind put: no quorum while the peers sleep, but the damaged node stores its version.
    common::dynamo(&[
        "put",
        "--node",
        &c.addrs[VICTIM_NODE],
        "--timeout-ms",
        "3000",
        VICTIM_KEY,
        "blind",
    ]);
    for &peer in &peers {
        c.signal(peer, "CONT");
    }

    let after = c.converged(&keys);
    let victim_state = after.last().unwrap();
    let new_actor =
        actor_of(victim_state, "blind").expect("the blind version reached every replica");
    assert_ne!(
        new_actor,
        old_actor,
        "the restarted node writes under a new actor id; logs in {}",
        c.logs.display()
    );
    assert_eq!(
        actor_of(victim_state, "acked").as_deref(),
        Some(old_actor.as_str()),
        "the acknowledged version is still there beside the blind one"
    );
    let mut victim_values = c.get(0, VICTIM_KEY);
    victim_values.sort();
    assert_eq!(victim_values, ["acked", "blind"]);
    for (i, key) in other_keys.iter().enumerate() {
        for node in 0..3 {
            assert_eq!(
                c.get(node, key),
                [format!("v{i}")],
                "{key} through n{}",
                node + 1
            );
        }
    }
    // The log holds both incarnations: the restart's reason is on the last actor line. The actor
    // is kept apart from the data files, so every kind of damage is found as lost data (not as a
    // disk without an actor).
    let log = std::fs::read_to_string(c.log(VICTIM_NODE)).unwrap();
    let last = log
        .lines()
        .rfind(|l| l.contains("taking a new actor id"))
        .expect("the restart took a new actor id");
    assert!(last.contains("recovery lost data"), "{last}");
}

#[test]
fn a_torn_tail_does_not_reuse_a_dot() {
    survives(Damage::TornTail);
}

#[test]
fn a_flipped_byte_in_the_middle_keeps_the_records_after_it_and_does_not_reuse_a_dot() {
    survives(Damage::FlipByte);
}

#[test]
fn a_lost_newest_file_does_not_reuse_a_dot() {
    survives(Damage::LoseNewestFile);
}

/// `truncate -s 0` of the newest data file of a stopped node: its records are gone and nothing
/// damaged is left to read; the file-start record the store wrote first is what is missing.
#[test]
fn an_emptied_newest_file_does_not_reuse_a_dot() {
    survives(Damage::EmptyNewestFile);
}
