//! Issue 11 on real processes: each attack of the issue, tried on `dynamo serve` over loopback as
//! an attacker would (hand-made frames, strangers, a second process), refused or survived with
//! nothing lost. The core's share of the attacks is tested in `node/src/hostile_tests.rs`.

mod common;

use common::{DYNAMO, free_port};
use dynamo_node::auth::{NONCE_BYTES, Role, Secret};
use dynamo_node::client::{Client, ClientAuth, ClientError, Context};
use dynamo_node::conn::{Budget, Conn, dial_handshake};
use dynamo_node::env::TokioEnv;
use dynamo_node::fs::StdFs;
use dynamo_node::store::keyspace::Keyspace;
use dynamo_node::store::log::{LogOptions, LogStore};
use dynamo_node::version::{COUNTER_MAX, VClock};
use dynamo_node::wire::{self, FIRST_FRAME_BYTES_MAX, Frame, PeerMessage, Request, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a node may take to come up.
const STARTUP_TIMEOUT_MS: u64 = 15_000;
const SECRET: &str = "correct horse battery staple, 32+";

/// Real nodes on loopback, with or without a cluster secret.
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
    secret: Option<PathBuf>,
    extra: Vec<String>,
    logs: tempfile::TempDir,
}

impl Cluster {
    fn start(size: usize, secret: bool, extra: &[&str]) -> Cluster {
        let logs = tempfile::tempdir().unwrap();
        let secret = secret.then(|| {
            let path = logs.path().join("secret");
            std::fs::write(&path, format!("{SECRET}\n")).unwrap();
            path
        });
        let mut cluster = Cluster {
            dirs: (0..size).map(|_| tempfile::tempdir().unwrap()).collect(),
            addrs: (0..size)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
            procs: (0..size).map(|_| None).collect(),
            secret,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            logs,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_ready();
        cluster
    }

    fn serve_args(&self, i: usize) -> Vec<String> {
        let peers: Vec<String> = (0..self.addrs.len())
            .filter(|&j| j != i)
            .map(|j| format!("n{}={}", j + 1, self.addrs[j]))
            .collect();
        let mut args: Vec<String> = ["serve", "--id", &format!("n{}", i + 1), "--listen"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.addrs[i].clone());
        if !peers.is_empty() {
            args.push("--peers".into());
            args.push(peers.join(","));
        }
        args.push("--data-dir".into());
        args.push(self.dirs[i].path().display().to_string());
        args.extend(["--request-timeout-ms".to_string(), "1000".to_string()]);
        if let Some(secret) = &self.secret {
            args.push("--cluster-secret-file".into());
            args.push(secret.display().to_string());
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    fn log(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("n{}.log", i + 1))
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let child = Command::new(DYNAMO)
            .args(self.serve_args(i))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dynamo serve");
        self.procs[i] = Some(child);
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        for i in 0..self.addrs.len() {
            while self.procs[i].is_some() && !self.cli(i, &["get", "ready-probe"]).status.success()
            {
                assert!(
                    start.elapsed() < Duration::from_millis(STARTUP_TIMEOUT_MS),
                    "n{} did not come up: {}",
                    i + 1,
                    std::fs::read_to_string(self.log(i)).unwrap_or_default()
                );
                sleep(Duration::from_millis(100));
            }
        }
    }

    fn kill(&mut self, i: usize) {
        let mut child = self.procs[i].take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops node `i` cleanly (SIGTERM: its final sync, then the clean-shutdown marker).
    fn stop(&mut self, i: usize) {
        let mut child = self.procs[i].take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "n{} did not stop cleanly: {exit}", i + 1);
    }

    fn pid(&self, i: usize) -> u32 {
        self.procs[i].as_ref().unwrap().id()
    }

    /// Runs a client command against node `i`, with the cluster secret if `admin`.
    fn cli_as(&self, i: usize, admin: bool, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().unwrap();
        let mut command = Command::new(DYNAMO);
        command
            .arg(cmd)
            .args(["--node", &self.addrs[i], "--timeout-ms", "3000"])
            .args(rest)
            .env_remove("DYNAMO_CLUSTER_SECRET_FILE");
        if admin && let Some(secret) = &self.secret {
            command.arg("--cluster-secret-file").arg(secret);
        }
        command.output().expect("run dynamo")
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        self.cli_as(i, true, args)
    }

    fn put(&self, i: usize, key: &str, value: &str) {
        let out = self.cli(i, &["put", key, value]);
        assert!(out.status.success(), "put {key}: {}", text(&out));
    }

    fn values(&self, i: usize, key: &str) -> Vec<String> {
        let out = self.cli(i, &["get", key]);
        assert!(out.status.success(), "get {key}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The members and version of node `i`'s ring.
    fn ring(&self, i: usize) -> (Vec<String>, u64) {
        let secret = self
            .secret
            .as_deref()
            .map(|p| Secret::from_file(p).unwrap());
        let addr = self.addrs[i].clone();
        runtime().block_on(async move {
            let mut admin =
                Client::new(TokioEnv::default(), addr).with_auth(ClientAuth::admin(secret));
            let status = admin.status().await.expect("status");
            let members = status
                .ring
                .members()
                .keys()
                .map(|m| m.to_string())
                .collect();
            (members, status.ring.version())
        })
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

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes one frame by hand: a length, then the postcard body.
fn send_raw(stream: &mut TcpStream, body: &[u8]) {
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
}

/// Reads one frame, or `None` once the node closed the connection (or said nothing in 5 s).
fn read_raw(stream: &mut TcpStream) -> Option<Frame> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    wire::decode(&body).ok()
}

/// Sends `frame` on a fresh connection to `addr` as a stranger and returns the first answer.
fn as_stranger(addr: &str, frame: &Frame) -> Option<Frame> {
    let mut stream = TcpStream::connect(addr).unwrap();
    send_raw(&mut stream, &wire::encode(frame).unwrap());
    read_raw(&mut stream)
}

fn error_text(frame: &Option<Frame>) -> String {
    match frame {
        Some(Frame::Error { message }) => message.clone(),
        Some(Frame::Response {
            response: Response::Error { error },
            ..
        }) => error.message.clone(),
        other => panic!("not a refusal: {other:?}"),
    }
}

/// A connection that passed the handshake as peer `id` with the empty key of an open node:
/// what any local process can do to a node without a secret (a damaged peer).
async fn as_open_peer(addr: &str, id: &str) -> Conn<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut conn = Conn::new(stream, &Budget::unbounded(), wire::FRAME_BYTES_MAX).unwrap();
    let role = Role::Peer { id: id.into() };
    dial_handshake(&mut conn, role, "dynamo", b"", [7; NONCE_BYTES], None)
        .await
        .unwrap();
    conn
}

/// Item 1: nobody without the secret takes over the ring (an anonymous or wrongly keyed `Join`,
/// a stranger's handshake as a peer); the admin verbs need the secret; and `forget` removes a
/// member gone for good, keeping every acknowledged key readable.
#[test]
fn item1_strangers_cannot_change_the_ring_and_forget_removes_a_dead_member() {
    let mut cluster = Cluster::start(3, true, &[]);
    let keys: Vec<String> = (0..10).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        cluster.put(0, key, "v");
    }
    let join = Frame::Request {
        id: 1,
        request: Request::Join {
            id: "evil".into(),
            addr: format!("127.0.0.1:{}", free_port()),
            weight: 64,
        },
    };
    let refused = error_text(&as_stranger(&cluster.addrs[0], &join));
    assert!(refused.contains("cluster secret"), "{refused}");
    let wrong = Secret::new(b"not the secret, but long enough".to_vec()).unwrap();
    let addr = cluster.addrs[1].clone();
    let denied = runtime().block_on(async move {
        let mut admin =
            Client::new(TokioEnv::default(), addr).with_auth(ClientAuth::admin(Some(wrong)));
        admin.request(Request::Leave).await
    });
    assert!(
        matches!(&denied, Err(ClientError::Connect(e)) if e.to_string().contains("secret")),
        "{denied:?}"
    );
    // A stranger cannot even open a peer link: its proof of the secret fails.
    let addr = cluster.addrs[2].clone();
    let forged = runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut conn = Conn::new(stream, &Budget::unbounded(), wire::FRAME_BYTES_MAX).unwrap();
        let role = Role::Peer { id: "n1".into() };
        dial_handshake(&mut conn, role, "dynamo", b"guess", [1; NONCE_BYTES], None).await
    });
    assert!(forged.is_err(), "{forged:?}");
    let state = cluster.cli_as(0, false, &["state", "key-1"]);
    assert_eq!(state.status.code(), Some(1), "{}", text(&state));
    assert!(text(&state).contains("cluster secret"), "{}", text(&state));
    assert!(cluster.cli(0, &["state", "key-1"]).status.success());
    for i in 0..3 {
        assert_eq!(
            cluster.ring(i),
            (vec!["n1".into(), "n2".into(), "n3".into()], 1)
        );
    }

    // A live member cannot be forgotten; a dead one can.
    let alive = cluster.cli(0, &["forget", "n2"]);
    assert_eq!(alive.status.code(), Some(1), "{}", text(&alive));
    assert!(text(&alive).contains("alive"), "{}", text(&alive));
    cluster.kill(2);
    let start = Instant::now();
    loop {
        let out = cluster.cli(0, &["forget", "n3"]);
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{}", text(&out));
        sleep(Duration::from_millis(300));
    }
    let start = Instant::now();
    while cluster.ring(1).0 != ["n1", "n2"] {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "n2 learns the ring"
        );
        sleep(Duration::from_millis(200));
    }
    for key in &keys {
        assert_eq!(cluster.values(1, key), ["v"], "{key}");
    }
}

