//! The async shell: drives one [`Core`] with real (or simulated) sockets, timers and disk.
//!
//! Tasks, all on the caller's runtime:
//! - the *driver* ([`run`]'s own loop) owns the core and the storage; it takes events from one
//!   bounded queue, feeds the core every event already queued (up to [`EVENTS_PER_STEP_MAX`]), and
//!   carries out the [`crate::core::Ready`] they produced (write, one sync for all, then send):
//!   group commit, so that a burst of writes costs one fsync and nothing is answered before it. If
//!   storage fails, [`run`] returns the error and the node stops (fail-stop: a node that cannot
//!   write must not go on answering); a supervisor restarts it and recovery checks the disk;
//! - one *acceptor* takes connections and spawns a *connection* task for each (bounded by
//!   [`CONNECTIONS_MAX`]), which decodes frames into events and writes replies back;
//! - one *peer link* per other member dials it, sends that node our messages (what is queued goes
//!   out with one flush, up to [`WRITE_BATCH_FRAMES_MAX`] frames), pings it, and
//!   re-dials when the link breaks or goes silent. turmoil's TCP does not retransmit, so a lost
//!   segment stalls a stream forever: silence past [`PEER_SILENCE_MS`] is a broken link. Messages
//!   queued while it re-dials wait for the next connection (at most [`LINK_PENDING_MAX`] of them,
//!   none older than [`LINK_PENDING_MS_MAX`]), and a message from the peer makes it re-dial at
//!   once: a peer that restarts gets the answers to its first requests instead of losing them to
//!   a link in back-off. A link that notices this node was frozen (its ping timer came late)
//!   does not count the gap as the peer's silence.
//!
//! All tasks are spawned on the caller's `LocalSet` (`spawn_local`), so `run` must be called inside
//! one (turmoil hosts are). The reason is determinism: tokio keeps `spawn`ed tasks in lists sharded
//! by a process-global task id, so the order in which a crashed host's tasks are dropped (and its
//! connections send their last segments) would depend on how many tasks the process had made
//! before; a `LocalSet` keeps its tasks in one list, in spawn order. A node's core is single-threaded
//! anyway, so it loses no parallelism.
//!
//! Every queue is bounded; a full peer or reply queue drops the message (the request's deadline
//! covers it) rather than letting one slow peer hold the node.

use crate::config::{Bug, FsyncPolicy, NodeConfig};
use crate::coordinator::ClientToken;
use crate::core::{Core, Now, Released};
use crate::env::{Env, Listener};
use crate::ring::NodeId;
use crate::store::Storage;
use crate::store::keyspace::Keyspace;
use crate::store::log::{LogOptions, LogStore, ManifestState, RecoveryReport};
use crate::version::{Actor, valid_actor};
use crate::wire::{Frame, FrameCodec, PeerMessage, Request};
use futures::{SinkExt, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore, mpsc};
// tokio's clock, not std's: turmoil drives it in simulated time, so timers replay exactly.
use tokio::time::{Duration, Instant, sleep, sleep_until, timeout};
use tokio_util::codec::Framed;

/// Events waiting for the driver.
pub const EVENTS_QUEUE_MAX: usize = 4_096;
/// Messages waiting to go to one peer.
pub const PEER_QUEUE_MAX: usize = 4_096;
/// Events the driver feeds the core before it carries out what they produced (group commit).
pub const EVENTS_PER_STEP_MAX: usize = 64;
/// Frames written to one connection with a single flush.
pub const WRITE_BATCH_FRAMES_MAX: usize = 64;
/// Frames waiting to go back on one client connection.
pub const CONNECTION_QUEUE_MAX: usize = 1_024;
/// Connections served at once; more are closed at accept.
pub const CONNECTIONS_MAX: usize = 1_024;
/// How long dialling a peer may take.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// How long writing one frame (or flushing a batch) may take before the link counts as broken.
pub const WRITE_TIMEOUT_MS: u64 = 1_000;
/// Wait between failed dials of a peer.
pub const RECONNECT_BACKOFF_MS: u64 = 200;
/// Interval of liveness pings on a peer link.
pub const PING_INTERVAL_MS: u64 = 250;
/// A peer link that hears nothing back for this long is dropped and re-dialled.
pub const PEER_SILENCE_MS: u64 = 1_000;
/// Interval between checks whether the log needs compacting.
pub const COMPACTION_CHECK_MS: u64 = 5_000;
/// An inbound connection silent for one to two of these is closed (peers ping well within it).
pub const CONNECTION_IDLE_MS: u64 = 60_000;
/// Messages a peer link keeps for its next connection while it re-dials.
pub const LINK_PENDING_MAX: usize = 1_024;
/// A message kept for the next connection longer than this is dropped (its request is over).
pub const LINK_PENDING_MS_MAX: u64 = 2_000;
/// A ping timer this late means this node itself was frozen, not that the peer went silent.
pub const LINK_FROZEN_MS: u64 = PEER_SILENCE_MS / 2;

