//! The async shell: drives one [`Core`] with real (or simulated) sockets, timers and disk.
//!
//! Tasks, all on the caller's runtime:
//! - the *driver* ([`run`]'s own loop) owns the core and the storage; it takes events from one
//!   bounded queue, feeds the core every event already queued (up to [`EVENTS_PER_STEP_MAX`]), and
//!   carries out the [`crate::core::Ready`] they produced (write, one sync for all, then send):
//!   group commit, so that a burst of writes costs one fsync and nothing is answered before it. If
//!   storage fails, [`run`] returns the error and the node stops (fail-stop: a node that cannot
//!   write must not go on answering); a supervisor restarts it and recovery checks the disk;
//! - one *acceptor* takes connections and spawns a *connection* task for each, which runs the
//!   handshake ([`crate::auth`]), decodes frames into events and writes replies back;
//! - one *peer link* per other member dials it, proves the cluster secret and checks the peer's,
//!   sends that node our messages (what is queued goes out with one flush, up to
//!   [`WRITE_BATCH_FRAMES_MAX`] frames), pings it, and re-dials when the link breaks or goes
//!   silent. turmoil's TCP does not retransmit, so a lost segment stalls a stream forever:
//!   silence past [`PEER_SILENCE_MS`] is a broken link. Messages queued while it re-dials wait
//!   for the next connection (at most [`LINK_PENDING_MAX`] of them, none older than
//!   [`LINK_PENDING_MS_MAX`]), and a message from the peer makes it re-dial at once: a peer that
//!   restarts gets the answers to its first requests instead of losing them to a link in
//!   back-off. A link that notices this node was frozen (its ping timer came late) does not count
//!   the gap as the peer's silence.
//!
//! # Who may speak, and how much
//!
//! A connection says who it is with its first frame: a `Hello` (a peer, an admin or a client,
//! followed by the handshake), or, from an anonymous client, a request (allowed when the node has
//! no client token; on an open node, one without a cluster secret, anonymous connections are
//! admins, as they were before secrets). A peer may send only `Peer` frames that name itself as
//! their sender, and pings; a client only gets and puts; an admin every request. Anything else
//! closes the connection with an error.
//!
//! Connections are counted per class, each with its own budget, so that one class cannot lock
//! out another: [`PENDING_CONNECTIONS_MAX`] that have not said who they are yet (each has
//! [`HANDSHAKE_TIMEOUT_MS`] to do so), [`CLIENT_CONNECTIONS_MAX`] clients,
//! [`ADMIN_CONNECTIONS_MAX`] admins and [`PEER_CONNECTIONS_MAX`] peers. A full class of pending
//! connections, clients or admins makes room by closing its least recently active connection
//! (idle connections cannot lock newcomers out); a full class of peers, all authenticated,
//! refuses the newcomer. Every byte a connection buffers, and every decoded frame waiting for the
//! driver, is charged to one budget of [`INBOUND_BYTES_MAX`]; a connection whose frame cannot get
//! its bytes is closed with an error.
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

use crate::auth::{self, Role};
use crate::config::{Bug, FsyncPolicy, NodeConfig};
use crate::conn::{self, Budget, Charge, Conn, WRITE_BUFFER_BYTES};
use crate::coordinator::ClientToken;
use crate::core::{Core, Now, Released};
use crate::env::{Env, Listener};
use crate::fs::{DirLock, FileSystem};
use crate::ring::NodeId;
use crate::store::Storage;
use crate::store::identity::{self, Identity};
use crate::store::keyspace::Keyspace;
use crate::store::log::{LogOptions, LogStore, ManifestState, RecoveryReport};
use crate::version::{Actor, valid_actor};
use crate::wire::{
    CLIENT_FRAME_BYTES_MAX, ErrorKind, FIRST_FRAME_BYTES_MAX, FRAME_BYTES_MAX, Frame, PeerMessage,
    Request, RequestError, Response,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};
