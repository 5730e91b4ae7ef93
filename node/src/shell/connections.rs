//! Inbound connections: the acceptor; the registry that counts connections per class and makes
//! room in a full class by closing its least recently active one (a full class of peers refuses
//! the newcomer instead, and a peer past its own share closes its own least recently active
//! connection, [`PEER_CONNECTIONS_PER_NODE_MAX`]); the first frame, which settles who a
//! connection is (a `Hello` and its handshake, or an anonymous client's request); the check of
//! every later frame against that role; and the task that serves one connection, which tells
//! the driver when it closes, however it ends. The rules they enforce are in the docs of
//! [`crate::shell`] ("Who may speak, and how much").

use super::{
    ADMIN_CONNECTIONS_MAX, ADMIN_INBOUND_BYTES_MAX, CLIENT_CONNECTIONS_MAX,
    CLIENT_INBOUND_BYTES_MAX, CONNECTION_IDLE_MS, CONNECTION_OUTBOUND_BYTES_MAX,
    CONNECTION_QUEUE_MAX, Event, HANDSHAKE_TIMEOUT_MS, Outbound, PEER_CONNECTIONS_MAX,
    PEER_CONNECTIONS_PER_NODE_MAX, PEER_INBOUND_BYTES_MAX, PENDING_CONNECTIONS_MAX,
    PENDING_INBOUND_BYTES_MAX, RECONNECT_BACKOFF_MS, ReplyQueue, WRITE_BATCH_FRAMES_MAX, write,
};
use crate::auth::{self, Role};
use crate::conn::{self, Budget, Charge, Conn};
use crate::coordinator::{ClientToken, Share};
use crate::env::{Env, Listener};
use crate::ring::NodeId;
use crate::wire::{
    CLIENT_FRAME_BYTES_MAX, ErrorKind, FIRST_FRAME_BYTES_MAX, FRAME_BYTES_MAX, Frame, Request,
    RequestError, Response,
};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Duration, Instant, sleep, timeout};

/// What every connection task shares: how to check who speaks, where events go, and the budgets.
pub(super) struct ConnContext<E> {
    pub(super) env: E,
    pub(super) id: NodeId,
    pub(super) cluster: String,
    pub(super) auth: auth::AuthConfig,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) budgets: InboundBudgets,
    pub(super) registry: RefCell<Registry>,
    /// New connections refused for want of budget.
    pub(super) refusals: LogThrottle,
}

/// Counts a kind of event that strangers can cause at will (a connection evicted, refused), and
/// says which ones to log: the 1st, 2nd, 4th, 8th... and every 1,024th after, with the count. A
/// line per event let a stranger's churn write 13 MB of log in 20 s.
#[derive(Debug, Default)]
pub(super) struct LogThrottle {
    count: Cell<u64>,
}

/// After this many events, a throttled one is logged once per this many.
const LOG_EVERY_EVENTS: u64 = 1_024;

impl LogThrottle {
    /// Counts one event: its number if it is one to log.
    pub(super) fn tick(&self) -> Option<u64> {
        let n = self.count.get() + 1;
        self.count.set(n);
        (n.is_power_of_two() || n.is_multiple_of(LOG_EVERY_EVENTS)).then_some(n)
    }
}

/// The inbound bytes of each class of connections (see the module docs of `shell`).
pub(super) struct InboundBudgets {
    pending: Budget,
    client: Budget,
    admin: Budget,
    pub(super) peer: Budget,
}

impl InboundBudgets {
    pub(super) fn new() -> InboundBudgets {
        InboundBudgets {
            pending: Budget::new(PENDING_INBOUND_BYTES_MAX),
            client: Budget::new(CLIENT_INBOUND_BYTES_MAX),
            admin: Budget::new(ADMIN_INBOUND_BYTES_MAX),
            peer: Budget::new(PEER_INBOUND_BYTES_MAX),
        }
    }

    fn of(&self, class: Class) -> &Budget {
        match class {
            Class::Pending => &self.pending,
            Class::Client => &self.client,
            Class::Admin => &self.admin,
            Class::Peer => &self.peer,
        }
    }
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