/// Something for the driver to feed the core.
enum Event {
    Opened {
        conn: u64,
        replies: mpsc::Sender<Frame>,
    },
    Closed {
        conn: u64,
    },
    Request {
        client: ClientToken,
        request: Request,
    },
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    PeerStatus {
        node: NodeId,
        reachable: bool,
    },
}

/// How a node came up: for logs and tests.
#[derive(Clone, Debug)]
pub struct Startup {
    /// The actor id of this incarnation.
    pub actor: Actor,
    /// Why the actor id is new, or `None` if it was kept from the last incarnation.
    pub new_actor_reason: Option<String>,
    /// What the log store's recovery found.
    pub recovery: RecoveryReport,
}

/// Opens the node's storage in `data_dir` and settles the actor id of this incarnation.
///
/// The actor changes whenever the node may have lost writes it made, so that no (actor, counter)
/// is ever issued twice:
/// - on an empty (new or wiped) disk, or one whose actor record is unreadable;
/// - on every start when the fsync policy is not `always`, since a crash may then have lost
///   acknowledged writes;
/// - when recovery cut a torn tail, skipped damaged records, or found a data file or the manifest
///   missing ([`RecoveryReport::lost_data`]): the lost records may hold the highest counters;
/// - when the whole log is gone beside a stored actor id (the actor is kept apart from the log,
///   [`Keyspace::set_actor`], so that damage to the log cannot decide this by taking it along).
///
/// The deliberate bug `reuse-actor` always uses the bare node id, restarting counters after a
/// wipe; `keep-actor-on-recovery` keeps the stored actor after a recovery that lost data.
pub fn open_storage<E: Env>(
    env: &E,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<(Keyspace<LogStore<E::Fs>>, Startup)> {
    let options = LogOptions {
        max_file_bytes: config.log_file_bytes_max,
    };
    let (log, recovery) = LogStore::open(env.fs(), data_dir, options)?;
    let mut keyspace = Keyspace::new(log);
    if config.has_bug(Bug::ReuseActor) {
        let startup = Startup {
            actor: config.id.to_string().into(),
            new_actor_reason: None,
            recovery,
        };
        return Ok((keyspace, startup));
    }
    let stored = match keyspace.actor() {
        Ok(bytes) => bytes
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|actor| valid_actor(actor)),
        // Decay of the record itself: as good as no record.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::error!(node = %config.id, error = %e, "the stored actor id is damaged");
            None
        }
        Err(e) => return Err(e),
    };
    // The actor is kept apart from the log, so a store whose log is new beside a stored actor lost
    // its whole log (every data file and the manifest): the counters went with it.
    let log_gone = recovery.manifest == ManifestState::Created;
    let new_actor_reason = match stored {
        None => Some("no actor id stored (a new or wiped disk)".to_string()),
        Some(_) if log_gone && !config.has_bug(Bug::KeepActorOnRecovery) => {
            Some("the log is gone (no data file, no manifest) beside a stored actor id".into())
        }
        Some(_) if config.fsync != FsyncPolicy::Always => Some(format!(
            "fsync policy {} may have lost acknowledged writes in a crash",
            config.fsync
        )),
        // Deliberate bug `keep-actor-on-recovery`: the lost records' counters will be issued again.
        Some(_) if recovery.lost_data() && !config.has_bug(Bug::KeepActorOnRecovery) => {
            Some(format!("recovery lost data: {}", recovery.loss_summary()))
        }
        Some(_) => None,
    };
    let actor = match (stored, &new_actor_reason) {
        (Some(actor), None) => actor,
        (_, reason) => {
            let actor = format!("{}.{:08x}", config.id, env.random_u64() as u32);
            tracing::warn!(
                node = %config.id,
                %actor,
                reason = reason.as_deref().unwrap_or_default(),
                "taking a new actor id"
            );
            keyspace.set_actor(&actor)?;
            actor
        }
    };
    if recovery.lost_data() && new_actor_reason.is_none() {
        tracing::warn!(
            node = %config.id,
            %actor,
            lost = %recovery.loss_summary(),
            "keeping the actor id although recovery lost data (deliberate bug keep-actor-on-recovery)"
        );
    }
    let startup = Startup {
        actor: actor.into(),
        new_actor_reason,
        recovery,
    };
    Ok((keyspace, startup))
}

