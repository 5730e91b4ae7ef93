//! The async shell: drives one [`Core`] with real (or simulated) sockets, timers and disk.
//!
//! Tasks, all on the caller's runtime:
//! - the *driver* ([`run`]'s own loop) owns the core and the storage; it takes events from one
//!   bounded queue, feeds the core every event already queued (up to [`EVENTS_PER_STEP_MAX`]), and
//!   carries out the [`crate::core::Ready`] they produced (write, one sync for all, then send):
//!   group commit, so that a burst of writes costs one fsync and nothing is answered before it.
//!   The fsync runs apart ([`Env::run_sync`]: on the node's sync thread on the real
//!   disk, after a simulated delay on the simulator's, so that both worlds run this same path)
//!   while the driver goes on taking events and storing their writes; the outputs wait in step
//!   order until a sync that began after them is done (`Held`), and the next sync covers every
//!   step stored meanwhile; reads of keys with no unsynced write (a get of another key than the
//!   put's) leave at once. If
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
//! [`HANDSHAKE_TIMEOUT_MS`] to do so), [`CLIENT_CONNECTIONS_MAX`] clients (anonymous connections
//! among them, also an open node's, which have admin rights; fewer where the process's
//! open-file limit leaves no room for them: [`clients_for_open_files`]), [`ADMIN_CONNECTIONS_MAX`] admins
//! that said Hello, and [`PEER_CONNECTIONS_MAX`] peers. A full class of pending
//! connections, clients or admins makes room by closing its least recently active connection
//! (idle connections cannot lock newcomers out); a full class of peers, all authenticated,
//! refuses the newcomer, and a peer's newcomer past [`PEER_CONNECTIONS_PER_NODE_MAX`] closes
//! that peer's own least recently active connection (the dead ones a re-dialling link leaves
//! behind cannot fill the class). Every byte a connection buffers, and every decoded frame
//! waiting for the driver, is charged to its class's budget of bytes ([`PENDING_INBOUND_BYTES_MAX`]
//! until it says who it is, then [`CLIENT_INBOUND_BYTES_MAX`], [`ADMIN_INBOUND_BYTES_MAX`] or
//! [`PEER_INBOUND_BYTES_MAX`]); a connection whose frame cannot get its bytes is closed with an
//! error. Strangers' partial frames can spend the clients' budget, not the peers': replication
//! and the operator go on.
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
//!
//! # Layout
//!
//! This file holds the driver ([`run`]) and its events, the bounds of every queue and timer,
//! joining through the seeds, and the frame writer that both kinds of connection use; the tasks
//! and the start have a file each:
//!
//! - `storage.rs`: opening the disk at start: the data directory, the log store's recovery, and
//!   the actor id of this incarnation ([`open_storage`]).
//! - `connections.rs`: the acceptor and the inbound connections, their classes and budgets.
//! - `peer_link.rs`: the links to the other nodes.
//! - `tests.rs`: the storage policy on a real disk, and fail-stop.

use crate::auth::Role;
use crate::config::{FsyncPolicy, NodeConfig};
use crate::conn::{Budget, Charge, Conn, WRITE_BUFFER_BYTES};
use crate::coordinator::ClientToken;
use crate::core::{Core, Now, Released, Stored};
use crate::env::Env;
use crate::ring::NodeId;
use crate::store::Storage;
use crate::store::log::{LogEnd, LogStore};
use crate::wire::{ErrorKind, Frame, PeerMessage, Request, RequestError, Response};
use connections::{ConnContext, InboundBudgets, Registry, accept_loop};
use peer_link::{PeerLink, peer_link};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};
// tokio's clock, not std's: turmoil drives it in simulated time, so timers replay exactly.
use tokio::time::{Duration, Instant, sleep, sleep_until, timeout};

mod connections;
mod peer_link;
mod storage;