/// Item 2: a `RingState` of version `u64::MAX` from a peer (here a local process that opened a
/// peer link to an open node) is refused; the ring still changes by a leave afterwards, and the
/// node restarts.
#[test]
fn item2_a_ring_of_version_u64_max_is_refused() {
    let mut cluster = Cluster::start(3, false, &[]);
    let addr = cluster.addrs[0].clone();
    let (members, version) = cluster.ring(0);
    assert_eq!(version, 1);
    let addrs: std::collections::BTreeMap<dynamo_node::ring::NodeId, String> = (0..3)
        .map(|i| (format!("n{}", i + 1).into(), cluster.addrs[i].clone()))
        .collect();
    runtime().block_on(async move {
        let mut admin = Client::new(TokioEnv::default(), addr.clone());
        let ring = admin.status().await.unwrap().ring;
        let mut conn = as_open_peer(&addr, "n2").await;
        for v in [u64::MAX, dynamo_node::ring::VERSION_MAX + 1, 1 << 40] {
            let message = PeerMessage::RingState {
                ring: ring.clone().with_version_for_fuzzing(v),
                addrs: addrs.clone(),
            };
            conn.send(&Frame::Peer {
                from: "n2".into(),
                message,
            })
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    });
    for i in 0..3 {
        assert_eq!(cluster.ring(i), (members.clone(), 1), "n{}", i + 1);
    }
    let left = cluster.cli(2, &["leave"]);
    assert!(left.status.success(), "{}", text(&left));
    cluster.kill(0);
    cluster.spawn(0);
    cluster.wait_ready();
    let start = Instant::now();
    while cluster.ring(0).1 != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            cluster.ring(0)
        );
        sleep(Duration::from_millis(200));
    }
}

/// Items 3 and 5: a context of 4,097 entries (a frame that does not decode), one whose new clock
/// would pass 4,096 entries, or one at the counter limit, is refused with an error (and the CLI refuses a counter past
/// it); the longest context accepted makes a state the node reads back after a restart.
#[test]
fn item3_and_5_contexts_past_the_bounds_are_refused_and_the_node_restarts() {
    let mut cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    let addr = cluster.addrs[0].clone();
    let put = |context: VClock| {
        let addr = addr.clone();
        runtime().block_on(async move {
            let mut client = Client::new(TokioEnv::default(), addr);
            // An open node: an unsigned context is taken as it is.
            client
                .put(b"wide", b"v".to_vec(), &Context::unsigned(context))
                .await
        })
    };
    let context = |entries: usize| {
        let mut c = VClock::new();
        for i in 0..entries {
            c.raise(&format!("a{i:05}"), 1);
        }
        c
    };
    // Past the most entries any clock may have, the frame does not decode.
    let refused = put(context(4_097)).unwrap_err().to_string();
    assert!(refused.contains("malformed frame"), "{refused}");
    // 4,096 actors the key has not seen, and the coordinator's own: one too many for a clock.
    let refused = put(context(4_096)).unwrap_err().to_string();
    assert!(refused.contains("more than"), "{refused}");
    put(context(4_095)).expect("the longest context is accepted");
    let mut limit = VClock::new();
    limit.raise("a00001", COUNTER_MAX);
    let refused = put(limit).unwrap_err().to_string();
    assert!(refused.contains("counter limit"), "{refused}");
    let cli = cluster.cli(0, &["put", "k", "v", "--context", "a=18446744073709551615"]);
    assert_eq!(cli.status.code(), Some(2), "{}", text(&cli));
    assert!(text(&cli).contains("exceeds the limit"), "{}", text(&cli));

    cluster.kill(0);
    cluster.spawn(0);
    cluster.wait_ready();
    assert_eq!(cluster.values(0, "wide"), ["v"]);
    let log = std::fs::read_to_string(cluster.log(0)).unwrap();
    assert!(!log.contains("does not decode"), "{log}");
}