/// Runs a node until `shutdown` completes, serving connections from `listener`.
pub async fn run<E: Env>(
    env: E,
    config: NodeConfig,
    data_dir: &Path,
    listener: E::Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (mut keyspace, startup) = open_storage(&env, &config, data_dir)?;
    tracing::info!(
        node = %config.id,
        actor = %startup.actor,
        new_actor_reason = startup.new_actor_reason.as_deref().unwrap_or("none: kept"),
        records = startup.recovery.records,
        lost = %startup.recovery.loss_summary(),
        "node started"
    );
    let mut core = Core::new(config.clone(), startup.actor, env.random_u64());
    core.load(&keyspace)?;
    let (events, mut inbox) = mpsc::channel::<Event>(EVENTS_QUEUE_MAX);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn_local(accept_loop(listener, events.clone()));
    let mut peers: BTreeMap<NodeId, mpsc::Sender<PeerMessage>> = BTreeMap::new();
    // Per peer link: poked when the peer is heard from, so that a link in back-off re-dials now.
    let mut wakes: BTreeMap<NodeId, Arc<Notify>> = BTreeMap::new();
    let link = |peers: &mut BTreeMap<NodeId, mpsc::Sender<PeerMessage>>,
                wakes: &mut BTreeMap<NodeId, Arc<Notify>>,
                tasks: &mut tokio::task::JoinSet<()>,
                members: &BTreeMap<NodeId, String>| {
        for (peer, addr) in members {
            if *peer == config.id || peers.contains_key(peer) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            peers.insert(peer.clone(), tx);
            let wake = Arc::new(Notify::new());
            wakes.insert(peer.clone(), wake.clone());
            let link = PeerLink {
                me: config.id.clone(),
                peer: peer.clone(),
                addr: addr.clone(),
                wake,
            };
            tasks.spawn_local(peer_link(env.clone(), link, rx, events.clone()));
        }
    };
    link(&mut peers, &mut wakes, &mut tasks, &config.members);
    // The ring this node last knew, if it ever changed from the configured one. A damaged one is
    // not worth stopping for: gossip brings the current ring.
    match keyspace.membership() {
        Ok(Some((ring, addrs))) => {
            core.adopt(ring, &addrs);
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(error = %e, "saved ring is damaged; using the configured one")
        }
        Err(e) => return Err(e),
    }
    if !config.seeds.is_empty() {
        let (ring, addrs) = join(&env, &config).await;
        core.adopt(ring, &addrs);
    }

    let start = Instant::now();
    let now = || Now {
        mono_ms: start.elapsed().as_millis() as u64,
        wall_ms: env.wall_clock_ms(),
    };
    let sync_interval_ms = match config.fsync {
        FsyncPolicy::Interval { interval_ms } => interval_ms.max(1),
        _ => u64::MAX / 4,
    };
    let mut clients: BTreeMap<u64, mpsc::Sender<Frame>> = BTreeMap::new();
    let never = start + Duration::from_secs(86_400 * 365);
    // The timers live across iterations and are reset only when their deadline moves: a fresh
    // `sleep_until` per event would enter and leave tokio's timer wheel once per message.
    let protocol_timer = sleep_until(never);
    let compaction_timer = sleep_until(start + Duration::from_millis(COMPACTION_CHECK_MS));
    let sync_timer = sleep_until(start + Duration::from_millis(sync_interval_ms));
    tokio::pin!(shutdown, protocol_timer, compaction_timer, sync_timer);
    loop {
        let timer = core
            .poll_timeout()
            .map(|ms| start + Duration::from_millis(ms))
            .unwrap_or(never);
        if protocol_timer.deadline() != timer {
            protocol_timer.as_mut().reset(timer);
        }
        let mut handle = |event: Event, core: &mut Core, now: Now| match event {
            Event::Opened { conn, replies } => {
                clients.insert(conn, replies);
            }
            Event::Closed { conn } => {
                clients.remove(&conn);
            }
            Event::Request { client, request } => {
                core.handle_request(now, client, request, &keyspace)
            }
            Event::Peer { from, message } => {
                if let Some(wake) = wakes.get(&from) {
                    wake.notify_one();
                }
                core.handle_peer(now, from, message, &keyspace)
            }
            Event::PeerStatus { node, reachable } => core.handle_peer_status(&node, reachable),
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            event = inbox.recv() => {
                let Some(event) = event else { break };
                // One reading of the clocks for the step: the events of one step arrived together.
                let step_now = now();
                handle(event, &mut core, step_now);
                // Group commit: events already queued join this step, so that one write-and-sync
                // covers them all before any of their answers leaves (bounded, so that one step's
                // writes and latency stay bounded under a flood).
                for _ in 1..EVENTS_PER_STEP_MAX {
                    let Ok(event) = inbox.try_recv() else { break };
                    handle(event, &mut core, step_now);
                }
                // The inbox is polled first, so under a flood the timer branch would never be
                // chosen: a deadline that has come is served at the end of the step instead.
                if core.poll_timeout().is_some_and(|ms| ms <= step_now.mono_ms) {
                    core.handle_timeout(step_now, &keyspace);
                }
            }
            _ = &mut protocol_timer => core.handle_timeout(now(), &keyspace),
            _ = &mut compaction_timer => {
                compaction_timer.as_mut().reset(Instant::now() + Duration::from_millis(COMPACTION_CHECK_MS));
                maybe_compact(&config, keyspace.storage_mut())
                    .map_err(|e| stop(&config, "compaction", e))?;
            }
            _ = &mut sync_timer => {
                sync_timer.as_mut().reset(Instant::now() + Duration::from_millis(sync_interval_ms));
                keyspace.sync().map_err(|e| stop(&config, "periodic sync", e))?;
            }
        }
        let ready = core.poll_ready(&keyspace);
        if !ready.is_empty() {
            // Fail-stop: when storage fails, nothing that depends on the step's writes leaves, and
            // the node ends rather than answer as if it could write (a zombie). A supervisor or
            // the operator restarts it; recovery sorts out what reached the disk.
            let released = ready
                .apply(&mut keyspace, &config)
                .map_err(|e| stop(&config, "storage", e))?;
            if let Some((_, members)) = &released.membership {
                link(&mut peers, &mut wakes, &mut tasks, members);
            }
            send(released, &peers, &clients);
        }
    }
    keyspace
        .sync()
        .map_err(|e| stop(&config, "final sync", e))?;
    tasks.abort_all();
    tracing::info!(node = %config.id, "node stopped");
    Ok(())
}