pub use storage::{Startup, check_data_dir, open_storage};

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
/// A real node serves fewer where its open-file limit leaves no room for them
/// ([`clients_for_open_files`]).
pub const CLIENT_CONNECTIONS_MAX: usize = 1_024;
/// The fewest client connections a node starts with: below it, `dynamo serve` refuses to start
/// and says to raise the open-file limit.
pub const CLIENT_CONNECTIONS_MIN: usize = 16;
/// Descriptors a node keeps for itself besides its connections and peer links: the standard
/// streams, the listener, the runtime's poller and signal pipe, the sync thread's, and its log's
/// data files (each open while the node runs; 256 of 64 MiB hold 16 GiB), manifest and hints.
pub const OWN_FDS_RESERVED: usize = 256;
/// Admin connections served at once; a newcomer past it closes the least recently active one.
pub const ADMIN_CONNECTIONS_MAX: usize = 32;
/// Peer connections served at once (each member dials one; a re-dial may overlap the old one).
/// Past it a newcomer is refused: peers are authenticated, so only members fill it, each within
/// [`PEER_CONNECTIONS_PER_NODE_MAX`].
pub const PEER_CONNECTIONS_MAX: usize = 2 * crate::ring::MEMBERS_MAX;
/// Peer connections served at once for one node: its link, and a re-dial that may overlap it
/// while the old connection is not yet known dead. A newcomer past it closes the least recently
/// active connection of the same node, which its peer gave up on: a link that keeps going silent
/// re-dials every second or so, and the dead connections it leaves behind would otherwise stay
/// until they idle out, fill [`PEER_CONNECTIONS_MAX`], and lock every peer's re-dial out.
pub const PEER_CONNECTIONS_PER_NODE_MAX: usize = 2;
/// How long a new connection has to say who it is (its first frame, and the handshake after a
/// `Hello`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// How long a peer link's handshake may take: as long as the link may go silent. turmoil's TCP
/// (like a real one behind a dead route) stalls silently on a lost segment, and a link that
/// waited longer would keep a healed peer unreachable.
pub const LINK_HANDSHAKE_TIMEOUT_MS: u64 = PEER_SILENCE_MS;
/// Bytes the connections that have not said who they are may hold in read buffers: as much as
/// [`PENDING_CONNECTIONS_MAX`] of them can (each at most its read buffer or its first frame), and
/// one more first frame's worth. The class's count makes room for a newcomer by evicting, but
/// the evicted connection gives its bytes back only when its task next runs, after the newcomer
/// asked for its read buffer: without the headroom, 64 strangers each holding all but the last
/// byte of a first frame (and reconnecting when evicted) had 98% of new connections, admins and
/// joining nodes among them, refused. The headroom holds 256 newcomers' read buffers at once.
pub const PENDING_INBOUND_BYTES_MAX: usize = (PENDING_CONNECTIONS_MAX + 1)
    * (crate::conn::FRAME_HEADER_BYTES + crate::wire::FIRST_FRAME_BYTES_MAX);
/// Bytes clients' connections (anonymous ones included) may hold in read buffers and decoded
/// frames waiting for the driver.
pub const CLIENT_INBOUND_BYTES_MAX: usize = 96 * 1024 * 1024;
/// Bytes admins' connections may hold so.
pub const ADMIN_INBOUND_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes peers' connections may hold so, this node's links to them included (their pongs):
/// replication, hints and anti-entropy.
pub const PEER_INBOUND_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Bytes all connections together may hold in read buffers and in decoded frames waiting for
/// the driver: the sum of the classes' budgets ([`crate::conn::Budget`]), one per class so that
/// a class that spends its own (strangers' partial frames, say) leaves the others theirs.
pub const INBOUND_BYTES_MAX: usize = PENDING_INBOUND_BYTES_MAX
    + CLIENT_INBOUND_BYTES_MAX
    + ADMIN_INBOUND_BYTES_MAX
    + PEER_INBOUND_BYTES_MAX;
const _: () =
    assert!(PENDING_INBOUND_BYTES_MAX >= PENDING_CONNECTIONS_MAX * crate::conn::READ_BUFFER_BYTES);