// tokio's clock, not std's: turmoil drives it in simulated time, so timers replay exactly.
use tokio::time::{Duration, Instant, sleep, sleep_until, timeout};

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
/// Connections that have not said who they are yet; a newcomer past it closes the least
/// recently active of them.
pub const PENDING_CONNECTIONS_MAX: usize = 64;
/// Client connections served at once; a newcomer past it closes the least recently active one.
pub const CLIENT_CONNECTIONS_MAX: usize = 1_024;
/// Admin connections served at once; a newcomer past it closes the least recently active one.
pub const ADMIN_CONNECTIONS_MAX: usize = 32;
/// Peer connections served at once (each member dials one; a re-dial may overlap the old one).
/// Past it a newcomer is refused: peers are authenticated, so only members fill it.
pub const PEER_CONNECTIONS_MAX: usize = 2 * crate::ring::MEMBERS_MAX;
/// How long a new connection has to say who it is (its first frame, and the handshake after a
/// `Hello`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// How long a peer link's handshake may take: as long as the link may go silent. turmoil's TCP
/// (like a real one behind a dead route) stalls silently on a lost segment, and a link that
/// waited longer would keep a healed peer unreachable.
pub const LINK_HANDSHAKE_TIMEOUT_MS: u64 = PEER_SILENCE_MS;
/// Bytes all connections together may hold in read buffers and in decoded frames waiting for
/// the driver ([`crate::conn::Budget`]).
pub const INBOUND_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Largest frame a peer link reads back (pongs and errors).
pub const LINK_FRAME_BYTES_MAX: usize = 64 * 1024;
/// Rounds of join requests over all seeds before a joining node gives up.
pub const JOIN_ROUNDS_MAX: u32 = 10;
/// Wait between two rounds of join requests.
pub const JOIN_BACKOFF_MS: u64 = 1_000;
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
        /// The frame's bytes, charged to the inbound budget until the driver took the event.
        _charge: Charge,
    },
    Peer {
        from: NodeId,
        message: PeerMessage,
        _charge: Charge,
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

/// Checks what can be checked of the data directory without writing to it: if it exists, it is
/// a directory and, if it has an identity, it is this node's. Run before a join, so that a node
/// started on the wrong directory does not join the ring first.
pub fn check_data_dir<F: FileSystem>(
    fs: &F,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<()> {
    if !fs.exists(data_dir) {
        return Ok(());
    }
    fs.read_dir(data_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "data directory {}: {e} (is it a directory?)",
                data_dir.display()
            ),
        )
    })?;
    identity::check(fs, data_dir, &identity_of(config)).map(|_| ())
}

fn identity_of(config: &NodeConfig) -> Identity {
    Identity {
        node: config.id.to_string(),
        cluster: config.cluster.clone(),
    }
}

/// Creates the data directory (durably: its entry and its new parents' are synced), takes its
/// lock, and checks or writes its identity ([`crate::store::identity`]).
fn lock_data_dir<F: FileSystem>(
    fs: &F,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<DirLock> {
    let named = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("data directory {}: {e}", data_dir.display()),
        )
    };
    let existed = fs.exists(data_dir);
    fs.create_dir_all(data_dir).map_err(named)?;
    if !existed {
        for ancestor in data_dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            fs.sync_dir(ancestor).map_err(named)?;
        }
    }
    let lock = fs.lock_dir(data_dir)?;
    identity::check_or_write(fs, data_dir, &identity_of(config))?;
    Ok(lock)
}