/// Compacts the log when its dead bytes exceed both the configured floor and its live bytes, so
/// that a compaction at most halves the disk footprint's garbage and never runs for crumbs.
fn maybe_compact<F: crate::fs::FileSystem>(
    config: &NodeConfig,
    log: &mut LogStore<F>,
) -> io::Result<()> {
    let stats = log.stats();
    let garbage_bytes = stats.bytes.saturating_sub(stats.live_bytes);
    if garbage_bytes < config.compact_garbage_bytes_min || garbage_bytes < stats.live_bytes {
        return Ok(());
    }
    let done = log.compact()?;
    tracing::info!(
        node = %config.id,
        bytes_before = done.bytes_before,
        bytes_after = done.bytes_after,
        "log compacted"
    );
    Ok(())
}

/// The error `run` ends with when storage fails: it says the node stopped, and why.
fn stop(config: &NodeConfig, what: &str, e: io::Error) -> io::Error {
    tracing::error!(
        node = %config.id,
        error = %e,
        "{what} failed: stopping the node (restart it; recovery will check the disk)"
    );
    io::Error::new(
        e.kind(),
        format!("node {} stopped: {what} failed: {e}", config.id),
    )
}

/// Asks the seeds, in turn, to add this node to the ring, until one answers with the new ring.
async fn join<E: Env>(
    env: &E,
    config: &NodeConfig,
) -> (crate::ring::Ring, BTreeMap<NodeId, String>) {
    let addr = config.members.get(&config.id).cloned().unwrap_or_default();
    let request = crate::wire::Request::Join {
        id: config.id.clone(),
        addr,
        weight: 1,
    };
    loop {
        for seed in &config.seeds {
            let mut client = crate::client::Client::new(env.clone(), seed.clone())
                .with_timeout_ms(config.request_timeout_ms);
            match client.request(request.clone()).await {
                Ok(crate::wire::Response::Membership { ring, addrs }) => {
                    tracing::info!(node = %config.id, %seed, version = ring.version(), "joined");
                    return (ring, addrs);
                }
                Ok(other) => tracing::warn!(%seed, ?other, "seed refused the join"),
                Err(e) => tracing::warn!(%seed, error = %e, "cannot reach seed"),
            }
        }
        sleep(Duration::from_millis(RECONNECT_BACKOFF_MS * 5)).await;
    }
}