/// Item 4: forged `Store`, `Repair`, `StoreAck` and hints are refused: from a stranger on a
/// secured cluster (no peer link without the secret, no peer frame on a client's or an admin's
/// connection), and on an open node a frame "from n2" on the link of n3.
#[test]
fn item4_frames_claiming_another_sender_are_refused() {
    let cluster = Cluster::start(3, true, &[]);
    cluster.put(0, "cart", "acknowledged");
    let mut forged = dynamo_node::version::KeyVersions::new();
    forged.put("n2.forged", &VClock::new(), b"forged".to_vec(), false, 0);
    let store = |hint: Option<&str>| Frame::Peer {
        from: "n2".into(),
        message: PeerMessage::Store {
            req: 1,
            key: b"cart".to_vec(),
            state: forged.clone(),
            hint: hint.map(Into::into),
        },
    };
    for frame in [
        store(None),
        store(Some("n3")),
        Frame::Peer {
            from: "n2".into(),
            message: PeerMessage::Repair {
                key: b"cart".to_vec(),
                state: forged.clone(),
            },
        },
        Frame::Peer {
            from: "n2".into(),
            message: PeerMessage::StoreAck {
                req: 1,
                owner: true,
            },
        },
    ] {
        for i in 0..3 {
            let refused = error_text(&as_stranger(&cluster.addrs[i], &frame));
            assert!(refused.contains("not its peer link"), "{refused}");
        }
    }
    // An admin's connection is not a peer link either.
    let addr = cluster.addrs[0].clone();
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    let frame = store(None);
    let closed = runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut conn = Conn::new(stream, &Budget::unbounded(), wire::FRAME_BYTES_MAX).unwrap();
        dial_handshake(
            &mut conn,
            Role::Admin,
            "",
            secret.expose(),
            [3; NONCE_BYTES],
            None,
        )
        .await
        .unwrap();
        conn.send(&frame).await.unwrap();
        conn.next_frame().await
    });
    assert!(
        matches!(&closed, Some(Ok(Frame::Error { message })) if message.contains("not its peer link")),
        "{closed:?}"
    );
    sleep(Duration::from_millis(1_500));
    for i in 0..3 {
        assert_eq!(cluster.values(i, "cart"), ["acknowledged"], "n{}", i + 1);
    }

    // An open node binds a peer to the name it proved: n3's link cannot speak for n2.
    let open = Cluster::start(3, false, &[]);
    open.put(0, "cart", "acknowledged");
    let addr = open.addrs[0].clone();
    let frame = store(None);
    let closed = runtime().block_on(async move {
        let mut conn = as_open_peer(&addr, "n3").await;
        conn.send(&frame).await.unwrap();
        conn.next_frame().await
    });
    assert!(
        matches!(&closed, Some(Ok(Frame::Error { message })) if message.contains("speaks only for itself")),
        "{closed:?}"
    );
    sleep(Duration::from_millis(1_500));
    assert_eq!(open.values(1, "cart"), ["acknowledged"]);
}

/// Item 6: puts that would make a key's siblings outgrow a frame are refused with a clear error
/// and logged; the key is still readable, and peer links and other keys are unaffected.
#[test]
fn item6_a_key_never_outgrows_the_frame() {
    let cluster = Cluster::start(3, false, &[]);
    let addr = cluster.addrs[0].clone();
    let refused = runtime().block_on(async move {
        let mut client = Client::new(TokioEnv::default(), addr).with_timeout_ms(10_000);
        for i in 0..10u8 {
            if let Err(e) = client
                .put(
                    b"big",
                    vec![b'a' + i; wire::VALUE_BYTES_MAX],
                    &Context::blind(),
                )
                .await
            {
                return e.to_string();
            }
        }
        panic!("ten 1 MiB siblings accepted");
    });
    assert!(
        refused.contains("Overloaded") && refused.contains("more than"),
        "{refused}"
    );
    let log = std::fs::read_to_string(cluster.log(0)).unwrap();
    assert!(log.contains("put refused"), "logged");
    for i in 0..30 {
        cluster.put(i % 3, &format!("other-{i}"), "x");
    }
    sleep(Duration::from_secs(3));
    let out = cluster.cli(1, &["get", "big"]);
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..30 {
        assert_eq!(cluster.values((i + 1) % 3, &format!("other-{i}")), ["x"]);
    }
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Item 7: connections that declare large frames and send most of them cost what they sent, up
/// to the budgets, not what they declared; idle connections cannot lock clients out.
#[test]
fn item7_memory_is_bounded_and_idle_connections_do_not_lock_clients_out() {
    let cluster = Cluster::start(1, true, &["--n", "1", "--r", "1", "--w", "1"]);
    let pid = cluster.pid(0);
    let before = rss_bytes(pid);
    let mut held = Vec::new();
    let almost = vec![0u8; FIRST_FRAME_BYTES_MAX - 1];
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&cluster.addrs[0]).unwrap();
        stream
            .write_all(&(FIRST_FRAME_BYTES_MAX as u32).to_be_bytes())
            .unwrap();
        let _ = stream.write_all(&almost);
        held.push(stream);
    }
    // An 8 MiB frame before the connection said who it is is refused at its header.
    let mut big = TcpStream::connect(&cluster.addrs[0]).unwrap();
    big.write_all(&(wire::FRAME_BYTES_MAX as u32).to_be_bytes())
        .unwrap();
    assert!(error_text(&read_raw(&mut big)).contains("exceeds"));
    sleep(Duration::from_millis(500));
    let after = rss_bytes(pid);
    eprintln!("RSS before {before} after 300 large partial frames {after}");
    // 64 pending connections of at most 2 MiB each live, the rest evicted, all of it within the
    // budget of inbound bytes (the allocator may keep what the evicted ones freed): far from the
    // 600 MB the frames declared, and the 9.6 GB of the issue's 1,024 8 MiB frames.
    // The slack is for what the allocator keeps of freed buffers: the full test suite, run
    // alongside, once measured 348 MB of growth here against a 256 MiB budget.
    let budget = dynamo_node::shell::INBOUND_BYTES_MAX as u64;
    assert!(
        after < before + budget + 128 * 1024 * 1024,
        "{before} -> {after}"
    );
    drop(held);

    let idle: Vec<TcpStream> = (0..1_100)
        .map(|_| TcpStream::connect(&cluster.addrs[0]).unwrap())
        .collect();
    sleep(Duration::from_millis(300));
    cluster.put(0, "still-served", "yes");
    assert_eq!(cluster.values(0, "still-served"), ["yes"]);
    drop(idle);
}

/// Item 7, busy clients: on an open node (no secret) anonymous connections may use the admin
/// verbs, but they are clients' traffic and count against the clients' budget, not the 32 admin
/// slots: 100 clients at once, each keeping its connection, are all served (`dynamo bench
/// --clients 64` against three open nodes had most of its requests cut off as "too many
/// connections").
#[test]
fn item7_many_anonymous_clients_of_an_open_node_are_all_served() {
    let cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    runtime().block_on(async {
        let mut clients: Vec<Client<TokioEnv>> = (0..100)
            .map(|_| Client::new(TokioEnv::default(), cluster.addrs[0].clone()))
            .collect();
        for client in &mut clients {
            client.get(b"k").await.expect("a first request");
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let got = client.get(b"k").await;
            assert!(got.is_ok(), "client {i} on its kept connection: {got:?}");
        }
    });
}

