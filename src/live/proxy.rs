//! The TCP proxy `dynamo live` puts on every peer link, through which it partitions, slows and
//! breaks the links between real nodes.
//!
//! There is one listener per directed pair (i, j): node i's `--peers` names node j at the proxy's
//! port for (i, j), so every connection that node i dials to node j passes through it. A node
//! answers a peer over its own dialled connection (shared/DESIGN.md, "Wire"), so the proxy knows
//! at each byte who sent it: on a connection i dialled to j, bytes from i go i -> j and bytes back
//! go j -> i. Each direction is governed by the state of its directed link:
//!
//! - **cut** (a partition; a one-way partition cuts one direction): bytes already sent wait in
//!   the proxy and in the kernel's buffers, as behind a firewall that drops packets, and flow
//!   again after the heal, as TCP's retransmissions would deliver them; the nodes see silence and
//!   drop the link themselves. A new connection whose dialling direction is cut is reset at once,
//!   as a connection refused.
//! - **slow**: every chunk of bytes waits a random time up to the latency bound before it goes on,
//!   in order.
//! - **loss**: each connection is reset with the given probability per millisecond, losing what it
//!   carried (turmoil's model: a lossy link fails, and the node re-dials). TCP over a real lossy
//!   link would rather retransmit and stall; a reset is the loss a node must survive.
//!
//! Clients are not proxied: a client's connection to a node is never cut.
//!
//! The proxy runs on its own runtime thread, so that the harness's clients never delay it.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read at once from one side.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Chunks waiting on a slow link, per direction of a connection.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 256;
/// How long the proxy may take to reach the node behind it.
pub const UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 500;
/// How often a connection under loss draws whether it fails.
pub const LOSS_TICK_MS: u64 = 10;

/// What the links do now, as the nemesis set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Directed links (from, to) that carry nothing.
    pub cut: BTreeSet<(u32, u32)>,
    /// Per-ms probability that a connection fails, in millionths.
    pub loss_ppm: u32,
    /// The most a chunk waits, ms (0: no added latency).
    pub latency_ms_max: u64,
}

/// The nemesis's handle on the links.
#[derive(Clone)]
pub struct Links {
    state: Arc<Mutex<LinkState>>,
    changed: watch::Sender<u64>,
}

impl Links {
    fn new() -> Links {
        Links {
            state: Arc::new(Mutex::new(LinkState::default())),
            changed: watch::Sender::new(0),
        }
    }