/// Sends what [`crate::core::Ready::apply`] released: messages to peers, replies to clients.
fn send(
    released: Released,
    peers: &BTreeMap<NodeId, mpsc::Sender<PeerMessage>>,
    clients: &BTreeMap<u64, mpsc::Sender<Frame>>,
) {
    for (peer, message) in released.messages {
        match peers.get(&peer) {
            Some(queue) => {
                if queue.try_send(message).is_err() {
                    tracing::debug!(%peer, "peer queue full or closed; message dropped");
                }
            }
            None => tracing::warn!(%peer, "message for an unknown peer dropped"),
        }
    }
    for (client, response) in released.replies {
        if let Some(queue) = clients.get(&client.conn) {
            let frame = Frame::Response {
                id: client.id,
                response,
            };
            if queue.try_send(frame).is_err() {
                tracing::debug!(
                    conn = client.conn,
                    "client queue full or closed; reply dropped"
                );
            }
        }
    }
}

async fn accept_loop<L: Listener>(listener: L, events: mpsc::Sender<Event>) {
    let mut next_conn = 0u64;
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many connections; closing a new one");
            continue;
        };
        next_conn += 1;
        let conn = next_conn;
        let events = events.clone();
        tokio::task::spawn_local(async move {
            serve_connection(stream, conn, events).await;
            drop(permit);
        });
    }
}

/// Reads frames from one inbound connection (a client's or a peer's) and writes its replies.
async fn serve_connection<S>(stream: S, conn: u64, events: mpsc::Sender<Event>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut framed = Framed::new(stream, FrameCodec::default());
    let (replies, mut outbox) = mpsc::channel::<Frame>(CONNECTION_QUEUE_MAX);
    if events.send(Event::Opened { conn, replies }).await.is_err() {
        return;
    }
    // One idle timer for the connection's life, pushed back only when it fires: a timeout around
    // each read would enter and leave the timer wheel once per frame (and a clock reading per
    // frame is not free either). A connection is closed after one to two idle periods of silence.
    let idle = Duration::from_millis(CONNECTION_IDLE_MS);
    let mut read_since_check = false;
    let idle_timer = sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            biased;
            frame = outbox.recv() => {
                let Some(frame) = frame else { break };
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH_FRAMES_MAX {
                    let Ok(frame) = outbox.try_recv() else { break };
                    batch.push(frame);
                }
                if write(&mut framed, batch).await.is_err() {
                    break;
                }
            }
            read = framed.next() => {
                read_since_check = true;
                let event = match read {
                    None => break,
                    Some(Err(e)) => {
                        let message = format!("closing connection: {e}");
                        let _ = write(&mut framed, vec![Frame::Error { message }]).await;
                        break;
                    }
                    Some(Ok(frame)) => match frame {
                        Frame::Request { id, request } => Event::Request {
                            client: ClientToken { conn, id },
                            request,
                        },
                        Frame::Peer { from, message } => Event::Peer { from, message },
                        Frame::Ping { nonce } => {
                            if write(&mut framed, vec![Frame::Pong { nonce }]).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        Frame::Response { .. } | Frame::Error { .. } | Frame::Pong { .. } => {
                            let message = "closing connection: a node takes requests, not answers".to_string();
                            let _ = write(&mut framed, vec![Frame::Error { message }]).await;
                            break;
                        }
                    },
                };
                if events.send(event).await.is_err() {
                    break;
                }
            }
            _ = &mut idle_timer => {
                if !std::mem::take(&mut read_since_check) {
                    break;
                }
                idle_timer.as_mut().reset(Instant::now() + idle);
            }
        }
    }
    let _ = events.send(Event::Closed { conn }).await;
}

/// Writes frames with one flush: a burst of small messages becomes one write (and, in the
/// simulator, one TCP segment) instead of one per frame; the codec's buffer still goes out
/// whenever it passes tokio-util's backpressure boundary (8 KiB). Each frame has its own deadline,
/// as does the final flush, so a batch of large frames is not held to one frame's time.
async fn write<S>(framed: &mut Framed<S, FrameCodec>, frames: Vec<Frame>) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Duration::from_millis(WRITE_TIMEOUT_MS);
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "write timed out");
    for frame in frames {
        timeout(deadline, framed.feed(frame))
            .await
            .map_err(|_| timed_out())??;
    }
    timeout(deadline, framed.flush())
        .await
        .map_err(|_| timed_out())?
}