    /// The class's bound, with the node's client bound (`NodeConfig::client_connections_max`,
    /// at most [`CLIENT_CONNECTIONS_MAX`]).
    fn connections_max(self, clients_max: usize) -> usize {
        match self {
            Class::Pending => PENDING_CONNECTIONS_MAX,
            Class::Client => clients_max.min(CLIENT_CONNECTIONS_MAX),
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

/// One live connection: its class, the node it speaks for (a peer's), when it was last active
/// (a logical tick, not a clock reading), and how to close it.
struct Slot {
    class: Class,
    peer: Option<NodeId>,
    active: Rc<Cell<u64>>,
    close: Rc<Notify>,
}

/// The live connections by class. Only touched from the connection tasks of one `LocalSet`.
pub(super) struct Registry {
    slots: BTreeMap<u64, Slot>,
    counts: [usize; 4],
    tick: Rc<Cell<u64>>,
    /// The client class's bound (`NodeConfig::client_connections_max`).
    clients_max: usize,
    /// Connections evicted from a full class.
    evictions: LogThrottle,
}

impl Registry {
    pub(super) fn new(clients_max: usize) -> Self {
        assert!(clients_max >= 1, "a node serves at least one client");
        Registry {
            slots: BTreeMap::new(),
            counts: [0; 4],
            tick: Rc::default(),
            clients_max,
            evictions: LogThrottle::default(),
        }
    }

    /// Puts connection `conn` in `class` (moving it from the one it was in), closing the least
    /// recently active connection of a full class that evicts; refuses for a full class that
    /// does not. A peer's connection (`peer`) past [`PEER_CONNECTIONS_PER_NODE_MAX`] of its
    /// node closes that node's least recently active one first: the node gave up on it.
    fn admit(
        &mut self,
        conn: u64,
        class: Class,
        peer: Option<&NodeId>,
        active: &Rc<Cell<u64>>,
        close: &Rc<Notify>,
    ) -> Result<(), String> {
        if let Some(slot) = self.slots.remove(&conn) {
            self.counts[slot.class.index()] -= 1;
        }
        if let Some(peer) = peer {
            let of_peer = |s: &&Slot| s.peer.as_ref() == Some(peer);
            if self.slots.values().filter(of_peer).count() >= PEER_CONNECTIONS_PER_NODE_MAX {
                let victim = self
                    .slots
                    .iter()
                    .filter(|(_, s)| of_peer(s))
                    .min_by_key(|(_, s)| s.active.get())
                    .map(|(&c, _)| c)
                    .expect("a peer at its bound has a connection");
                tracing::warn!(
                    conn = victim,
                    %peer,
                    "{PEER_CONNECTIONS_PER_NODE_MAX} connections of one peer: closing its least \
                     recently active"
                );
                self.evict(victim);
            }
        }
        if self.counts[class.index()] >= class.connections_max(self.clients_max) {
            if !class.evicts() {
                return Err(format!(
                    "{} {class:?} connections already: closing a new one",
                    class.connections_max(self.clients_max)
                ));
            }
            let victim = self
                .slots
                .iter()
                .filter(|(_, s)| s.class == class)
                .min_by_key(|(_, s)| s.active.get())
                .map(|(&c, _)| c)
                .expect("a full class has a connection");
            if let Some(evictions) = self.evictions.tick() {
                tracing::warn!(
                    conn = victim,
                    ?class,
                    evictions,
                    "{} {class:?} connections: closing the least recently active",
                    class.connections_max(self.clients_max)
                );
            }
            self.evict(victim);
        }
        self.counts[class.index()] += 1;
        self.touch(active);
        self.slots.insert(
            conn,
            Slot {
                class,
                peer: peer.cloned(),
                active: active.clone(),
                close: close.clone(),
            },
        );
        debug_assert!(self.counts[class.index()] <= class.connections_max(self.clients_max));
        debug_assert!(peer.is_none_or(|peer| {
            let of_peer = self
                .slots
                .values()
                .filter(|s| s.peer.as_ref() == Some(peer));
            of_peer.count() <= PEER_CONNECTIONS_PER_NODE_MAX
        }));
        Ok(())
    }

    /// Takes connection `conn` out and tells its task to close it.
    fn evict(&mut self, conn: u64) {
        let slot = self.slots.remove(&conn).expect("a live connection");
        self.counts[slot.class.index()] -= 1;
        slot.close.notify_one();
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

pub(super) async fn accept_loop<E: Env>(listener: E::Listener, ctx: Rc<ConnContext<E>>) {
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
            let admitted =
                ctx.registry
                    .borrow_mut()
                    .admit(conn, Class::Pending, None, &active, &close);
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

/// Checks a frame against the connection's role and turns it into what to do; a request spends
/// `share` of the coordinator's bounds.
fn inbound(frame: Frame, role: &Role, conn: u64, share: Share, charge: Charge) -> Inbound {
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
                client: ClientToken { conn, id, share },
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
    let Ok(mut conn) = Conn::new(stream, &ctx.budgets.pending, FIRST_FRAME_BYTES_MAX) else {
        if let Some(refusals) = ctx.refusals.tick() {
            tracing::warn!(
                refusals,
                "inbound budget of new connections spent: closing a new connection"
            );
        }
        return;
    };
    let settled = tokio::select! {
        biased;
        _ = close.notified() => None,
        settled = settle_role(&mut conn, ctx) => settled,
    };
    let Some((role, first)) = settled else { return };
    // An anonymous connection (its first frame a request) is a client's, whatever its rights: on
    // an open node it may use the admin verbs, but it is the clients' traffic, and 32 admin slots
    // would cut off a busy application's connections. The admin budget is for those who say Hello.
    let class = if first.is_some() {
        Class::Client
    } else {
        Class::of(&role)
    };
    let peer = match &role {
        Role::Peer { id } if class == Class::Peer => Some(id),
        _ => None,
    };
    let admitted = ctx
        .registry
        .borrow_mut()
        .admit(conn_id, class, peer, active, close);
    if let Err(message) = admitted {
        refuse(&mut conn, message).await;
        return;
    }
    let budget = ctx.budgets.of(class);
    // Admins keep a reserve of the coordinator's bounds that clients cannot spend.
    let share = match class {
        Class::Admin => Share::Admins,
        Class::Pending | Class::Client | Class::Peer => Share::Clients,
    };
    if conn.move_to(budget).is_err() {
        let message = format!("the node's inbound budget for {class:?} connections is spent");
        if let Some(refusals) = ctx.refusals.tick() {
            tracing::warn!(conn = conn_id, refusals, %message, "closing a new connection");
        }
        refuse(&mut conn, message).await;
        return;
    }
    conn.set_frame_bytes_max(match class {
        Class::Client => CLIENT_FRAME_BYTES_MAX,
        Class::Pending | Class::Admin | Class::Peer => FRAME_BYTES_MAX,
    });
    let (replies, mut outbox) = mpsc::channel::<Outbound<Frame>>(CONNECTION_QUEUE_MAX);
    let replies = ReplyQueue {
        frames: replies,
        budget: Budget::new(CONNECTION_OUTBOUND_BYTES_MAX),
    };
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
    // In a block of its own, so that every way out of it (a `return`) still tells the driver
    // below.
    async {
        if let Some((id, request)) = first {
            let Some(charge) = budget.charge(conn.last_frame_bytes()) else {
                return refuse(&mut conn, "the node is overloaded".into()).await;
            };
            let event = match inbound(Frame::Request { id, request }, &role, conn_id, share, charge) {
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
        // One idle timer for the connection's life, pushed back only when it fires: a timeout
        // around each read would enter and leave the timer wheel once per frame (and a clock
        // reading per frame is not free either). A connection is closed after one to two idle
        // periods of silence.
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
                    // The frames' bytes stay charged until they are written.
                    let (frames, _charges): (Vec<Frame>, Vec<_>) =
                        batch.into_iter().map(Outbound::split).unzip();
                    if write(&mut conn, frames).await.is_err() {
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
                    let Some(charge) = budget.charge(conn.last_frame_bytes()) else {
                        refuse(&mut conn, "closing connection: the node's inbound budget is spent".into()).await;
                        break;
                    };
                    match inbound(frame, &role, conn_id, share, charge) {
                        Inbound::Event(event) => {
                            let delay = match &event {
                                Event::Peer { message, .. } => ctx.env.peer_delay(message),
                                _ => Duration::ZERO,
                            };
                            if delay.is_zero() {
                                if events.send(event).await.is_err() {
                                    break;
                                }
                            } else {
                                // The simulated network's latency model: the message arrives later,
                                // on its own (a later one may overtake it), still charged to the
                                // inbound budget, which bounds what is held back.
                                let events = events.clone();
                                tokio::task::spawn_local(async move {
                                    sleep(delay).await;
                                    let _ = events.send(event).await;
                                });
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
    }
    .await;
    // However the connection ended (its first request answered on the spot, a frame refused,
    // the budget spent), the driver that was told of it is told it closed: its reply queue, a
    // few kilobytes, stayed in the driver's table for good, and a stranger's loop of connections
    // each answered "an admin request needs the cluster secret" grew the node without bound.
    if class != Class::Peer {
        let _ = events.send(Event::Closed { conn: conn_id }).await;
    }
}