/// Item 7, the other direction: a client that pipelines reads of a 1 MiB value and reads none
/// of its answers holds at most its connection's share of replies, not the answers to all its
/// requests (four such connections took a real node to 3.3 GB before the bound). The node goes
/// on serving, and the value still reads back.
#[test]
fn item7_unread_answers_are_bounded() {
    let cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    let pid = cluster.pid(0);
    let mut stream = TcpStream::connect(&cluster.addrs[0]).unwrap();
    let value = vec![b'x'; wire::VALUE_BYTES_MAX];
    let put = Frame::Request {
        id: 0,
        request: Request::Put {
            key: b"big".to_vec(),
            value: value.clone(),
            tombstone: false,
            context: VClock::new(),
            context_mac: None,
        },
    };
    send_raw(&mut stream, &wire::encode(&put).unwrap());
    assert!(matches!(
        read_raw(&mut stream),
        Some(Frame::Response { .. })
    ));
    let before = rss_bytes(pid);
    let mut gets = Vec::new();
    for id in 1..=300u64 {
        let body = wire::encode(&Frame::Request {
            id,
            request: Request::Get {
                key: b"big".to_vec(),
            },
        })
        .unwrap();
        gets.extend((body.len() as u32).to_be_bytes());
        gets.extend(body);
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&cluster.addrs[0]).unwrap();
        stream.write_all(&gets).unwrap();
        held.push(stream);
    }
    let mut peak = 0;
    for _ in 0..10 {
        sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes(pid));
    }
    eprintln!("RSS before {before}, peak with 1,200 unread 1 MiB answers {peak}");
    // Each connection holds at most CONNECTION_OUTBOUND_BYTES_MAX of answers (16 MiB), against
    // the 1.2 GB the answers weigh; the slack is for the allocator and the frames in transit.
    assert!(peak < before + 300 * 1024 * 1024, "{before} -> {peak}");
    drop(held);
    let out = cluster.cli(0, &["get", "big"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&"x".repeat(1024)));
}

/// Item 8: a frame with bytes after its end is refused, and closes only its connection.
#[test]
fn item8_trailing_bytes_are_refused() {
    let cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    cluster.put(0, "k", "v");
    let mut body = wire::encode(&Frame::Request {
        id: 1,
        request: Request::Get { key: b"k".to_vec() },
    })
    .unwrap();
    body.extend(
        wire::encode(&Frame::Request {
            id: 2,
            request: Request::Leave,
        })
        .unwrap(),
    );
    let mut stream = TcpStream::connect(&cluster.addrs[0]).unwrap();
    send_raw(&mut stream, &body);
    assert!(error_text(&read_raw(&mut stream)).contains("after its end"));
    assert!(read_raw(&mut stream).is_none(), "closed");
    assert_eq!(cluster.values(0, "k"), ["v"]);
    assert_eq!(cluster.ring(0).1, 1);
}

/// Item 9: a second process on a running node's data directory refuses to start, naming the
/// directory; a node started with another id on a directory refuses, naming both.
#[test]
fn item9_one_process_per_data_directory_and_one_node_per_identity() {
    let mut cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    cluster.put(0, "k", "v");
    let dir = cluster.dirs[0].path().display().to_string();
    let second = Command::new(DYNAMO)
        .args(["serve", "--id", "n1", "--n", "1", "--r", "1", "--w", "1"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--data-dir", &dir])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        text(&second).contains(&dir) && text(&second).contains("in use"),
        "{}",
        text(&second)
    );
    assert_eq!(cluster.values(0, "k"), ["v"], "the first goes on");

    cluster.kill(0);
    let other = Command::new(DYNAMO)
        .args(["serve", "--id", "n2", "--n", "1", "--r", "1", "--w", "1"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--data-dir", &dir])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    let message = text(&other);
    assert!(
        message.contains("node n1") && message.contains("n2 of cluster"),
        "{message}"
    );
    cluster.spawn(0);
    cluster.wait_ready();
    assert_eq!(cluster.values(0, "k"), ["v"]);
}

/// Runs `dynamo serve ARGS` with a data directory that must stay unwritten; returns the output.
fn serve_refused(args: &[&str], data_dir: &Path) -> Output {
    let out = Command::new(DYNAMO)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DYNAMO_CLUSTER_SECRET_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    out
}

/// Item 10: the CLI's checks, each a clear message and exit 2, with nothing written.
#[test]
fn item10_the_cli_refuses_bad_options_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("never-created");
    let listen = format!("127.0.0.1:{}", free_port());
    let own = format!("n2={listen}");
    for (extra, expected) in [
        (
            &["--listen", &listen, "--peers", "n2="][..],
            "has no address",
        ),
        (
            &["--listen", &listen, "--peers", "n2=notanaddr"],
            "is not host:port",
        ),
        (&["--listen", &listen, "--peers", &own], "own address"),
        (
            &["--listen", &listen, "--n", "5", "--r", "5", "--w", "5"],
            "exceeds the 1 member",
        ),
        (
            &[
                "--listen",
                "0.0.0.0:7101",
                "--n",
                "1",
                "--r",
                "1",
                "--w",
                "1",
            ],
            "not a loopback",
        ),
    ] {
        let args: Vec<&str> = ["--id", "n1"].iter().chain(extra).copied().collect();
        let out = serve_refused(&args, &fresh);
        assert!(text(&out).contains(expected), "{extra:?}: {}", text(&out));
        assert!(!fresh.exists(), "{extra:?} wrote the data directory");
    }
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = serve_refused(&["--id", "n1", "--n", "1", "--r", "1", "--w", "1"], &file);
    let message = text(&out);
    assert!(
        message.contains(&file.display().to_string()) && message.contains("not a directory"),
        "{message}"
    );

    // A join to nobody gives up with a clear error, and writes nothing.
    let start = Instant::now();
    let unreachable = format!("127.0.0.1:{}", free_port());
    let out = serve_refused(
        &[
            "--id",
            "n4",
            "--listen",
            &listen,
            "--join",
            &unreachable,
            "--request-timeout-ms",
            "200",
        ],
        &fresh,
    );
    assert!(text(&out).contains("cannot join"), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(!fresh.exists());
    // ... and a join obeys shutdown.
    let mut joining = Command::new(DYNAMO)
        .args([
            "serve",
            "--id",
            "n4",
            "--listen",
            &listen,
            "--join",
            &unreachable,
        ])
        .arg("--data-dir")
        .arg(&fresh)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &joining.id().to_string()])
        .status()
        .unwrap();
    joining.wait().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "SIGTERM during a join"
    );
    assert!(!fresh.exists());
}

/// Item 10 for the harness's own commands: options past their bounds are refused before a run
/// starts or a folder is written. `sim --think-ms 99999999999` ran until killed (every client
/// paused for three years of simulated time, a tick at a time), and `live --time-limit 0s` ran
/// the clients for the nemesis's first tick and called it a run.
#[test]
fn item10_sim_and_live_refuse_options_past_their_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out_arg = out.display().to_string();
    for (args, expected) in [
        (&["sim", "--think-ms", "99999999999"][..], "--think-ms"),
        (&["sim", "--quiesce-ms", "99999999999999"], "--quiesce-ms"),
        (&["live", "--time-limit", "0s"], "--time-limit"),
    ] {
        // Under `timeout`, so that a run that never ends fails the test (exit 124) instead of
        // holding CI.
        let output = Command::new("timeout")
            .args(["60", DYNAMO])
            .args(args)
            .args(["--out", &out_arg])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
        assert!(!out.exists(), "{args:?} wrote its folder");
    }
}

/// Node `i`'s actor id, from its status (as an admin).
fn actor(cluster: &Cluster, i: usize) -> String {
    let secret = cluster
        .secret
        .as_deref()
        .map(|p| Secret::from_file(p).unwrap());
    let addr = cluster.addrs[i].clone();
    runtime().block_on(async move {
        let mut admin = Client::new(TokioEnv::default(), addr).with_auth(ClientAuth::admin(secret));
        admin.status().await.expect("status").actor
    })
}