/// Bytes all outbound queues together may hold: replies waiting for their connections and
/// messages waiting for their peer links. A reply that cannot get its bytes becomes a short
/// `Overloaded` error; a peer message that cannot is dropped (its request's deadline covers it).
pub const OUTBOUND_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Bytes of replies waiting to go back on one connection: a client that pipelines reads of a
/// large key and reads its answers slowly (or never) holds at most this much of the node.
/// Room for two of the largest frames, so that a large answer is never refused on its own.
pub const CONNECTION_OUTBOUND_BYTES_MAX: usize = 2 * crate::wire::FRAME_BYTES_MAX;
/// Bytes of messages waiting to go to one peer, queued or kept while its link re-dials: a slow
/// or stopped peer holds at most this much of the node.
pub const LINK_OUTBOUND_BYTES_MAX: usize = 32 * 1024 * 1024;
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
/// Steps whose outputs wait for a sync that runs apart (`Held`); past it the driver takes no
/// new events until the sync is done, so that a slow disk slows the clients instead of filling
/// the node's memory. (Timers may still add a step each while it waits: a handful, as the sync
/// that frees them all is under way.)
pub const HELD_STEPS_MAX: usize = 1_024;
/// Bytes of outputs held for a sync ([`Stored::held_bytes`]); past it the driver takes no new
/// events until the sync is done, as past [`HELD_STEPS_MAX`]. The count of steps alone does not
/// bound memory: reads of a large key just written wait for its sync with their answers, and
/// 500 reads of a 1 MiB value held half a gigabyte while a slow disk synced (a disk that stalls
/// for seconds and a client that reads in a loop: gigabytes).
pub const HELD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A frame or message waiting in an outbound queue, its encoded bytes charged to the queue's own
/// budget and to the node's ([`OUTBOUND_BYTES_MAX`]) until it is written or dropped.
struct Outbound<T> {
    item: T,
    charges: Option<(Charge, Charge)>,
}

impl<T: serde::Serialize> Outbound<T> {
    /// `item` charged to `queue` and `total` at its encoded size (for `Frame::Peer` around it,
    /// within a few bytes of the sender's name); `Err(item)` when either budget is spent.
    fn charged(item: T, queue: &Budget, total: &Budget) -> Result<Outbound<T>, T> {
        // The exact size (a walk of the value that copies nothing, values and keys counted by
        // their lengths): cheap beside the encoding, the MAC and the write that follow.
        let bytes = postcard::experimental::serialized_size(&item).unwrap_or(usize::MAX / 4);
        let Some(mine) = queue.charge(bytes) else {
            return Err(item);
        };
        let Some(all) = total.charge(bytes) else {
            return Err(item);
        };
        Ok(Outbound {
            item,
            charges: Some((mine, all)),
        })
    }

    /// The item, and what it holds of the budgets (given back when dropped).
    fn split(self) -> (T, Option<(Charge, Charge)>) {
        (self.item, self.charges)
    }

    /// `item` charged to no budget: a short frame whose number the queue's length bounds.
    fn uncharged(item: T) -> Outbound<T> {
        Outbound {
            item,
            charges: None,
        }
    }
}

/// The outputs of steps that wait for their writes to be durable, in step order, and the syncs
/// that make them so. The fsync runs apart from the driver ([`crate::fs::DetachedSync`], run by
/// [`Env::run_sync`]: on a thread on the real disk, after a simulated delay on turmoil's) while
/// the driver goes on taking events and storing their writes; when it is done, the outputs of
/// every step stored before it began leave, and one sync starts for everything stored since
/// (group commit across steps). A step that wrote nothing waits too while earlier writes are
/// unsynced, because its answers may read them. Where a sync cannot run apart (the unit tests'
/// in-memory disk) it runs at once and nothing is held.
#[derive(Default)]
struct Held {
    /// Steps that wrote and need a sync, counted from the start.
    written: u64,
    /// Of those, how many are durable.
    synced: u64,
    /// Outputs, each with the count of `written` it needs to be durable and what it weighs
    /// ([`Stored::held_bytes`]).
    steps: VecDeque<(u64, Stored, usize)>,
    /// What the outputs in `steps` weigh together.
    held_bytes: usize,
    /// The sync in progress, with the count of `written` it makes durable.
    syncing: Option<(u64, crate::env::SyncJob)>,
    /// Keys written by steps not yet durable, each with the count of `written` that makes its
    /// last write durable: a read of any other key may leave at once ([`Held::take_early_reads`]).
    unsynced_keys: BTreeMap<Vec<u8>, u64>,
}

impl Held {
    /// Holds a step's outputs until what they depend on is durable.
    fn push(&mut self, stored: Stored) {
        if stored.needs_sync() {
            self.written += 1;
            for key in stored.touched_keys() {
                self.unsynced_keys.insert(key.clone(), self.written);
            }
        }
        let bytes = stored.held_bytes();
        self.held_bytes += bytes;
        self.steps.push_back((self.written, stored, bytes));
    }