/// Opens the node's storage in `data_dir` and settles the actor id of this incarnation. The data
/// directory is locked for as long as the returned keyspace lives, and must be this node's (or
/// new): see [`crate::store::identity`].
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
    let lock = lock_data_dir(&env.fs(), config, data_dir)?;
    let options = LogOptions {
        max_file_bytes: config.log_file_bytes_max,
    };
    let (log, recovery) = LogStore::open(env.fs(), data_dir, options)?;
    let mut keyspace = Keyspace::new(log).with_lock(lock);
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
    tokio::pin!(shutdown);
    // A joining node asks the seeds first, before it writes anything: a node that cannot join
    // leaves no data directory behind.
    check_data_dir(&env.fs(), &config, data_dir)?;
    let joined = if config.seeds.is_empty() {
        None
    } else {
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(()),
            joined = join(&env, &config) => Some(joined?),
        }
    };
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

    let budget = Budget::new(INBOUND_BYTES_MAX);
    let mut tasks = tokio::task::JoinSet::new();
    let ctx = Rc::new(ConnContext {
        env: env.clone(),
        id: config.id.clone(),
        cluster: config.cluster.clone(),
        auth: config.auth.clone(),
        events: events.clone(),
        budget: budget.clone(),
        registry: RefCell::new(Registry::default()),
    });
    tasks.spawn_local(accept_loop(listener, ctx));
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
                peer: peer.clone(),
                addr: addr.clone(),
                wake,
            };
            tasks.spawn_local(peer_link(
                env.clone(),
                config.clone(),
                link,
                rx,
                events.clone(),
                budget.clone(),
            ));
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
    if let Some((ring, addrs)) = joined {
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
    tokio::pin!(protocol_timer, compaction_timer, sync_timer);
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
            Event::Request {
                client, request, ..
            } => core.handle_request(now, client, request, &keyspace),
            Event::Peer { from, message, .. } => {
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

/// Asks the seeds, in turn, to add this node to the ring, until one answers with the new ring:
/// at most [`JOIN_ROUNDS_MAX`] rounds over all of them, then an error that says what the last
/// seed answered. It speaks as an admin with the cluster secret.
async fn join<E: Env>(
    env: &E,
    config: &NodeConfig,
) -> io::Result<(crate::ring::Ring, BTreeMap<NodeId, String>)> {
    let addr = config.members.get(&config.id).cloned().unwrap_or_default();
    let request = crate::wire::Request::Join {
        id: config.id.clone(),
        addr,
        weight: 1,
    };
    let auth = crate::client::ClientAuth {
        role: Role::Admin,
        cluster: config.cluster.clone(),
        key: config.auth.cluster_secret.clone(),
    };
    let mut last = String::new();
    for round in 0..JOIN_ROUNDS_MAX {
        if round > 0 {
            sleep(Duration::from_millis(JOIN_BACKOFF_MS)).await;
        }
        for seed in &config.seeds {
            let mut client = crate::client::Client::new(env.clone(), seed.clone())
                .with_timeout_ms(config.request_timeout_ms)
                .with_auth(auth.clone());
            match client.request(request.clone()).await {
                Ok(crate::wire::Response::Membership { ring, addrs }) => {
                    tracing::info!(node = %config.id, %seed, version = ring.version(), "joined");
                    return Ok((ring, addrs));
                }
                Ok(other) => {
                    tracing::warn!(%seed, ?other, "seed refused the join");
                    last = format!("{seed} refused: {other:?}");
                }
                Err(e) => {
                    tracing::warn!(%seed, error = %e, "cannot reach seed");
                    last = format!("{seed}: {e}");
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotConnected,
        format!(
            "cannot join: no seed added this node after {JOIN_ROUNDS_MAX} rounds (last: {last})"
        ),
    ))
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

/// What every connection task shares: how to check who speaks, where events go, and the budgets.
struct ConnContext<E> {
    env: E,
    id: NodeId,
    cluster: String,
    auth: auth::AuthConfig,
    events: mpsc::Sender<Event>,
    budget: Budget,
    registry: RefCell<Registry>,
}

/// The classes of connections, each with its own budget (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Pending,
    Client,
    Admin,
    Peer,
}

impl Class {
    fn index(self) -> usize {
        self as usize
    }

    fn connections_max(self) -> usize {
        match self {
            Class::Pending => PENDING_CONNECTIONS_MAX,
            Class::Client => CLIENT_CONNECTIONS_MAX,
            Class::Admin => ADMIN_CONNECTIONS_MAX,
            Class::Peer => PEER_CONNECTIONS_MAX,
        }
    }

    /// Whether a full class makes room by closing its least recently active connection.
    fn evicts(self) -> bool {
        self != Class::Peer
    }

    fn of(role: &Role) -> Class {
        match role {
            Role::Peer { .. } => Class::Peer,
            Role::Admin => Class::Admin,
            Role::Client => Class::Client,
        }
    }
}

/// One live connection: its class, when it was last active (a logical tick, not a clock
/// reading), and how to close it.
struct Slot {
    class: Class,
    active: Rc<Cell<u64>>,
    close: Rc<Notify>,
}

/// The live connections by class. Only touched from the connection tasks of one `LocalSet`.
#[derive(Default)]
struct Registry {
    slots: BTreeMap<u64, Slot>,
    counts: [usize; 4],
    tick: Rc<Cell<u64>>,
}

impl Registry {
    /// Puts connection `conn` in `class` (moving it from the one it was in), closing the least
    /// recently active connection of a full class that evicts; refuses for a full class that
    /// does not.
    fn admit(
        &mut self,
        conn: u64,
        class: Class,
        active: &Rc<Cell<u64>>,
        close: &Rc<Notify>,
    ) -> Result<(), String> {
        if let Some(slot) = self.slots.remove(&conn) {
            self.counts[slot.class.index()] -= 1;
        }
        if self.counts[class.index()] >= class.connections_max() {
            if !class.evicts() {
                return Err(format!(
                    "{} {class:?} connections already: closing a new one",
                    class.connections_max()
                ));
            }
            let victim = self
                .slots
                .iter()
                .filter(|(_, s)| s.class == class)
                .min_by_key(|(_, s)| s.active.get())
                .map(|(&c, _)| c)
                .expect("a full class has a connection");
            let slot = self.slots.remove(&victim).expect("listed");
            self.counts[class.index()] -= 1;
            tracing::warn!(
                conn = victim,
                ?class,
                "{} {class:?} connections: closing the least recently active",
                class.connections_max()
            );
            slot.close.notify_one();
        }
        self.counts[class.index()] += 1;
        self.touch(active);
        self.slots.insert(
            conn,
            Slot {
                class,
                active: active.clone(),
                close: close.clone(),
            },
        );
        debug_assert!(self.counts[class.index()] <= class.connections_max());
        Ok(())
    }

    fn touch(&self, active: &Cell<u64>) {
        let tick = self.tick.get() + 1;
        self.tick.set(tick);
        active.set(tick);
    }

    fn remove(&mut self, conn: u64) {
        if let Some(slot) = self.slots.remove(&conn) {
            self.counts[slot.class.index()] -= 1;
        }
    }
}

async fn accept_loop<E: Env>(listener: E::Listener, ctx: Rc<ConnContext<E>>) {
    let mut next_conn = 0u64;
    loop {
        let (stream, _addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)).await;
                continue;
            }
        };
        next_conn += 1;
        let conn = next_conn;
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let active = Rc::new(Cell::new(0));
            let close = Rc::new(Notify::new());
            let admitted = ctx
                .registry
                .borrow_mut()
                .admit(conn, Class::Pending, &active, &close);
            if admitted.is_ok() {
                serve_connection(stream, conn, &ctx, &active, &close).await;
            }
            ctx.registry.borrow_mut().remove(conn);
        });
    }
}