/// One node's raw sibling values of a key (`dynamo state`), sorted.
fn stored_values(cluster: &Cluster, i: usize, key: &str) -> Vec<String> {
    let out = cluster.cli(i, &["state", key]);
    assert!(out.status.success(), "state {key}: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut values: Vec<String> = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap_or_default().to_string())
        .collect();
    values.sort();
    values
}

/// Signed contexts, on real processes: the audit's repro. A put's context was taken on trust:
/// with n2 killed (-9), `dynamo put k5 evil --context <n2's actor>=1000` through n1 was stored on
/// n1 and n3; n2 restarted and acknowledged a blind put of "good" at counter 1 of its actor, and
/// seconds later every replica held only "evil". A node with a cluster secret now refuses a
/// context it did not sign (made up, altered, old text without its MAC, a wide one that would
/// lock the key), and the blind put is kept; the CLI's read-modify-write through other nodes
/// carries the MAC in the context's text.
#[test]
fn forged_contexts_are_refused_and_an_acknowledged_write_is_kept() {
    let mut cluster = Cluster::start(3, true, &[]);
    let n2 = actor(&cluster, 1);
    cluster.kill(1);
    let forged = format!("{n2}=1000");
    let made_up = format!("{n2}=1000#{}", "00".repeat(16));
    for context in [&forged, &made_up] {
        let out = cluster.cli_as(0, false, &["put", "k5", "evil", "--context", context]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("the context was not issued by this cluster"),
            "{}",
            text(&out)
        );
    }
    cluster.spawn(1);
    cluster.wait_ready();
    let out = cluster.cli_as(1, false, &["put", "k5", "good"]);
    assert!(out.status.success(), "{}", text(&out));
    sleep(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(cluster.values(i, "k5"), ["good"], "n{}", i + 1);
        assert_eq!(stored_values(&cluster, i, "k5"), ["good"], "n{}", i + 1);
    }

    // A context of 4,095 made-up actors would fill the key's clock and lock it.
    let wide: String = (0..4_095)
        .map(|i| format!("a{i:05}=1"))
        .collect::<Vec<_>>()
        .join(",");
    let out = cluster.cli_as(0, false, &["put", "k5", "lock", "--context", &wide]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not issued by this cluster"),
        "{}",
        text(&out)
    );

    // Read through n1, write through n3 with the context as `dynamo get` printed it: it works;
    // the same clock without its MAC (the old text form) does not.
    let out = cluster.cli_as(0, false, &["get", "k5"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let context = v["context"].as_str().unwrap().to_string();
    let (clock, mac) = context.split_once('#').expect("a signed context");
    assert_eq!(mac.len(), 32, "{context}");
    let out = cluster.cli_as(2, false, &["put", "k5", "old text", "--context", clock]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not issued by this cluster"),
        "{}",
        text(&out)
    );
    let out = cluster.cli_as(2, false, &["put", "k5", "better", "--context", &context]);
    assert!(out.status.success(), "{}", text(&out));
    // The context a put prints is signed too: a delete through n2 takes it.
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = printed["context"].as_str().unwrap().to_string();
    let out = cluster.cli_as(1, false, &["delete", "k5", "--context", &after]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(cluster.values(0, "k5").is_empty(), "deleted");
}

/// The damaged disk, checksums intact: a stopped node's data file holds a record of a key whose
/// state no node could have written (its sibling has no dot), under a good crc. The node used to
/// start, and panic ("dotted state", `KeyVersions::merge`) at the first write of the key a peer
/// sent it, on every restart. It now treats the state as damage: drops the key, which the other
/// replicas refill, and keeps serving; the newest write is readable through it.
#[test]
fn a_stored_state_no_node_could_write_is_dropped_not_merged() {
    use dynamo_node::store::keyspace::ReadState;

    let mut cluster = Cluster::start(3, false, &[]);
    cluster.put(0, "k", "v1");
    cluster.kill(0);
    {
        let mut keyspace = stopped_node_keyspace(cluster.dirs[0].path());
        let mut state = keyspace.read_state(b"k").unwrap();
        assert!(!state.siblings.is_empty(), "n1 stored k");
        for sibling in &mut state.siblings {
            sibling.dot = None;
        }
        keyspace.write_state(b"k", state).unwrap();
        keyspace.sync().unwrap();
    }
    cluster.spawn(0);
    cluster.wait_ready();
    // A read-modify-write through n2: its put reaches n1, which merges it into what it stored.
    let out = cluster.cli(1, &["get", "k"]);
    assert!(out.status.success(), "{}", text(&out));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let context = read["context"].as_str().unwrap().to_string();
    let out = cluster.cli(1, &["put", "k", "v2", "--context", &context]);
    assert!(out.status.success(), "{}", text(&out));
    sleep(Duration::from_millis(1_000));
    let exited = cluster.procs[0].as_mut().unwrap().try_wait().unwrap();
    assert!(
        exited.is_none(),
        "n1 exited ({exited:?}): {}",
        std::fs::read_to_string(cluster.log(0)).unwrap_or_default()
    );
    assert_eq!(cluster.values(0, "k"), ["v2"]);
    let log = std::fs::read_to_string(cluster.log(0)).unwrap();
    assert!(log.contains("no node could write"), "{log}");
}

/// A peer's `Store` with a hint and a key no client could send (empty, or past the key limit and
/// the log's record key limit): the hint's record could not be written, and the failed write
/// stopped the node ("storing a hint: key of ... bytes is over the limit"), as a failing disk
/// does. The key is now refused like that of a `Store` without a hint; the node serves on.
#[test]
fn a_hint_for_a_key_no_client_could_send_is_refused() {
    use dynamo_node::version::KeyVersions;

    let mut cluster = Cluster::start(3, false, &[]);
    cluster.put(0, "before", "v1");
    let addr = cluster.addrs[0].clone();
    runtime().block_on(async move {
        let mut conn = as_open_peer(&addr, "n2").await;
        for (req, len) in [(1, 0), (2, wire::KEY_BYTES_MAX + 1), (3, 64 * 1024 + 1)] {
            let message = PeerMessage::Store {
                req,
                key: vec![b'x'; len],
                state: KeyVersions::new(),
                hint: Some("n3".into()),
            };
            conn.send(&Frame::Peer {
                from: "n2".into(),
                message,
            })
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    });
    let exited = cluster.procs[0].as_mut().unwrap().try_wait().unwrap();
    assert!(
        exited.is_none(),
        "n1 exited ({exited:?}): {}",
        std::fs::read_to_string(cluster.log(0)).unwrap_or_default()
    );
    cluster.put(0, "after", "v2");
    assert_eq!(cluster.values(0, "before"), ["v1"]);
    assert_eq!(cluster.values(0, "after"), ["v2"]);
    // Nothing was kept for n3 from those frames.
    let status = cluster.cli(0, &["status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["hints_pending"], 0, "{status}");
}

/// The disk, a directory where the node keeps a file: each of its files replaced by a directory
/// (as a botched restore or an operator's mistake leaves it), the node refuses to start with a
/// message naming the path. `ACTOR` and `LOCK` used to give only "node failed: Is a directory
/// (os error 21)". With the files back, the node starts and the key is there.
#[test]
fn a_directory_where_a_file_should_be_is_named_in_the_refusal() {
    let mut cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    cluster.put(0, "k", "v");
    cluster.kill(0);
    let dir = cluster.dirs[0].path().to_path_buf();
    let data_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| name.ends_with(".data"))
        .expect("a data file");
    for name in ["ACTOR", "LOCK", "MANIFEST", "IDENTITY", "LOSS", &data_file] {
        let path = dir.join(name);
        let aside = dir.join(format!("{name}.aside"));
        let existed = path.exists();
        if existed {
            std::fs::rename(&path, &aside).unwrap();
        }
        std::fs::create_dir(&path).unwrap();
        let mut child = Command::new(DYNAMO)
            .args(cluster.serve_args(0))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("n1 started with a directory as its {name}");
            }
            sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&path.display().to_string()),
            "{name}: the refusal does not name the path: {stderr}"
        );
        std::fs::remove_dir(&path).unwrap();
        if existed {
            std::fs::rename(&aside, &path).unwrap();
        }
    }
    cluster.spawn(0);
    cluster.wait_ready();
    assert_eq!(cluster.values(0, "k"), ["v"]);
}

/// The damaged disk, checksums intact: a stopped node's data file holds hint records no node
/// could have written: one "for" the node itself, one for a node nobody knows, one of an empty
/// key. The node sent the first to itself at its first hint round (a debug build panicked and
/// the node stopped; a release build sent it to nowhere at every round, for ever), and the
/// others to nowhere or to an owner that refused them, for ever. It now takes the first two
/// into its own state and drops the third; it keeps serving, and their write reads back.
#[test]
fn hints_on_disk_no_node_could_have_written_do_not_stop_the_node() {
    use dynamo_node::store::keyspace::ReadState;

    let mut cluster = Cluster::start(3, false, &[]);
    cluster.put(0, "k", "v1");
    cluster.kill(0);
    {
        let mut keyspace = stopped_node_keyspace(cluster.dirs[0].path());
        let state = keyspace.read_state(b"k").unwrap();
        assert!(!state.siblings.is_empty(), "n1 stored k");
        for (owner, key) in [
            ("n1", &b"self-key"[..]),
            ("nobody", b"stranger-key"),
            ("n2", b""),
        ] {
            keyspace.write_hint(owner, key, Some(&state)).unwrap();
        }
        keyspace.sync().unwrap();
    }
    cluster.spawn(0);
    cluster.wait_ready();
    sleep(Duration::from_millis(2_000));
    let exited = cluster.procs[0].as_mut().unwrap().try_wait().unwrap();
    assert!(
        exited.is_none(),
        "n1 exited ({exited:?}): {}",
        std::fs::read_to_string(cluster.log(0)).unwrap_or_default()
    );
    for key in ["k", "self-key", "stranger-key"] {
        assert_eq!(cluster.values(1, key), ["v1"], "{key}");
    }
    let status = cluster.cli(0, &["status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["hints_pending"], 0, "{status}");
}

/// Waits (10 s at most) for `child` to exit; its exit code and stderr, or `None` if it runs on
/// (then it is killed).
fn exit_of(mut child: Child) -> Option<(Option<i32>, String)> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return Some((status.code(), stderr));
        }
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        sleep(Duration::from_millis(50));
    }
}

/// A node started with another `--partitions` than its cluster's ring: restarted on a data
/// directory whose saved ring has 64 partitions, n1 refused that ring without a word beyond a
/// warning ("a ring no node could have made") and served on a ring of its own, of 128
/// partitions and version 1, for good: it refused every ring its peers gossiped, and they its
/// own, so it routed its clients' keys to replicas no other node agreed on. A node joining with
/// another count was added to the seed's ring, then refused that ring the same way. Both now
/// refuse to start, saying which count the cluster has, before the ring changes; with the
/// right count, n1 starts and its key reads back.
#[test]
fn a_node_with_another_partition_count_than_its_cluster_refuses_to_start() {
    let mut cluster = Cluster::start(3, false, &[]);
    cluster.put(0, "k", "v");
    // A ring change, so that n1 saves the ring it adopts.
    let left = cluster.cli(2, &["leave"]);
    assert!(left.status.success(), "{}", text(&left));
    let start = Instant::now();
    while cluster.ring(0).1 != 2 {
        assert!(start.elapsed() < Duration::from_secs(15));
        sleep(Duration::from_millis(200));
    }
    cluster.kill(0);
    let started = Command::new(DYNAMO)
        .args(cluster.serve_args(0))
        .args(["--partitions", "128"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = exit_of(started).expect("n1 started with 128 partitions");
    assert_eq!(code, Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("--partitions 64"), "{stderr}");

    // A new node joining through n2 with 128 partitions.
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let joining = Command::new(DYNAMO)
        .args(["serve", "--id", "n4", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .args(["--join", &cluster.addrs[1], "--partitions", "128"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = exit_of(joining).expect("n4 joined with 128 partitions");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--partitions 64"), "{stderr}");
    let (members, _) = cluster.ring(1);
    assert!(!members.contains(&"n4".to_string()), "{members:?}");

    cluster.spawn(0);
    cluster.wait_ready();
    assert_eq!(cluster.values(0, "k"), ["v"]);
}

/// The keyspace of a stopped node's data directory, opened as the node would, for a test to
/// read or damage under good checksums.
fn stopped_node_keyspace(dir: &Path) -> Keyspace<LogStore<StdFs>> {
    let options = LogOptions {
        max_file_bytes: 64 * 1024 * 1024,
    };
    let (log, _) = LogStore::open(StdFs, dir, options, || 1).expect("open the stopped node's log");
    Keyspace::new(log)
}

/// A peer's connections past its share: a link that keeps going silent (a lossy route: turmoil
/// and a real network alike) re-dials every second or so, and the node kept each of the dead
/// connections it left behind until it idled out (one to two minutes); a peer with a bug, or
/// anyone who holds the secret, can open them on purpose. Past [`PEER_CONNECTIONS_MAX`] of them
/// the node refused every new peer connection, the real peers' re-dials included: here n2,
/// restarted, could not link to n1 again, its acknowledgements never reached n1, and every put
/// through n1 failed. A node now keeps at most [`PEER_CONNECTIONS_PER_NODE_MAX`] connections per
/// peer: a newcomer closes the least recently active connection of the same peer.
#[test]
fn a_peers_stale_connections_cannot_lock_the_real_links_out() {
    use dynamo_node::shell::{PEER_CONNECTIONS_MAX, PEER_CONNECTIONS_PER_NODE_MAX};
    let mut cluster = Cluster::start(2, false, &["--n", "2", "--r", "2", "--w", "2"]);
    cluster.put(0, "before", "v");
    // The real n2 stops; its link's slot goes to one more stale connection, and n2 comes back.
    cluster.kill(1);
    sleep(Duration::from_millis(300));
    let addr = cluster.addrs[0].clone();
    let held = runtime().block_on(async move {
        let mut held = Vec::new();
        // More than the class holds (the node refuses the last ones).
        for _ in 0..PEER_CONNECTIONS_MAX + 2 {
            held.push(as_open_peer(&addr, "n2").await);
        }
        held
    });
    cluster.spawn(1);
    // Not `wait_ready`: its reads through n1 need n2's answers, which come on n2's link.
    let start = Instant::now();
    loop {
        let out = cluster.cli(0, &["put", "after", "v"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(STARTUP_TIMEOUT_MS),
            "n2's link to n1 was refused: {}",
            text(&out)
        );
        sleep(Duration::from_millis(200));
    }
    assert_eq!(cluster.values(0, "after"), ["v"]);
    // Room for the real links beside one peer's share.
    const { assert!(PEER_CONNECTIONS_PER_NODE_MAX < PEER_CONNECTIONS_MAX) };
    drop(held);
}

/// A stranger's connections that end at their first frame: on a node with a cluster secret and
/// no client token (anyone may get and put), a connection whose first frame is an admin request
/// is answered "an admin request needs the cluster secret" and closed. The driver had been told
/// of the connection (its reply queue) and was never told it closed: each such connection left
/// its queue behind for good, some kilobytes, and a stranger's loop of them grew the node
/// without bound (40,000 took it up by hundreds of megabytes). Every connection the driver was
/// told of now tells it when it closes, however it ends.
#[test]
fn connections_refused_at_their_first_request_leave_nothing_behind() {
    let cluster = Cluster::start(1, true, &["--n", "1", "--r", "1", "--w", "1"]);
    let pid = cluster.pid(0);
    let status = wire::encode(&Frame::Request {
        id: 1,
        request: Request::Status,
    })
    .unwrap();
    let open_and_refuse = |count: usize| {
        for _ in 0..count {
            let mut stream = TcpStream::connect(&cluster.addrs[0]).unwrap();
            send_raw(&mut stream, &status);
            assert!(error_text(&read_raw(&mut stream)).contains("secret"));
        }
    };
    // The allocator's pools warm up first.
    open_and_refuse(2_000);
    let before = rss_bytes(pid);
    open_and_refuse(40_000);
    let after = rss_bytes(pid);
    eprintln!("RSS before {before} after 40,000 refused connections {after}");
    assert!(after < before + 32 * 1024 * 1024, "{before} -> {after}");
    cluster.put(0, "still-served", "yes");
}

/// Hostile round 4, the damaged disk on a real process: a stopped node's older data file copied
/// in under a newer id (a restore that mixed up files), every byte of it intact. The node
/// replayed it last without a word: `k` read back as `v1`, although `v2` had been acknowledged
/// over it, and the node kept its actor id, whose counter 2 for `k` it would have issued again.
/// The copy's first record names the file it was copied from: the node now skips it as damage,
/// names it, takes a new actor id, and `v2` reads back.
#[test]
fn an_older_data_file_copied_in_under_a_newer_id_replays_nothing() {
    let mut cluster = Cluster::start(1, false, &["--n", "1", "--r", "1", "--w", "1"]);
    cluster.put(0, "k", "v1");
    cluster.kill(0);
    let dir = cluster.dirs[0].path().to_path_buf();
    let first = dir.join("000001.data");
    let old = std::fs::read(&first).unwrap();
    cluster.spawn(0);
    cluster.wait_ready();
    let out = cluster.cli(0, &["get", "k"]);
    assert!(out.status.success(), "{}", text(&out));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let context = read["context"].as_str().unwrap().to_string();
    let out = cluster.cli(0, &["put", "k", "v2", "--context", &context]);
    assert!(out.status.success(), "{}", text(&out));
    let before = actor(&cluster, 0);
    cluster.kill(0);
    std::fs::write(dir.join("000002.data"), &old).unwrap();
    cluster.spawn(0);
    cluster.wait_ready();
    assert_eq!(cluster.values(0, "k"), ["v2"], "the acknowledged write");
    assert_ne!(actor(&cluster, 0), before, "a new actor id");
    let log = std::fs::read_to_string(cluster.log(0)).unwrap();
    assert!(
        log.contains("names another data file") && log.contains("000002.data"),
        "{log}"
    );
}

/// A stranger cannot stop a node by taking its file descriptors. Found by the attack of
/// 2026-12-02: under an open-file limit of 1,024, 1,010 anonymous connections (each a client
/// after one get) left no descriptor for the log's next data file, and the node stopped as on
/// a failed disk ("Too many open files"). `dynamo serve` now raises its soft limit to the hard
/// one and serves only as many clients as the limit leaves room for, evicting the least
/// recently active past it. Here the hard limit is 800: room for 64 clients.
#[test]
fn a_connection_flood_under_a_low_open_file_limit_does_not_stop_the_node() {
    // This process opens ~850 sockets too: its own soft limit up to its hard one.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one `rlimit` on this stack frame.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = logs.path().join("n1.log");
    /// Kills the node however the test ends (a failed assertion too).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 800 && exec \"$0\" \"$@\"")
        .arg(DYNAMO)
        .args(["serve", "--id", "n1", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .args(["--n", "1", "--r", "1", "--w", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .map(Killed)
        .unwrap();
    let start = Instant::now();
    let get = wire::encode(&Frame::Request {
        id: 1,
        request: Request::Get { key: b"x".to_vec() },
    })
    .unwrap();
    let first = loop {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            send_raw(&mut s, &get);
            if read_raw(&mut s).is_some() {
                break s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_millis(STARTUP_TIMEOUT_MS),
            "the node did not come up: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        sleep(Duration::from_millis(100));
    };
    drop(first.shutdown(std::net::Shutdown::Both));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log().contains("fewer client connections"), "{}", log());
    // The flood: 850 connections, each a client after one get, all kept open.
    let mut flood = Vec::new();
    for _ in 0..850 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            continue;
        };
        if s.write_all(&(get.len() as u32).to_be_bytes()).is_ok() && s.write_all(&get).is_ok() {
            flood.push(s);
        }
    }
    // Then 70 puts of 1 MiB through a fresh connection: the log rolls to a new data file.
    let value = vec![b'v'; wire::VALUE_BYTES_MAX];
    let mut acked = 0;
    let mut writer = TcpStream::connect(&addr).unwrap();
    for id in 0..70u64 {
        let put = Frame::Request {
            id,
            request: Request::Put {
                key: format!("big-{id}").into_bytes(),
                value: value.clone(),
                tombstone: false,
                context: VClock::new(),
                context_mac: None,
            },
        };
        send_raw(&mut writer, &wire::encode(&put).unwrap());
        if matches!(read_raw(&mut writer), Some(Frame::Response { .. })) {
            acked += 1;
        }
    }
    drop(flood);
    assert_eq!(acked, 70, "{}", log());
    assert!(
        node.0.try_wait().unwrap().is_none(),
        "the node stopped: {}",
        log()
    );
    assert!(!log().contains("Too many open files"), "{}", log());
    let mut reader = TcpStream::connect(&addr).unwrap();
    send_raw(
        &mut reader,
        &wire::encode(&Frame::Request {
            id: 1,
            request: Request::Get {
                key: b"big-0".to_vec(),
            },
        })
        .unwrap(),
    );
    match read_raw(&mut reader) {
        Some(Frame::Response {
            response: Response::Get { siblings, .. },
            ..
        }) => assert_eq!(siblings.len(), 1),
        other => panic!("{other:?}"),
    }
    drop(node);
}

/// Connects as an anonymous client, is served one small request (so the node counts it a
/// client's), then sends the header of the largest frame a client may send and all of its body
/// but the last byte: what the node must buffer for it. `None` if the node refused the
/// connection (its class's budget spent).
fn client_holding_a_partial_frame(addr: &str, body_bytes: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).unwrap();
    let get = Frame::Request {
        id: 1,
        request: Request::Get { key: b"k".to_vec() },
    };
    send_raw(&mut stream, &wire::encode(&get).unwrap());
    match read_raw(&mut stream) {
        Some(Frame::Response { .. }) => {}
        _ => return None,
    }
    if body_bytes > 0 {
        let frame = wire::CLIENT_FRAME_BYTES_MAX;
        stream.write_all(&(frame as u32).to_be_bytes()).ok()?;
        stream
            .write_all(&vec![0u8; body_bytes.min(frame - 1)])
            .ok()?;
    }
    Some(stream)
}

/// Strangers' partial frames spend the clients' budget of inbound bytes, not the peers' or the
/// admins': the cluster goes on replicating. An attack on `dynamo serve` found that 140
/// anonymous connections each holding all but the last byte of a 2 MiB frame, topped up with
/// small ones, spent the node's one budget, shared by every class: every new connection was
/// refused, a peer's link too, until the idle timer closed the attacker's a minute later.
#[test]
fn partial_frames_of_strangers_leave_peers_and_admins_their_budget() {
    use dynamo_node::shell::{CLIENT_INBOUND_BYTES_MAX, INBOUND_BYTES_MAX};
    // R=1: the attacker's first gets are answered at once while n2 is down.
    let mut cluster = Cluster::start(2, true, &["--n", "2", "--r", "1", "--w", "2"]);
    cluster.put(0, "before", "v");
    // The peer is down while the budget is spent: it comes back and must link again.
    cluster.kill(1);
    let addr = cluster.addrs[0].clone();
    let mut held = Vec::new();
    // Enough large partial frames to spend the whole of the node's bytes (the old shared budget,
    // or the clients' own), then small connections until the node refuses one: what freed a
    // refused large one is spent too.
    let large = INBOUND_BYTES_MAX.max(CLIENT_INBOUND_BYTES_MAX) / wire::CLIENT_FRAME_BYTES_MAX + 8;
    for _ in 0..large {
        if let Some(stream) = client_holding_a_partial_frame(&addr, wire::CLIENT_FRAME_BYTES_MAX) {
            held.push(stream);
        }
    }
    let mut refused = false;
    for _ in 0..600 {
        match client_holding_a_partial_frame(&addr, 0) {
            Some(stream) => held.push(stream),
            None => {
                refused = true;
                break;
            }
        }
    }
    assert!(
        refused,
        "the attack spent the clients' budget ({} connections)",
        held.len()
    );
    // The operator is served, and the peer that comes back links again: a put at W=2 through
    // n1 needs both links.
    cluster.spawn(1);
    let start = Instant::now();
    loop {
        let out = cluster.cli(0, &["put", "during", "v"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(STARTUP_TIMEOUT_MS),
            "no put at W=2 while strangers hold the clients' budget: {}",
            text(&out)
        );
        sleep(Duration::from_millis(200));
    }
    assert_eq!(cluster.values(0, "during"), ["v"]);
    assert_eq!(cluster.values(0, "before"), ["v"]);
    drop(held);
}

/// Strangers who keep the class of connections still saying who they are full of partial first
/// frames, each reconnecting when evicted, lock nobody out: a newcomer's eviction of one of them
/// frees its bytes only when the evicted connection's task next runs, and the pending budget has
/// room for newcomers meanwhile. (Without that room an attack on `dynamo serve` had 98% of admin
/// `status` calls refused, and a node joining through the attacked seed gave up.)
#[test]
fn strangers_holding_every_pending_slot_lock_no_admin_out() {
    use dynamo_node::shell::PENDING_CONNECTIONS_MAX;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cluster = Cluster::start(1, true, &["--n", "1", "--r", "1", "--w", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..PENDING_CONNECTIONS_MAX)
        .map(|_| {
            let (addr, stop) = (cluster.addrs[0].clone(), stop.clone());
            std::thread::spawn(move || {
                let almost = vec![0u8; FIRST_FRAME_BYTES_MAX - 1];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(&addr) else {
                        continue;
                    };
                    let header = (FIRST_FRAME_BYTES_MAX as u32).to_be_bytes();
                    if stream.write_all(&header).is_err() || stream.write_all(&almost).is_err() {
                        continue;
                    }
                    // Held until the node closes it (evicted, or its handshake timed out).
                    stream
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut byte = [0u8; 1];
                    while !stop.load(Ordering::Relaxed) {
                        match stream.read(&mut byte) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    sleep(Duration::from_millis(1_500));
    let calls = 20;
    let served = (0..calls)
        .filter(|_| cluster.cli(0, &["status"]).status.success())
        .count();
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    assert!(
        served >= calls - 2,
        "{served} of {calls} admin status calls served while strangers held every pending slot"
    );
}

/// The damaged disk, a cold backup restored: n1 stopped cleanly and its data directory was copied;
/// n1 ran again and wrote, stopped, and the copy was put back. Its marker, start count and log
/// agree, so n1 kept its actor and issued again the dots it had issued after the copy, for other
/// values: the replicas that held the first write under a dot kept it and acknowledged the second,
/// which was lost (41 and 59 of 200 acknowledged puts, an attack of 2026-12-03). Every start now
/// takes a new actor: each put after the restore reaches the replicas as a version of its own.
#[test]
fn a_node_restored_from_a_cold_backup_loses_no_acknowledged_write() {
    // Anti-entropy off: run at the start, it refills the restored node before the puts come when
    // there are few keys to refill (the attack lost writes with 20,000 keys to refill).
    let mut cluster = Cluster::start(3, false, &["--no-anti-entropy"]);
    cluster.put(0, "seed", "s");
    cluster.stop(0);
    let backup = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(cluster.dirs[0].path(), backup.path());
    cluster.spawn(0);
    cluster.wait_ready();
    let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        cluster.put(0, key, &format!("{key}-after-the-backup"));
    }
    cluster.stop(0);
    for entry in std::fs::read_dir(cluster.dirs[0].path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    copy(backup.path(), cluster.dirs[0].path());
    cluster.spawn(0);
    cluster.wait_ready();
    for key in &keys {
        cluster.put(0, key, &format!("{key}-after-the-restore"));
    }
    // Each replica that acknowledged keeps both writes (two blind puts: siblings); wait for the
    // slower one, which may still be storing it.
    for key in &keys {
        let expected = [
            format!("{key}-after-the-backup"),
            format!("{key}-after-the-restore"),
        ];
        let start = Instant::now();
        for i in [1, 2] {
            loop {
                let stored = stored_values(&cluster, i, key);
                if stored == expected {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "n{}'s {key}: {stored:?}, not {expected:?}: the put after the restore was \
                     taken for the one before it",
                    i + 1
                );
                sleep(Duration::from_millis(100));
            }
        }
    }
}
