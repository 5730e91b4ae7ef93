//! Peer links: one task per other node, which dials it, proves the cluster secret and checks the
//! peer's, sends it this node's messages in batches, pings it, and re-dials when the link breaks
//! or goes silent (turmoil's TCP does not retransmit, so silence is a broken link). Messages
//! queued while a link re-dials wait for its next connection, a bounded number for a bounded
//! time.

use super::{
    CONNECT_TIMEOUT_MS, Event, LINK_FRAME_BYTES_MAX, LINK_FROZEN_MS, LINK_HANDSHAKE_TIMEOUT_MS,
    LINK_PENDING_MAX, LINK_PENDING_MS_MAX, Outbound, PEER_SILENCE_MS, PING_INTERVAL_MS,
    RECONNECT_BACKOFF_MS, WRITE_BATCH_FRAMES_MAX, write,
};
use crate::auth::{self, Role};
use crate::config::NodeConfig;
use crate::conn::{self, Budget, Conn};
use crate::env::Env;
use crate::ring::NodeId;
use crate::wire::{Frame, PeerMessage};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Duration, Instant, sleep, timeout};

/// Who a peer link connects, and how it is woken.
pub(super) struct PeerLink {
    pub(super) peer: NodeId,
    pub(super) addr: String,
    /// Notified when the peer is heard from: re-dial now rather than after the back-off.
    pub(super) wake: Arc<Notify>,
}

/// Messages kept for the link's next connection, with when they were queued (their bytes still
/// charged to the link's budget).
type Pending = VecDeque<(Instant, Outbound<PeerMessage>)>;

/// Keeps a link to one peer: dial, prove the secret and check the peer's, send, ping, and re-dial
/// when it breaks or goes silent.
pub(super) async fn peer_link<E: Env>(
    env: E,
    config: NodeConfig,
    link: PeerLink,
    mut queue: mpsc::Receiver<Outbound<PeerMessage>>,
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
    queue: &mut mpsc::Receiver<Outbound<PeerMessage>>,
    pending: &mut Pending,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let fresh = Duration::from_millis(LINK_PENDING_MS_MAX);
    while !pending.is_empty() {
        let (batch, _charges): (Vec<Frame>, Vec<_>) = std::iter::from_fn(|| pending.pop_front())
            .filter(|(queued, _)| queued.elapsed() <= fresh)
            .take(WRITE_BATCH_FRAMES_MAX)
            .map(|(_, message)| {
                let (message, charges) = message.split();
                let frame = Frame::Peer {
                    from: me.clone(),
                    message,
                };
                (frame, charges)
            })
            .unzip();
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
                let mut batch = vec![message];
                while batch.len() < WRITE_BATCH_FRAMES_MAX {
                    let Ok(message) = queue.try_recv() else { break };
                    batch.push(message);
                }
                // The messages' bytes stay charged until they are written.
                let (batch, _charges): (Vec<Frame>, Vec<_>) = batch
                    .into_iter()
                    .map(|message| {
                        let (message, charges) = message.split();
                        (Frame::Peer { from: me.clone(), message }, charges)
                    })
                    .unzip();
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