/// Sends `message` as a `Frame::Error`, best effort, before the connection closes.
async fn refuse<S>(conn: &mut Conn<S>, message: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tracing::debug!(%message, "closing a connection");
    let _ = write(conn, vec![Frame::Error { message }]).await;
}

/// Reads the first frame of a connection and settles who it is: a `Hello` and its handshake, or
/// an anonymous client's first request. `None` when the connection is refused (told why).
async fn settle_role<S, E: Env>(
    conn: &mut Conn<S>,
    ctx: &ConnContext<E>,
) -> Option<(Role, Option<(u64, Request)>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let first = timeout(
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
        conn.next_frame(),
    )
    .await;
    match first {
        Err(_) | Ok(None) => None,
        Ok(Some(Err(e))) => {
            refuse(conn, format!("closing connection: {e}")).await;
            None
        }
        Ok(Some(Ok(Frame::Hello {
            role,
            cluster,
            nonce,
        }))) => {
            if let Role::Peer { id } = &role
                && (!crate::version::valid_node_id(id) || *id == ctx.id)
            {
                refuse(conn, format!("{id:?} cannot be a peer of {}", ctx.id)).await;
                return None;
            }
            let peer = matches!(role, Role::Peer { .. });
            if (peer || !cluster.is_empty()) && cluster != ctx.cluster {
                let message = format!(
                    "cluster name differs: this node is of cluster {:?}, the dialer of {cluster:?}",
                    ctx.cluster
                );
                refuse(conn, message).await;
                return None;
            }
            let key = ctx.auth.key_for(&role);
            let mine = auth::nonce(|| ctx.env.random_u64());
            let handshake =
                conn::accept_handshake(conn, (&role, &cluster, nonce), &ctx.id, key, mine);
            match timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
                Ok(Ok(())) => Some((role, None)),
                Ok(Err(e)) => {
                    tracing::warn!(?role, error = %e, "a handshake failed");
                    refuse(conn, format!("handshake failed: {e}")).await;
                    None
                }
                Err(_) => None,
            }
        }
        Ok(Some(Ok(Frame::Request { id, request }))) => match ctx.auth.anonymous_rights() {
            Some(role) => Some((role, Some((id, request)))),
            None => {
                let message = "this node serves clients with a token only: send a Hello first";
                refuse(conn, message.to_string()).await;
                None
            }
        },
        Ok(Some(Ok(Frame::Peer { from, .. }))) => {
            let message = format!(
                "a peer message from {from} on a connection that is not its peer link \
                 (a peer link starts with a Hello and the handshake)"
            );
            refuse(conn, message).await;
            None
        }
        Ok(Some(Ok(_))) => {
            let message = "a connection starts with a Hello or a request".to_string();
            refuse(conn, message).await;
            None
        }
    }
}