    /// Changes the links' state; waiting connections see it at once.
    pub fn update(&self, f: impl FnOnce(&mut LinkState)) {
        f(&mut self.state.lock().expect("link state"));
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// The links' state now.
    pub fn state(&self) -> LinkState {
        self.state.lock().expect("link state").clone()
    }

    fn is_cut(&self, link: (u32, u32)) -> bool {
        self.state.lock().expect("link state").cut.contains(&link)
    }

    /// Waits until `link` is not cut.
    async fn uncut(&self, link: (u32, u32)) {
        let mut changes = self.changed.subscribe();
        while self.is_cut(link) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The running proxy: a listener per directed pair of nodes.
pub struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    /// `ports[i][j]`: where node i reaches node j (0 on the diagonal).
    pub ports: Vec<Vec<u16>>,
    /// The links' controls.
    pub links: Links,
}

impl Proxy {
    /// Starts a proxy in front of the nodes listening at `nodes` (by index).
    pub fn start(nodes: &[SocketAddr]) -> io::Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dynamo-live-proxy")
            .enable_all()
            .build()?;
        let links = Links::new();
        let mut ports = vec![vec![0u16; nodes.len()]; nodes.len()];
        for (i, row) in ports.iter_mut().enumerate() {
            for (j, port) in row.iter_mut().enumerate() {
                if i == j {
                    continue;
                }
                let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
                *port = listener.local_addr()?.port();
                let link = (i as u32, j as u32);
                runtime.spawn(accept_loop(listener, link, nodes[j], links.clone()));
            }
        }
        Ok(Proxy {
            runtime: Some(runtime),
            ports,
            links,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Resets a connection (RST, not FIN): what a refused or broken connection looks like.
fn reset(stream: TcpStream) {
    // SO_LINGER with a zero timeout does not block on drop (tokio deprecates it for the
    // non-zero case): it makes the close a reset.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn accept_loop(listener: TcpListener, link: (u32, u32), node: SocketAddr, links: Links) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if links.is_cut(link) {
            reset(stream);
            continue;
        }
        tokio::spawn(connection(stream, link, node, links.clone()));
    }
}

/// Carries one connection that node `link.0` dialled to node `link.1`.
async fn connection(down: TcpStream, link: (u32, u32), node: SocketAddr, links: Links) {
    let dialled = tokio::time::timeout(
        Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS),
        TcpStream::connect(node),
    )
    .await;
    let Ok(Ok(up)) = dialled else {
        reset(down);
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_read, down_write) = down.into_split();
    let (up_read, up_write) = up.into_split();
    let seed = u64::from(link.0) << 32 | u64::from(link.1) ^ clock_seed();
    let reverse = (link.1, link.0);
    tokio::select! {
        _ = pump(down_read, up_write, link, links.clone(), seed) => {}
        _ = pump(up_read, down_write, reverse, links.clone(), seed ^ 0x5555) => {}
        _ = lossy(links.clone(), seed ^ 0xaaaa) => {}
    }
    // Dropping the halves closes both sockets; a reset is not needed (the nodes re-dial either
    // way), except for loss, where the dropped bytes are lost with the connection as well.
}

/// Moves bytes from `from` to `to` as the state of `link` says, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (u32, u32),
    links: Links,
    seed: u64,
) {
    let (chunks, mut queue) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let reader = {
        let links = links.clone();
        async move {
            let mut rng = seed | 1;
            let mut last = Instant::now();
            loop {
                links.uncut(link).await;
                let mut buf = vec![0u8; CHUNK_BYTES_MAX];
                let count = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(count) => count,
                };
                buf.truncate(count);
                let latency_ms_max = links.state().latency_ms_max;
                let delay_ms = if latency_ms_max == 0 {
                    0
                } else {
                    next_random(&mut rng) % (latency_ms_max + 1)
                };
                // In order: a chunk never overtakes the one before it.
                last = last.max(Instant::now() + Duration::from_millis(delay_ms));
                if chunks.send((last, buf)).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = queue.recv().await {
            tokio::time::sleep_until(at).await;
            links.uncut(link).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

/// Ends (so the connection is dropped) when a loss draw says the connection fails.
async fn lossy(links: Links, seed: u64) {
    let mut rng = seed | 1;
    let mut tick = tokio::time::interval(Duration::from_millis(LOSS_TICK_MS));
    loop {
        tick.tick().await;
        let ppm = links.state().loss_ppm;
        if ppm == 0 {
            continue;
        }
        // P(the connection fails within a tick) = 1 - (1 - p)^LOSS_TICK_MS.
        let p = f64::from(ppm) / 1e6;
        let fail = 1.0 - (1.0 - p).powi(LOSS_TICK_MS as i32);
        let draw = (next_random(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < fail {
            return;
        }
    }
}

/// xorshift64: latencies and loss draws need no more.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server on loopback standing in for node 1.
    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut std::net::TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut got = vec![0u8; text.len()];
        stream.read_exact(&mut got)?;
        Ok(got)
    }

    /// Issue 12, "How it is checked": the proxy's partition really cuts traffic, in the cut
    /// direction only, and the bytes held come through after the heal; a new connection across a
    /// cut is refused.
    #[test]
    fn a_partition_cuts_traffic_and_the_heal_restores_it() {
        let node = echo_server();
        let proxy = Proxy::start(&[node, node]).unwrap();
        let port = proxy.ports[0][1];
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(round_trip(&mut stream, b"before").unwrap(), b"before");

        // One way, 1 -> 0: the request reaches the echo server, the answer is held.
        proxy.links.update(|s| {
            s.cut.insert((1, 0));
        });
        let held = round_trip(&mut stream, b"oneway");
        assert!(held.is_err(), "an answer crossed a cut link: {held:?}");
        proxy.links.update(|s| s.cut.clear());
        let mut got = vec![0u8; 6];
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, b"oneway", "held bytes flow after the heal");

        // Both ways: nothing passes, and a new connection is refused.
        proxy.links.update(|s| {
            s.cut.insert((0, 1));
            s.cut.insert((1, 0));
        });
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut stream, b"cut").is_err());
        let mut fresh = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        let refused = fresh.write_all(b"x").and_then(|_| fresh.read(&mut buf));
        assert!(
            matches!(refused, Ok(0) | Err(_)),
            "a connection across a cut was carried: {refused:?}"
        );
        proxy.links.update(|s| s.cut.clear());
        let mut after = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        after
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(round_trip(&mut after, b"healed").unwrap(), b"healed");
    }

    /// Slow links delay every chunk, and loss breaks connections.
    #[test]
    fn slow_links_delay_and_loss_breaks_connections() {
        let node = echo_server();
        let proxy = Proxy::start(&[node, node]).unwrap();
        let port = proxy.ports[1][0];
        proxy.links.update(|s| s.latency_ms_max = 200);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let start = std::time::Instant::now();
        for _ in 0..10 {
            round_trip(&mut stream, b"slow").unwrap();
        }
        assert!(
            start.elapsed() > Duration::from_millis(300),
            "10 round trips over a slow link took {:?}",
            start.elapsed()
        );
        proxy.links.update(|s| {
            s.latency_ms_max = 0;
            s.loss_ppm = 500_000;
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            round_trip(&mut stream, b"lost").is_err(),
            "a connection survived heavy loss"
        );
    }
}
