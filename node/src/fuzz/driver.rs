//! [`hammer`]: the long fuzz run's driver. It starts a real node on loopback, sends it the
//! generator's frames over many connections of every kind (clients, admins, a peer with the
//! secret, strangers), and checks that the node never stops, keeps every write it acknowledged and
//! keeps its ring.
//!
//! Its own module because it is the only part of the fuzzer with sockets, threads and a runtime;
//! the frames themselves come from [`FrameGen`], which needs none of them.

use super::FrameGen;
use crate::auth::{NONCE_BYTES, Role};
use crate::client::Context;
use crate::ring::NodeId;
use crate::wire::Frame;
use std::collections::BTreeMap;

/// Keys of [`hammer`]'s fuzzer besides the ones it checks: enough that blind writes spread
/// instead of piling the bounded number of siblings on a few keys.
const FUZZ_KEYS: usize = 1_024;
/// In [`hammer`], the very large shapes (megabyte values, 4,096-entry clocks) are made once in
/// this many draws: a few hundred per million frames.
const LARGE_ONE_IN: u64 = 20_000;

/// What a run of [`hammer`] did and saw.
#[derive(Clone, Debug, Default)]
pub struct HammerReport {
    /// Frames sent, all kinds of connection together.
    pub frames: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections the node closed with an error (a refused frame ends its connection).
    pub refused: u64,
    /// Handshakes with the secret that the node did not finish within 5 s: it was busy (its
    /// log's compaction runs on the node's one thread, and on a loaded machine takes seconds).
    /// A handshake with the secret that the node refuses fails the run.
    pub handshakes_timed_out: u64,
    /// Writes the node acknowledged during the run, all read back at the end.
    pub acked_writes: u64,
    /// The highest resident memory of the process seen, in bytes (the node and the fuzzer).
    pub rss_bytes_max: u64,
    /// Resident memory before the run.
    pub rss_bytes_start: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
}

