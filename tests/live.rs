//! Issue 12, "How it is checked", on real processes: a short `dynamo live` run with kills and
//! partitions ends valid, and its history holds the nemesis events and the replica states; the
//! bench prints figures for a short run against a cluster that `dynamo status` describes; and a
//! restarted or resumed node, and a non-owner with a paused owner, serve at once.

mod common;

use dynamo_node::client::{Client, Context};
use dynamo_node::env::TokioEnv;
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn history(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_short_live_run_with_kills_and_partitions_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = common::dynamo(&[
        "live",
        "--seed",
        "7",
        "--nodes",
        "3",
        "--clients",
        "4",
        "--ops",
        "600",
        "--nemesis",
        "crash,partition,pause",
        "--fault-gap-ops",
        "100",
        "--fault-ms",
        "600",
        "--quiesce-ms",
        "2000",
        "--time-limit",
        "20s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "the run is valid");
    let events = history(&out);
    let has = |f: &str| events.iter().any(|e| e["f"] == f);
    assert!(
        has("crash") && has("restart"),
        "kills and restarts recorded"
    );
    assert!(
        has("partition-start") && has("partition-stop"),
        "partitions recorded"
    );
    assert!(has("replica-state"), "the final state was taken");
    assert_eq!(events[0]["value"]["runner"], "live");
    for f in ["plan.json", "results.json", "report.html", "live.json"] {
        assert!(out.join(f).exists(), "{f} written");
    }
    // Every process it started is gone.
    let live: Value = common::json(&out.join("live.json"));
    for node in live["nodes"].as_array().unwrap() {
        let addr = node["listen"].as_str().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still answers after the run"
        );
    }
}

/// Loopback ports below the kernel's ephemeral range (see tests/recovery.rs).
fn ports(count: u16) -> Vec<u16> {
    for turn in 0..200u64 {
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), turn),
        );
        let base = 10_000 + (seed % 15_000) as u16;
        let ports: Vec<u16> = (0..count).map(|i| base + i).collect();
        if ports
            .iter()
            .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return ports;
        }
    }
    panic!("no free ports");
}

struct Nodes {
    addrs: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
    procs: Vec<Option<Child>>,
}

impl Nodes {
    fn start(count: usize) -> Nodes {
        let addrs: Vec<String> = ports(count as u16)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut nodes = Nodes {
            dirs: (0..count).map(|_| tempfile::tempdir().unwrap()).collect(),
            procs: (0..count).map(|_| None).collect(),
            addrs,
        };
        for i in 0..count {
            nodes.spawn(i);
        }
        for i in 0..count {
            nodes.wait_up(i);
        }
        nodes
    }

    fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..self.addrs.len())
            .filter(|&j| j != i)
            .map(|j| format!("n{}={}", j + 1, self.addrs[j]))
            .collect();
        let child = Command::new(common::DYNAMO)
            .args(["serve", "--id", &format!("n{}", i + 1)])
            .args(["--listen", &self.addrs[i], "--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dirs[i].path())
            .args(["--request-timeout-ms", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs[i] = Some(child);
    }

    fn wait_up(&self, i: usize) {
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.addrs[i]).is_err() {
            assert!(start.elapsed() < Duration::from_secs(15), "n{} down", i + 1);
            sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, i: usize) {
        let mut child = self.procs[i].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.procs[i].as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.procs.iter_mut().flatten() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Puts and gets through `addr` for `for_ms`; returns (ms since start, error) of each failure.
fn load(addr: &str, keys: &[String], for_ms: u64) -> (usize, Vec<(u128, String)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = Client::new(TokioEnv::default(), addr.to_string()).with_timeout_ms(3_000);
        let start = Instant::now();
        let (mut done, mut failures) = (0, Vec::new());
        // Each put supersedes what this client was last given of the key (blind puts would pile
        // up siblings until the node refuses more): the context of its last read or put, whole,
        // as the node signed it.
        let mut seen: std::collections::BTreeMap<String, Context> = Default::default();
        while start.elapsed() < Duration::from_millis(for_ms) {
            let key = &keys[done % keys.len()];
            let at = start.elapsed().as_millis();
            let context = seen.get(key).cloned().unwrap_or_default();
            let result = if done % 2 == 0 {
                client
                    .put(key.as_bytes(), b"v".to_vec(), &context)
                    .await
                    .map(|reply| {
                        seen.insert(key.clone(), reply.context);
                    })
            } else {
                client.get(key.as_bytes()).await.map(|reply| {
                    seen.insert(key.clone(), reply.context);
                })
            };
            if let Err(e) = result {
                failures.push((at, e.to_string()));
            }
            done += 1;
        }
        (done, failures)
    })
}

/// Issue 12, item 4, on real processes: requests a restarted node coordinates succeed from its
/// first moments once its peers are up (they failed for about 2 s: "put reached 1 of the 2
/// replicas"), and so do those of a node resumed after SIGSTOP.
#[test]
fn a_restarted_or_resumed_node_serves_at_once() {
    let mut nodes = Nodes::start(3);
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let (_, failures) = load(&nodes.addrs[2], &keys, 500);
    assert!(
        failures.is_empty(),
        "a healthy cluster failed: {failures:?}"
    );
    nodes.kill(2);
    sleep(Duration::from_millis(1_500));
    nodes.spawn(2);
    nodes.wait_up(2);
    let (done, failures) = load(&nodes.addrs[2], &keys, 2_000);
    println!(
        "after the restart: {done} requests, {} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        failures.iter().all(|(at, _)| *at < 200),
        "requests failed more than 200 ms after the restart: {failures:?}"
    );
    nodes.signal(2, "STOP");
    sleep(Duration::from_millis(3_000));
    nodes.signal(2, "CONT");
    let (done, failures) = load(&nodes.addrs[2], &keys, 2_000);
    println!(
        "after the resume: {done} requests, {} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        failures.iter().all(|(at, _)| *at < 200),
        "requests failed more than 200 ms after the resume: {failures:?}"
    );
}

/// Issue 12, item 4, on real processes: a node that owns no replica of a key serves it while one
/// of the key's owners is paused (a forward to that owner used to time out), and `dynamo status`
/// says where the key lives.
#[test]
fn a_non_owner_serves_a_key_whose_owner_is_paused() {
    let nodes = Nodes::start(4);
    // The key's owners, from the ring a node reports: the fourth node is the non-owner.
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
    let mut args = vec!["status", "--node", &nodes.addrs[0]];
    for k in &keys {
        args.push("--key");
        args.push(k);
    }
    let out = common::dynamo(&args);
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ring"]["n"], 3);
    assert_eq!(status["peers"].as_array().unwrap().len(), 3);
    assert_eq!(status["ring"]["partitions"].as_array().unwrap().len(), 64);
    let placement = |key: &str| -> Vec<String> {
        status["keys"][key]["preference_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let (key, owners) = keys
        .iter()
        .map(|k| (k.clone(), placement(k)))
        .find(|(_, o)| !o.contains(&"n4".to_string()) && o[0] == "n1")
        .expect("a key that n4 does not own and n1 leads");
    // Pause the first owner (a forward's first choice), then use the non-owner n4.
    nodes.signal(0, "STOP");
    let (done, failures) = load(&nodes.addrs[3], std::slice::from_ref(&key), 3_000);
    nodes.signal(0, "CONT");
    println!(
        "{key} owned by {owners:?}: {done} requests through n4, {} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(done > 10, "too few requests went through");
    assert!(
        failures.is_empty(),
        "requests through a non-owner failed while one owner was paused: {failures:?}"
    );
}

#[test]
fn the_bench_prints_figures_for_a_short_run() {
    let nodes = Nodes::start(3);
    let list = nodes.addrs.join(",");
    let out = common::dynamo(&[
        "bench",
        "--node",
        &list,
        "--clients",
        "4",
        "--duration",
        "1s",
        "--keys",
        "100",
        "--json",
    ]);
    assert!(out.status.success());
    let figures: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = figures["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert!(row["ops"].as_u64().unwrap() > 0, "{row}");
        assert!(row["ops_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap());
        assert_eq!(row["errors"], 0, "{row}");
    }
    assert!(figures["threads"].as_u64().unwrap() >= 1, "{figures}");
    let table = common::dynamo(&["bench", "--node", &list, "--ops", "200", "--threads", "2"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("p99.9 ms") && text.contains("get") && text.contains("put"),
        "{text}"
    );
    assert!(text.contains("on 2 thread(s)"), "{text}");
    let refused = common::dynamo(&["bench", "--node", &list, "--ops", "1", "--threads", "0"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--threads"), "{err}");
}