/// What a connection's frame becomes: an event for the driver, or an answer on the spot.
enum Inbound {
    Event(Event),
    Answer(Frame),
    Refuse(String),
}

/// Checks a frame against the connection's role and turns it into what to do.
fn inbound(frame: Frame, role: &Role, conn: u64, charge: Charge) -> Inbound {
    match frame {
        Frame::Request { id, request } => {
            if matches!(role, Role::Peer { .. }) {
                return Inbound::Refuse("a peer link carries peer messages, not requests".into());
            }
            if *role == Role::Client && request.is_admin() {
                let response = Response::Error {
                    error: RequestError {
                        kind: ErrorKind::BadRequest,
                        message: "an admin request needs the cluster secret".into(),
                        stored_on: Vec::new(),
                        definite: true,
                    },
                };
                return Inbound::Answer(Frame::Response { id, response });
            }
            Inbound::Event(Event::Request {
                client: ClientToken { conn, id },
                request,
                _charge: charge,
            })
        }
        Frame::Peer { from, message } => match role {
            Role::Peer { id } if *id == from => Inbound::Event(Event::Peer {
                from,
                message,
                _charge: charge,
            }),
            Role::Peer { id } => Inbound::Refuse(format!(
                "a frame from {from} on the link of {id}: a peer speaks only for itself"
            )),
            _ => Inbound::Refuse(format!(
                "a peer message from {from} on a connection that is not its peer link"
            )),
        },
        Frame::Ping { nonce } => Inbound::Answer(Frame::Pong { nonce }),
        Frame::Hello { .. } | Frame::Challenge { .. } | Frame::Proof { .. } => {
            Inbound::Refuse("a handshake after the handshake".into())
        }
        Frame::Response { .. } | Frame::Error { .. } | Frame::Pong { .. } => {
            Inbound::Refuse("a node takes requests, not answers".into())
        }
    }
}