    /// Starts a sync of everything stored so far, unless one is running or all is durable.
    fn start_sync<S: crate::store::Storage, E: Env>(
        &mut self,
        keyspace: &mut crate::store::keyspace::Keyspace<S>,
        env: &E,
    ) -> io::Result<()> {
        if self.syncing.is_some() || self.synced == self.written {
            return Ok(());
        }
        match keyspace.begin_sync()? {
            None => self.synced = self.written,
            Some(sync) => self.syncing = Some((self.written, env.run_sync(sync))),
        }
        Ok(())
    }

    /// Waits for the running sync (forever if none runs), and counts what it made durable.
    async fn sync_done(&mut self) -> io::Result<()> {
        let Some((_, job)) = &mut self.syncing else {
            return std::future::pending().await;
        };
        let result = job.await;
        let (covered, _) = self.syncing.take().expect("a sync was running");
        result?;
        self.synced = covered;
        self.unsynced_keys.retain(|_, needed| *needed > covered);
        Ok(())
    }

    /// Waits for the running sync, if there is one, and counts what it made durable.
    async fn finish_sync(&mut self) -> io::Result<()> {
        if self.syncing.is_none() {
            return Ok(());
        }
        self.sync_done().await
    }

    /// The reads of the newest step that may leave before its sync, if it must wait for one: a
    /// get is not answered after the fsync of another key's put. They read keys whose writes are
    /// all durable, so they carry nothing a crash could take back (see [`Stored::take_reads`]).
    /// Where the sync ran in place (the unit tests' in-memory disk) nothing waits, and the outputs
    /// leave together, in the core's order.
    fn take_early_reads(&mut self) -> Option<Released> {
        let Held {
            synced,
            steps,
            unsynced_keys,
            held_bytes,
            ..
        } = self;
        let (needed, stored, bytes) = steps.back_mut()?;
        if *needed <= *synced {
            return None;
        }
        let synced = *synced;
        let reads = stored.take_reads(|key| unsynced_keys.get(key).is_none_or(|&n| n <= synced));
        let kept = stored.held_bytes();
        *held_bytes -= *bytes - kept;
        *bytes = kept;
        Some(reads)
    }

    /// The oldest held outputs, if they may leave now.
    fn pop_released(&mut self) -> Option<Released> {
        match self.steps.front() {
            Some((needed, _, _)) if *needed <= self.synced => {
                let (_, stored, bytes) = self.steps.pop_front()?;
                self.held_bytes -= bytes;
                Some(stored.release())
            }
            _ => None,
        }
    }

    /// Whether the driver may take more events.
    fn has_room(&self) -> bool {
        self.steps.len() < HELD_STEPS_MAX && self.held_bytes < HELD_BYTES_MAX
    }
}

/// Where the driver sends replies for one connection: its queue, and the queue's byte budget.
struct ReplyQueue {
    frames: mpsc::Sender<Outbound<Frame>>,
    budget: Budget,
}

/// Where the driver sends messages for one peer: its link's queue, and the link's byte budget
/// (shared with the messages the link keeps while it re-dials).
struct PeerQueue {
    messages: mpsc::Sender<Outbound<PeerMessage>>,
    budget: Budget,
}