/// Resident memory of this process, from `/proc/self/status` (0 where there is none).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Runs a real node (`shell::run` on loopback, its own thread and runtime, a cluster secret,
/// members n2 and n3 that never answer) and sends it `frames` hostile frames from `workers`
/// concurrent connections at a time: anonymous clients, admins and the peer n2 (all three with
/// the secret where they need it: a damaged peer, not a stranger), and strangers with damaged
/// frames and failed handshakes. Between batches it writes keys through an ordinary client and,
/// at the end, reads every write the node acknowledged back, and checks that the ring did not
/// move. Panics (with the seed) if the node stops, a write is lost, or the ring changed.
pub fn hammer(seed: u64, frames: u64, workers: usize, dir: &std::path::Path) -> HammerReport {
    use crate::auth::Secret;
    use crate::client::{Client, ClientAuth};
    use crate::config::{FsyncPolicy, NodeConfig};
    use crate::env::{Env, TokioEnv};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let secret = Secret::new(format!("fuzz-secret-{seed:016x}").into_bytes()).expect("long enough");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(TokioEnv::default().bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("bound").to_string();
    let unused = |i: u16| format!("127.0.0.1:{}", 1 + i);
    let members: BTreeMap<NodeId, String> = [
        ("n1".into(), addr.clone()),
        ("n2".into(), unused(0)),
        ("n3".into(), unused(1)),
    ]
    .into();
    let mut config = NodeConfig::new("n1", members);
    (config.n, config.r, config.w) = (3, 1, 1);
    config.request_timeout_ms = 200;
    config.repair_wait_ms = 200;
    config.fsync = FsyncPolicy::Interval { interval_ms: 100 };
    config.auth.cluster_secret = Some(secret.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node_dir = dir.to_path_buf();
    let node = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener.into_std().expect("std listener"))
                .expect("listener")
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(
            &rt,
            crate::shell::run(TokioEnv::default(), config, &node_dir, listener, async {
                let _ = stopped.await;
            }),
        )
    });

    let start = std::time::Instant::now();
    let rss_start = rss_bytes();
    let sent = Arc::new(AtomicU64::new(0));
    let report = runtime.block_on(async {
        let admin = || {
            Client::new(TokioEnv::default(), addr.clone())
                .with_auth(ClientAuth::admin(Some(secret.clone())))
        };
        // The node comes up (its status answers), and its ring is taken as the one to keep.
        let mut ring = None;
        for _ in 0..100 {
            if let Ok(status) = admin().status().await {
                ring = Some(status.ring);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let ring = ring.expect("the node came up");
        let keys: Vec<Vec<u8>> = (0..8)
            .map(|i| format!("acked-{i}").into_bytes())
            .chain((0..FUZZ_KEYS).map(|i| format!("f{i}").into_bytes()))
            .collect();
        let mut report = HammerReport {
            rss_bytes_start: rss_start,
            ..HammerReport::default()
        };
        let mut writer = Client::new(TokioEnv::default(), addr.clone()).with_timeout_ms(5_000);
        let mut acked: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut round = 0u64;
        while sent.load(Ordering::Relaxed) < frames {
            // A write the node acknowledges, to be read back at the end.
            let key = keys[(round % 8) as usize].clone();
            let value = format!("acked-{round}").into_bytes();
            if writer
                .put(&key, value.clone(), &Context::blind())
                .await
                .is_ok()
            {
                acked.push((key, value));
            }
            let tasks = (0..workers).map(|w| {
                let mut fgen = FrameGen::new(seed ^ (round << 20) ^ w as u64, keys.clone())
                    .with_large_one_in(LARGE_ONE_IN);
                let addr = addr.clone();
                let secret = secret.clone();
                let sent = sent.clone();
                async move { connection(&mut fgen, &addr, &secret, &sent).await }
            });
            for (opened, refused, timed_out) in futures::future::join_all(tasks).await {
                report.connections += opened;
                report.refused += refused;
                report.handshakes_timed_out += timed_out;
            }
            report.rss_bytes_max = report.rss_bytes_max.max(rss_bytes());
            round += 1;
            assert!(!node.is_finished(), "seed {seed}: the node stopped");
        }
        report.frames = sent.load(Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for (key, value) in &acked {
            let mut reader = Client::new(TokioEnv::default(), addr.clone()).with_timeout_ms(5_000);
            let got = reader.get(key).await;
            let kept = got
                .as_ref()
                .is_ok_and(|r| r.siblings.iter().any(|s| s.value == *value));
            assert!(
                kept,
                "seed {seed}: an acknowledged write to {key:?} is lost: {got:?}"
            );
        }
        report.acked_writes = acked.len() as u64;
        let now = admin().status().await.expect("status").ring;
        assert_eq!(now, ring, "seed {seed}: the ring changed");
        report
    });
    let _ = stop.send(());
    let served = node.join().expect("the node's thread did not panic");
    served.expect("the node stopped cleanly");
    HammerReport {
        elapsed_s: start.elapsed().as_secs_f64(),
        ..report
    }
}

/// One connection of the fuzzer: its kind, a batch of frames, and the answers drained. Returns
/// (connections opened, connections the node refused, handshakes with the secret timed out).
async fn connection(
    frames: &mut FrameGen,
    addr: &str,
    secret: &crate::auth::Secret,
    sent: &std::sync::atomic::AtomicU64,
) -> (u64, u64, u64) {
    use crate::conn::{Budget, Conn, dial_handshake};
    use std::sync::atomic::Ordering;
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, 0, 0);
    };
    let Ok(mut conn) = Conn::new(stream, &Budget::unbounded(), crate::wire::FRAME_BYTES_MAX) else {
        return (0, 0, 0);
    };
    // Kinds of connection: anonymous clients (0-2), an admin (3) and the peer n2 (4-7) send
    // well-formed frames with hostile values, which the node answers or ignores, so that their
    // connections stay open and most frames reach the core; strangers (8, 9) fail the
    // handshake or send damaged frames, which end their connections.
    let kind = frames.below(10);
    let nonce = [frames.next_u64() as u8; NONCE_BYTES];
    let (role, key): (Option<Role>, &[u8]) = match kind {
        0..=2 | 9 => (None, &[]),
        3 => (Some(Role::Admin), secret.expose()),
        4..=7 => (Some(Role::Peer { id: "n2".into() }), secret.expose()),
        _ => (Some(Role::Peer { id: "n3".into() }), b"wrong"),
    };
    if let Some(role) = role {
        let handshake = dial_handshake(&mut conn, role, "dynamo", key, nonce, None);
        let shaken = tokio::time::timeout(std::time::Duration::from_secs(5), handshake).await;
        if !matches!(shaken, Ok(Ok(_))) {
            sent.fetch_add(3, Ordering::Relaxed);
            if kind != 8 && shaken.is_err() {
                // The node was busy, not wrong: counted and reported.
                return (1, 0, 1);
            }
            assert!(kind == 8, "a handshake with the secret failed: {shaken:?}");
            return (1, 1, 0);
        }
    }
    let batch = 1 + if kind == 9 {
        frames.below(16)
    } else {
        frames.below(256)
    };
    let mut expected = 0u64;
    for _ in 0..batch {
        let frame = match kind {
            9 => frames.frame(),
            0..=3 => Frame::Request {
                id: frames.next_u64(),
                request: frames.data_request(),
            },
            _ if frames.below(50) == 0 => Frame::Ping {
                nonce: frames.next_u64(),
            },
            _ if frames.below(10) == 0 => Frame::Peer {
                from: "n2".into(),
                message: frames.hostile_ring_state(crate::ring::PARTITION_COUNT_DEFAULT),
            },
            _ => Frame::Peer {
                from: "n2".into(),
                message: frames.peer_message(false),
            },
        };
        let Ok(mut body) = crate::wire::encode(&frame) else {
            continue;
        };
        if kind == 9 {
            if frames.below(2) == 0 {
                frames.mutate(&mut body);
            }
        } else if crate::wire::decode(&body).is_err() {
            // A value the decoder refuses (a counter or an actor past its bound) ends the
            // connection; the strangers send those, the others keep their connections open.
            continue;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        conn.feed_body_unchecked(&body);
        if matches!(frame, Frame::Request { .. } | Frame::Ping { .. }) {
            expected += 1;
        }
        if conn.pending_write_bytes() >= crate::conn::WRITE_BUFFER_BYTES
            && conn.write_out().await.is_err()
        {
            break;
        }
    }
    if conn.flush().await.is_err() {
        return (1, 1, 0);
    }
    // Drain the answers (a node that finds its answers unread closes the connection); with none
    // to wait for, a moment to see whether the node refused something.
    let wait_ms = if expected == 0 { 20 } else { 5_000 };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let mut answers = 0;
    loop {
        let next = tokio::time::timeout_at(deadline, conn.next_frame()).await;
        match next {
            Ok(Some(Ok(Frame::Error { .. }))) => return (1, 1, 0),
            Ok(Some(Ok(_))) => {
                answers += 1;
                if answers >= expected {
                    return (1, 0, 0);
                }
            }
            Ok(Some(Err(_))) | Ok(None) => return (1, 1, 0),
            Err(_) => return (1, 0, 0),
        }
    }
}