/// Serves one inbound connection (a client's, an admin's or a peer's): settles who it is, then
/// reads frames into events and writes replies back, until it closes, idles out or is evicted.
async fn serve_connection<S, E: Env>(
    stream: S,
    conn_id: u64,
    ctx: &ConnContext<E>,
    active: &Rc<Cell<u64>>,
    close: &Rc<Notify>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let Ok(mut conn) = Conn::new(stream, &ctx.budget, FIRST_FRAME_BYTES_MAX) else {
        tracing::warn!("inbound budget spent: closing a new connection");
        return;
    };
    let settled = tokio::select! {
        biased;
        _ = close.notified() => None,
        settled = settle_role(&mut conn, ctx) => settled,
    };
    let Some((role, first)) = settled else { return };
    let class = Class::of(&role);
    let admitted = ctx
        .registry
        .borrow_mut()
        .admit(conn_id, class, active, close);
    if let Err(message) = admitted {
        refuse(&mut conn, message).await;
        return;
    }
    conn.set_frame_bytes_max(match class {
        Class::Client => CLIENT_FRAME_BYTES_MAX,
        Class::Pending | Class::Admin | Class::Peer => FRAME_BYTES_MAX,
    });
    let (replies, mut outbox) = mpsc::channel::<Frame>(CONNECTION_QUEUE_MAX);
    let events = &ctx.events;
    if class != Class::Peer
        && events
            .send(Event::Opened {
                conn: conn_id,
                replies,
            })
            .await
            .is_err()
    {
        return;
    }
    if let Some((id, request)) = first {
        let Some(charge) = ctx.budget.charge(conn.last_frame_bytes()) else {
            return refuse(&mut conn, "the node is overloaded".into()).await;
        };
        let event = match inbound(Frame::Request { id, request }, &role, conn_id, charge) {
            Inbound::Event(event) => event,
            Inbound::Answer(frame) => {
                let _ = write(&mut conn, vec![frame]).await;
                return;
            }
            Inbound::Refuse(message) => return refuse(&mut conn, message).await,
        };
        if events.send(event).await.is_err() {
            return;
        }
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
            _ = close.notified() => {
                refuse(&mut conn, "closing connection: too many connections, and this one was the least recently active".into()).await;
                break;
            }
            frame = outbox.recv() => {
                let Some(frame) = frame else { break };
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH_FRAMES_MAX {
                    let Ok(frame) = outbox.try_recv() else { break };
                    batch.push(frame);
                }
                if write(&mut conn, batch).await.is_err() {
                    break;
                }
            }
            read = conn.next_frame() => {
                read_since_check = true;
                let frame = match read {
                    None => break,
                    Some(Err(e)) => {
                        refuse(&mut conn, format!("closing connection: {e}")).await;
                        break;
                    }
                    Some(Ok(frame)) => frame,
                };
                ctx.registry.borrow().touch(active);
                let Some(charge) = ctx.budget.charge(conn.last_frame_bytes()) else {
                    refuse(&mut conn, "closing connection: the node's inbound budget is spent".into()).await;
                    break;
                };
                match inbound(frame, &role, conn_id, charge) {
                    Inbound::Event(event) => {
                        if events.send(event).await.is_err() {
                            break;
                        }
                    }
                    Inbound::Answer(frame) => {
                        if write(&mut conn, vec![frame]).await.is_err() {
                            break;
                        }
                    }
                    Inbound::Refuse(message) => {
                        tracing::warn!(conn = conn_id, ?role, %message, "a frame refused");
                        refuse(&mut conn, format!("closing connection: {message}")).await;
                        break;
                    }
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
    if class != Class::Peer {
        let _ = events.send(Event::Closed { conn: conn_id }).await;
    }
}

/// Writes frames with one flush: a burst of small messages becomes one write (and, in the
/// simulator, one TCP segment) instead of one per frame; the buffer still goes out whenever it
/// passes [`WRITE_BUFFER_BYTES`]. Each write has its own deadline, as does the final flush, so a
/// batch of large frames is not held to one frame's time. A frame too large to encode does not
/// break the connection: an answer becomes an error answer with the same id (a read of a key
/// whose siblings outgrew a frame is told so), any other frame is dropped and logged.
async fn write<S>(conn: &mut Conn<S>, frames: Vec<Frame>) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Duration::from_millis(WRITE_TIMEOUT_MS);
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "write timed out");
    for frame in frames {
        if let Err(e) = conn.feed(&frame) {
            match frame {
                Frame::Response { id, .. } => {
                    tracing::warn!(error = %e, "an answer too large to send: answering an error");
                    let response = Response::Error {
                        error: RequestError {
                            kind: ErrorKind::Overloaded,
                            message: format!("the answer cannot be sent: {e}"),
                            stored_on: Vec::new(),
                            definite: false,
                        },
                    };
                    conn.feed(&Frame::Response { id, response })?;
                }
                other => {
                    let what = match &other {
                        Frame::Peer { message, .. } => {
                            format!("{:?}", std::mem::discriminant(message))
                        }
                        _ => "frame".to_string(),
                    };
                    tracing::warn!(error = %e, %what, "a frame too large to send: dropped");
                    continue;
                }
            }
        }
        if conn.pending_write_bytes() >= WRITE_BUFFER_BYTES {
            timeout(deadline, conn.write_out())
                .await
                .map_err(|_| timed_out())??;
        }
    }
    timeout(deadline, conn.flush())
        .await
        .map_err(|_| timed_out())?
}

/// Who a peer link connects, and how it is woken.
struct PeerLink {
    peer: NodeId,
    addr: String,
    /// Notified when the peer is heard from: re-dial now rather than after the back-off.
    wake: Arc<Notify>,
}

/// Messages kept for the link's next connection, with when they were queued.
type Pending = VecDeque<(Instant, PeerMessage)>;

/// Keeps a link to one peer: dial, prove the secret and check the peer's, send, ping, and re-dial
/// when it breaks or goes silent.
async fn peer_link<E: Env>(
    env: E,
    config: NodeConfig,
    link: PeerLink,
    mut queue: mpsc::Receiver<PeerMessage>,
    events: mpsc::Sender<Event>,
    budget: Budget,
) {
    let me = config.id.clone();
    let peer = &link.peer;
    let role = Role::Peer { id: me.clone() };
    let key = config.auth.key_for(&role).to_vec();
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
        if let Ok(Ok(stream)) = dialled
            && let Ok(mut conn) = Conn::new(stream, &budget, LINK_FRAME_BYTES_MAX)
        {
            let nonce = auth::nonce(|| env.random_u64());
            let handshake = conn::dial_handshake(
                &mut conn,
                role.clone(),
                &config.cluster,
                &key,
                nonce,
                Some(peer),
            );
            match timeout(Duration::from_millis(LINK_HANDSHAKE_TIMEOUT_MS), handshake).await {
                Ok(Ok(_)) => {
                    if let Some(event) = report(true, &mut reachable)
                        && events.send(event).await.is_err()
                    {
                        return;
                    }
                    if !run_link(&mut conn, &me, &mut queue, &mut pending).await {
                        return; // The node is shutting down.
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = %me, %peer, error = %e, "peer handshake failed")
                }
                Err(_) => tracing::debug!(node = %me, %peer, "peer handshake timed out"),
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
    conn: &mut Conn<S>,
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
        if !batch.is_empty() && write(conn, batch).await.is_err() {
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
                if write(conn, batch).await.is_err() {
                    return true;
                }
            }
            frame = conn.next_frame() => match frame {
                Some(Ok(Frame::Pong { .. })) => heard = Instant::now(),
                Some(Ok(Frame::Error { message })) => {
                    tracing::warn!(node = %me, %message, "a peer closed our link");
                    return true;
                }
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
                if write(conn, vec![Frame::Ping { nonce }]).await.is_err() {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