/// Something for the driver to feed the core.
enum Event {
    Opened {
        conn: u64,
        replies: ReplyQueue,
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

    let budgets = InboundBudgets::new();
    let peer_budget = budgets.peer.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let ctx = Rc::new(ConnContext {
        env: env.clone(),
        id: config.id.clone(),
        cluster: config.cluster.clone(),
        auth: config.auth.clone(),
        events: events.clone(),
        budgets,
        registry: RefCell::new(Registry::new(config.client_connections_max)),
        refusals: Default::default(),
    });
    tasks.spawn_local(accept_loop(listener, ctx));
    let outbound = Budget::new(OUTBOUND_BYTES_MAX);
    let mut peers: BTreeMap<NodeId, PeerQueue> = BTreeMap::new();
    // Per peer link: poked when the peer is heard from, so that a link in back-off re-dials now.
    let mut wakes: BTreeMap<NodeId, Arc<Notify>> = BTreeMap::new();
    let link = |peers: &mut BTreeMap<NodeId, PeerQueue>,
                wakes: &mut BTreeMap<NodeId, Arc<Notify>>,
                tasks: &mut tokio::task::JoinSet<()>,
                members: &BTreeMap<NodeId, String>| {
        for (peer, addr) in members {
            if *peer == config.id || peers.contains_key(peer) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            let queue = PeerQueue {
                messages: tx,
                budget: Budget::new(LINK_OUTBOUND_BYTES_MAX),
            };
            peers.insert(peer.clone(), queue);
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
                peer_budget.clone(),
            ));
        }
    };
    link(&mut peers, &mut wakes, &mut tasks, &config.members);
    // The ring this node last knew, if it ever changed from the configured one. A damaged one is
    // not worth stopping for: gossip brings the current ring.
    match keyspace.membership() {
        Ok(Some((ring, addrs))) => {
            check_partition_count(&config, ring.partition_count(), "the data directory's ring")?;
            core.adopt(ring, &addrs);
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(error = %e, "saved ring is damaged; using the configured one")
        }
        Err(e) => return Err(e),
    }
    if let Some((ring, addrs)) = joined {
        let weight = ring.members().get(&config.id).copied();
        // The driver's clock starts at 0 just below: the join is made now.
        if core.adopt(ring, &addrs)
            && let Some(weight) = weight
        {
            core.note_own_change(true, weight, 0);
        }
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
    let mut clients: BTreeMap<u64, ReplyQueue> = BTreeMap::new();
    let never = start + Duration::from_secs(86_400 * 365);
    // The timers live across iterations and are reset only when their deadline moves: a fresh
    // `sleep_until` per event would enter and leave tokio's timer wheel once per message.
    let protocol_timer = sleep_until(never);
    let compaction_timer = sleep_until(start + Duration::from_millis(COMPACTION_CHECK_MS));
    let sync_timer = sleep_until(start + Duration::from_millis(sync_interval_ms));
    tokio::pin!(protocol_timer, compaction_timer, sync_timer);
    let mut held = Held::default();
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
            synced = held.sync_done() => {
                synced.map_err(|e| stop(&config, "storage", e))?;
                // What arrived while the disk synced joins one step before the next sync starts
                // (below), so that this sync covers it too, as a step after a blocking fsync would.
                let step_now = now();
                for _ in 0..EVENTS_PER_STEP_MAX {
                    if !held.has_room() {
                        break;
                    }
                    let Ok(event) = inbox.try_recv() else { break };
                    handle(event, &mut core, step_now);
                }
            }
            event = inbox.recv(), if held.has_room() => {
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
                // A compaction removes the files it rewrote, the one a running sync covers among
                // them, and starts from "everything so far is durable": the sync ends first.
                held.finish_sync().await.map_err(|e| stop(&config, "storage", e))?;
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
            let stored = ready
                .store(&mut keyspace, &config)
                .map_err(|e| stop(&config, "storage", e))?;
            held.push(stored);
        }
        held.start_sync(&mut keyspace, &env)
            .map_err(|e| stop(&config, "storage", e))?;
        if let Some(reads) = held.take_early_reads() {
            send(reads, &peers, &clients, &outbound);
        }
        while let Some(released) = held.pop_released() {
            if let Some((_, members)) = &released.membership {
                link(&mut peers, &mut wakes, &mut tasks, members);
            }
            send(released, &peers, &clients, &outbound);
        }
    }
    // A sync in flight covers writes the store already counts as syncing: it ends first, so that
    // the final sync leaves nothing behind.
    held.finish_sync()
        .await
        .map_err(|e| stop(&config, "final sync", e))?;
    keyspace
        .sync()
        .map_err(|e| stop(&config, "final sync", e))?;
    // Everything this actor wrote is durable and nothing more leaves: the next start may keep it.
    let log_end = keyspace.storage_mut().log_end().unwrap_or(LogEnd {
        file_id: 0,
        len_bytes: 0,
    });
    crate::store::clean::mark(&env.fs(), data_dir, core.actor(), startup.start, log_end)
        .map_err(|e| stop(&config, "clean-shutdown marker", e))?;
    tasks.abort_all();
    tracing::info!(node = %config.id, "node stopped");
    Ok(())
}