/// Who a peer link connects, and how it is woken.
struct PeerLink {
    me: NodeId,
    peer: NodeId,
    addr: String,
    /// Notified when the peer is heard from: re-dial now rather than after the back-off.
    wake: Arc<Notify>,
}

/// Messages kept for the link's next connection, with when they were queued.
type Pending = VecDeque<(Instant, PeerMessage)>;

/// Keeps a link to one peer: dial, send, ping, and re-dial when it breaks or goes silent.
async fn peer_link<E: Env>(
    env: E,
    link: PeerLink,
    mut queue: mpsc::Receiver<PeerMessage>,
    events: mpsc::Sender<Event>,
) {
    let mut reachable = None;
    let mut pending: Pending = VecDeque::new();
    let report = |up: bool, reachable: &mut Option<bool>| {
        let changed = *reachable != Some(up);
        *reachable = Some(up);
        changed.then(|| Event::PeerStatus {
            node: link.peer.clone(),
            reachable: up,
        })
    };
    loop {
        let dialled = timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            env.connect(&link.addr),
        )
        .await;
        if let Ok(Ok(stream)) = dialled {
            if let Some(event) = report(true, &mut reachable)
                && events.send(event).await.is_err()
            {
                return;
            }
            let mut framed = Framed::new(stream, FrameCodec::default());
            if !run_link(&mut framed, &link.me, &mut queue, &mut pending).await {
                return; // The node is shutting down.
            }
        }
        if let Some(event) = report(false, &mut reachable)
            && events.send(event).await.is_err()
        {
            return;
        }
        // Messages wait for the next connection, a bounded number for a bounded time: a peer that
        // restarted gets the answers to its first requests. Those lost with the broken connection
        // itself are covered by their requests' deadlines, and hints and anti-entropy bring the
        // peer up to date.
        let backoff = sleep(Duration::from_millis(RECONNECT_BACKOFF_MS));
        tokio::pin!(backoff);
        loop {
            tokio::select! {
                biased;
                _ = &mut backoff => break,
                _ = link.wake.notified() => break,
                message = queue.recv() => {
                    let Some(message) = message else { return };
                    if pending.len() >= LINK_PENDING_MAX {
                        pending.pop_front();
                    }
                    pending.push_back((Instant::now(), message));
                }
            }
        }
    }
}

/// Runs one connected link until it breaks (false only when the node is shutting down). It first
/// sends the messages kept while it re-dialled that are not too old.
async fn run_link<S>(
    framed: &mut Framed<S, FrameCodec>,
    me: &NodeId,
    queue: &mut mpsc::Receiver<PeerMessage>,
    pending: &mut Pending,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let fresh = Duration::from_millis(LINK_PENDING_MS_MAX);
    while !pending.is_empty() {
        let batch: Vec<Frame> = std::iter::from_fn(|| pending.pop_front())
            .filter(|(queued, _)| queued.elapsed() <= fresh)
            .take(WRITE_BATCH_FRAMES_MAX)
            .map(|(_, message)| Frame::Peer {
                from: me.clone(),
                message,
            })
            .collect();
        if !batch.is_empty() && write(framed, batch).await.is_err() {
            return true;
        }
    }
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(Duration::from_millis(PING_INTERVAL_MS));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            biased;
            message = queue.recv() => {
                let Some(message) = message else { return false };
                let mut batch = vec![Frame::Peer { from: me.clone(), message }];
                while batch.len() < WRITE_BATCH_FRAMES_MAX {
                    let Ok(message) = queue.try_recv() else { break };
                    batch.push(Frame::Peer { from: me.clone(), message });
                }
                if write(framed, batch).await.is_err() {
                    return true;
                }
            }
            frame = framed.next() => match frame {
                Some(Ok(Frame::Pong { .. })) => heard = Instant::now(),
                _ => return true,
            },
            _ = ping.tick() => {
                // A tick this late means this process was frozen (stopped, starved): the gap is
                // its own silence, not the peer's.
                if last_tick.elapsed() > Duration::from_millis(PING_INTERVAL_MS + LINK_FROZEN_MS) {
                    heard = Instant::now();
                }
                last_tick = Instant::now();
                if heard.elapsed() > Duration::from_millis(PEER_SILENCE_MS) {
                    return true;
                }
                nonce += 1;
                if write(framed, vec![Frame::Ping { nonce }]).await.is_err() {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