/// The client connections a process whose open-file limit is `fds_max` serves: what is left when
/// every other class of connection, the peer links this node dials and its own files
/// ([`OWN_FDS_RESERVED`]) are counted at their bounds, at most [`CLIENT_CONNECTIONS_MAX`]. Found
/// by an attack: under the common soft limit of 1,024, a stranger's 1,010 connections left the
/// node no descriptor for its next log file, and the node stopped as on a failed disk. Every
/// bound here is enforced as a newcomer arrives, so the sum is never passed.
pub fn clients_for_open_files(fds_max: u64) -> Result<usize, String> {
    let others = PENDING_CONNECTIONS_MAX
        + ADMIN_CONNECTIONS_MAX
        + PEER_CONNECTIONS_MAX
        + crate::ring::MEMBERS_MAX
        + OWN_FDS_RESERVED;
    let fds_max = usize::try_from(fds_max).unwrap_or(usize::MAX);
    let clients = fds_max.saturating_sub(others).min(CLIENT_CONNECTIONS_MAX);
    if clients < CLIENT_CONNECTIONS_MIN {
        return Err(format!(
            "the open-file limit {fds_max} leaves room for {clients} client connections, fewer \
             than {CLIENT_CONNECTIONS_MIN}: a node needs {} descriptors (raise it with `ulimit -n`)",
            others + CLIENT_CONNECTIONS_MIN
        ));
    }
    Ok(clients)
}

/// Refuses to go on with a ring of another partition count than this node's (`--partitions`):
/// the node would refuse it, and every ring its peers gossip, and route by a ring of its own
/// that no other node agrees on, for good.
fn check_partition_count(config: &NodeConfig, theirs: u32, whose: &str) -> io::Result<()> {
    if theirs == config.partition_count {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{whose} has {theirs} partitions, this node {}: every node of a cluster has the \
             same; start it with --partitions {theirs}",
            config.partition_count
        ),
    ))
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
            // The ring's partition count first: a node that cannot take the seed's ring must
            // not be added to it.
            match client.status().await {
                Ok(status) => {
                    let whose = format!("the ring of seed {seed}");
                    check_partition_count(config, status.ring.partition_count(), &whose)?;
                }
                Err(e) => {
                    tracing::warn!(%seed, error = %e, "cannot reach seed");
                    last = format!("{seed}: {e}");
                    continue;
                }
            }
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
/// Each is charged to its queue's byte budget and to `total`: a peer message past them is
/// dropped, a reply past them becomes a short `Overloaded` error (the client is told, and a
/// client that does not read its answers cannot make the node hold them without bound).
fn send(
    released: Released,
    peers: &BTreeMap<NodeId, PeerQueue>,
    clients: &BTreeMap<u64, ReplyQueue>,
    total: &Budget,
) {
    for (peer, message) in released.messages {
        match peers.get(&peer) {
            Some(queue) => match Outbound::charged(message, &queue.budget, total) {
                Ok(message) => {
                    if queue.messages.try_send(message).is_err() {
                        tracing::debug!(%peer, "peer queue full or closed; message dropped");
                    }
                }
                Err(_) => tracing::debug!(%peer, "peer queue's bytes spent; message dropped"),
            },
            None => tracing::warn!(%peer, "message for an unknown peer dropped"),
        }
    }
    for (client, response) in released.replies {
        if let Some(queue) = clients.get(&client.conn) {
            let frame = Frame::Response {
                id: client.id,
                response,
            };
            let frame = Outbound::charged(frame, &queue.budget, total).unwrap_or_else(|_| {
                tracing::debug!(
                    conn = client.conn,
                    "reply queue's bytes spent; answering an error"
                );
                let response = Response::Error {
                    error: RequestError {
                        kind: ErrorKind::Overloaded,
                        message: "the node holds too many unread answers for this connection \
                                  (read them before sending more requests)"
                            .into(),
                        stored_on: Vec::new(),
                        definite: false,
                    },
                };
                Outbound::uncharged(Frame::Response {
                    id: client.id,
                    response,
                })
            });
            if queue.frames.try_send(frame).is_err() {
                tracing::debug!(
                    conn = client.conn,
                    "client queue full or closed; reply dropped"
                );
            }
        }
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

#[cfg(test)]
mod tests;
