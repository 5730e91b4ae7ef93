//! The environment: the node's one swap point between the real world and the simulator.
//!
//! The shell ([`crate::shell`]) and the client ([`crate::client`]) reach the network, the file
//! system, the wall clock and randomness only through an [`Env`]. Monotonic time and timers come
//! from `tokio::time`, which turmoil drives in simulated time, so they need no seam.
//!
//! - [`TokioEnv`]: tokio's TCP, `std::fs`, the system clock, OS entropy (`dynamo serve`).
//! - [`SimEnv`]: `turmoil::net`, turmoil's simulated disk (a crash loses what was not synced) behind
//!   a [`FaultyFs`] whose [`DiskFaults`] switches the nemesis holds, the simulation's clock plus a
//!   per-node skew the nemesis can change, and an RNG seeded from the simulation seed
//!   (`dynamo sim`). Chosen by type, not by a cargo feature, because the one binary
//!   needs both.

use crate::fs::{DetachedSync, DiskFaults, FaultyFs, FileSystem, SimFs, StdFs};
use crate::wire::PeerMessage;
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// What a node and a client need from the world.
pub trait Env: Clone + Send + Sync + 'static {
    /// The file system the log store uses.
    type Fs: FileSystem;
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// A bound listener.
    type Listener: Listener<Stream = Self::Stream>;

    /// The file system.
    fn fs(&self) -> Self::Fs;
    /// Opens a connection to `addr` (`host:port`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Binds a listener on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Wall-clock milliseconds since the Unix epoch, as this node sees them (possibly skewed).
    fn wall_clock_ms(&self) -> u64;
    /// A random number.
    fn random_u64(&self) -> u64;
    /// How long a received peer message is held back before the node sees it: the simulated
    /// network's latency model ([`PeerDelays`]). The real network has its own, so zero there.
    fn peer_delay(&self, message: &PeerMessage) -> Duration {
        let _ = message;
        Duration::ZERO
    }
    /// Carries out a sync begun apart from the driver ([`DetachedSync`]); the driver holds back
    /// what depends on it until the future is done. No default: a simulated world must not reach
    /// for threads ([`TokioEnv`] runs them on a thread of its own).
    fn run_sync(&self, sync: DetachedSync) -> SyncJob;
}

/// A real sync on a thread of tokio's blocking pool, where an fsync may block as long as the disk
/// likes: what [`TokioEnv`] falls back to when it cannot start its own sync thread. The thread
/// starts now, not when the job is first polled: the store already counts the writes as syncing,
/// and a driver that stops before polling must not leave them unsynced.
pub fn run_sync_on_a_thread(sync: DetachedSync) -> SyncJob {
    let job = tokio::task::spawn_blocking(move || sync.run());
    Box::pin(async move {
        job.await
            .map_err(|e| io::Error::other(format!("the sync's thread failed: {e}")))?
    })
}

/// Syncs waiting for a [`TokioEnv`]'s sync thread. A node's driver has one sync in flight at a
/// time, and every node of a process has an environment of its own (`serve`, the fuzz driver), so
/// this is never reached; past it a driver's thread would wait to hand its sync over.
pub const SYNC_QUEUE_MAX: usize = 64;

/// A sync handed to the sync thread, and where its result goes.
type SyncRequest = (DetachedSync, tokio::sync::oneshot::Sender<io::Result<()>>);

/// The thread that carries out a real node's syncs ([`Env::run_sync`]), started at the first one
/// and ended when the last clone of its environment is dropped.
///
/// Why not tokio's blocking pool: on a machine with few cores and several nodes, a sync handed to
/// the pool woke one of several idle threads that then contended for the pool's lock (spinning
/// and `sched_yield`ing, seen with `strace -k` in a `dynamo bench` run), and each node kept a few
/// threads alive. One long-lived thread per node, woken by one channel, costs one wake-up each
/// way and runs the node's syncs in the order they began.
///
/// The thread is not joined: a process that exits with a sync queued or running leaves it
/// unfinished, as a crash would. Nothing that depends on it was answered, no clean-stop marker
/// vouches for it (the driver writes one only after its final sync), and the page cache keeps
/// the written bytes across the process's exit.
fn start_sync_thread() -> Option<std::sync::mpsc::SyncSender<SyncRequest>> {
    let (jobs, queue) = std::sync::mpsc::sync_channel::<SyncRequest>(SYNC_QUEUE_MAX);
    let started = std::thread::Builder::new()
        .name("dynamo-sync".into())
        .spawn(move || {
            while let Ok((sync, done)) = queue.recv() {
                // The driver may have stopped waiting (a node that ended): the sync still ran.
                let _ = done.send(sync.run());
            }
        });
    match started {
        Ok(_) => Some(jobs),
        Err(e) => {
            tracing::warn!(error = %e, "no thread for syncs; using tokio's blocking pool");
            None
        }
    }
}

/// A sync in progress ([`Env::run_sync`]).
pub type SyncJob = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// How long a simulated fsync takes, in whole milliseconds: most draw from 0 to
/// [`SIM_SYNC_MS_MAX`], an SSD's usual; one in [`SIM_SYNC_SLOW_ONE_IN`] stalls for up to
/// [`SIM_SYNC_SLOW_MS_MAX`], as a real disk's fsync does under write-back pressure. Long enough that
/// crashes and power cuts land while a sync is in flight and that events pile up during one (the
/// driver's held outputs, early reads and `HELD_STEPS_MAX`), short against the protocol's timeouts
/// (hundreds of milliseconds).
pub const SIM_SYNC_MS_MAX: u64 = 2;
/// One simulated sync in this many stalls ([`SIM_SYNC_MS_MAX`]).
pub const SIM_SYNC_SLOW_ONE_IN: u64 = 10;
/// The longest stall of a simulated sync, ms ([`SIM_SYNC_MS_MAX`]).
pub const SIM_SYNC_SLOW_MS_MAX: u64 = 20;

/// The kinds of peer message that PBS's WARS model times separately (Bailis et al., VLDB 2012):
/// a write on its way to a replica, the replica's ack, a read on its way to a replica, the
/// replica's response; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Write,
    Ack,
    Read,
    Response,
    Other,
}

impl MessageKind {
    /// The kind of `message`.
    pub fn of(message: &PeerMessage) -> MessageKind {
        match message {
            PeerMessage::Store { .. } => MessageKind::Write,
            PeerMessage::StoreAck { .. } => MessageKind::Ack,
            PeerMessage::Fetch { .. } => MessageKind::Read,
            PeerMessage::FetchReply { .. } => MessageKind::Response,
            _ => MessageKind::Other,
        }
    }
}

/// A simulated network's delays of peer messages by kind (the simulator's latency models).
pub trait PeerDelays: Send + Sync + std::fmt::Debug {
    /// One draw for a message of `kind`.
    fn delay(&self, kind: MessageKind) -> Duration;
}

/// A bound listener.
pub trait Listener: Send + 'static {
    /// The stream type of accepted connections.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The real world: tokio, `std::fs`, the system clock, OS entropy.
#[derive(Clone, Debug)]
pub struct TokioEnv {
    rng: Arc<Mutex<StdRng>>,
    /// The sync thread's queue ([`start_sync_thread`]), once a sync has been handed over; `None`
    /// inside when the thread could not start.
    syncs: Arc<std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<SyncRequest>>>>,
}

impl Default for TokioEnv {
    fn default() -> Self {
        TokioEnv {
            rng: Arc::new(Mutex::new(StdRng::from_entropy())),
            syncs: Arc::default(),
        }
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Env for TokioEnv {
    type Fs = StdFs;
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    fn fs(&self) -> StdFs {
        StdFs
    }
    async fn connect(&self, addr: &str) -> io::Result<tokio::net::TcpStream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    async fn bind(&self, addr: &str) -> io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(addr).await
    }
    fn wall_clock_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn random_u64(&self) -> u64 {
        self.rng.lock().expect("rng lock").next_u64()
    }
    /// On the environment's sync thread ([`start_sync_thread`]), handed over now: the store
    /// already counts the writes as syncing, and a driver that stops before polling the job
    /// must not leave them unsynced.
    fn run_sync(&self, sync: DetachedSync) -> SyncJob {
        let Some(jobs) = self.syncs.get_or_init(start_sync_thread) else {
            return run_sync_on_a_thread(sync);
        };
        let (done, result) = tokio::sync::oneshot::channel();
        if let Err(std::sync::mpsc::SendError((sync, _))) = jobs.send((sync, done)) {
            // The thread is gone (it cannot panic short of a panicking sync): the pool instead.
            return run_sync_on_a_thread(sync);
        }
        Box::pin(async move {
            result
                .await
                .map_err(|_| io::Error::other("the sync thread stopped before the sync ran"))?
        })
    }
}

/// The simulated world: turmoil's network and disk (with injectable faults), simulated time with a
/// skew, a seeded RNG. Only usable on a turmoil host.
#[derive(Clone, Debug)]
pub struct SimEnv {
    rng: Arc<Mutex<StdRng>>,
    /// The draws of the disk's sync latencies: apart from `rng`, so that the node's own draws do
    /// not depend on how many syncs ran.
    disk_rng: Arc<Mutex<StdRng>>,
    skew_ms: Arc<AtomicI64>,
    disk_faults: DiskFaults,
    delays: Option<Arc<dyn PeerDelays>>,
    /// Whether a sync takes simulated time ([`SIM_SYNC_MS_MAX`]); off under a latency model,
    /// whose message delays are the whole of what it models.
    sync_latency: bool,
}

impl SimEnv {
    /// An environment whose randomness is fixed by `seed`, with its wall clock skewed by the value
    /// in `skew_ms` (shared, so that the nemesis can move it while the node runs), and a disk with
    /// its own fault switches, all off ([`SimEnv::disk_faults`] hands them out).
    pub fn new(seed: u64, skew_ms: Arc<AtomicI64>) -> SimEnv {
        SimEnv::with_disk_faults(seed, skew_ms, DiskFaults::new())
    }

    /// Like [`SimEnv::new`], with a disk that fails as `disk_faults` says: the nemesis keeps a
    /// clone per node and passes it again when it restarts the node, so the switches outlive
    /// incarnations.
    pub fn with_disk_faults(seed: u64, skew_ms: Arc<AtomicI64>, disk_faults: DiskFaults) -> SimEnv {
        SimEnv {
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            disk_rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ DISK_RNG_SALT))),
            skew_ms,
            disk_faults,
            delays: None,
            sync_latency: true,
        }
    }

    /// This environment with received peer messages held back by draws from `delays`.
    pub fn with_peer_delays(mut self, delays: Arc<dyn PeerDelays>) -> SimEnv {
        self.delays = Some(delays);
        self
    }

    /// This environment with syncs that take no simulated time (they still run apart from the
    /// driver, and complete at its next turn).
    pub fn without_sync_latency(mut self) -> SimEnv {
        self.sync_latency = false;
        self
    }

    /// The switches of this environment's disk (a handle sharing them).
    pub fn disk_faults(&self) -> DiskFaults {
        self.disk_faults.clone()
    }
}

/// Sets the disk's RNG apart from the node's, which is seeded with the same seed.
const DISK_RNG_SALT: u64 = 0xd15c_5eed_0000_0001;

impl Listener for turmoil::net::TcpListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&self) -> io::Result<(turmoil::net::TcpStream, SocketAddr)> {
        turmoil::net::TcpListener::accept(self).await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        turmoil::net::TcpListener::local_addr(self)
    }
}

impl Env for SimEnv {
    type Fs = FaultyFs<SimFs>;
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    fn fs(&self) -> FaultyFs<SimFs> {
        FaultyFs::new(SimFs, self.disk_faults.clone())
    }
    async fn connect(&self, addr: &str) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect(addr).await
    }
    async fn bind(&self, addr: &str) -> io::Result<turmoil::net::TcpListener> {
        turmoil::net::TcpListener::bind(addr).await
    }
    fn wall_clock_ms(&self) -> u64 {
        let base = turmoil::since_epoch()
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (base + self.skew_ms.load(Ordering::Relaxed)).max(0) as u64
    }
    fn random_u64(&self) -> u64 {
        self.rng.lock().expect("rng lock").next_u64()
    }
    fn peer_delay(&self, message: &PeerMessage) -> Duration {
        match &self.delays {
            Some(delays) => delays.delay(MessageKind::of(message)),
            None => Duration::ZERO,
        }
    }
    /// On the host's own runtime, after a drawn delay in simulated time: no thread (the disk is
    /// the host's thread-local), and a crash meanwhile drops the sync with the host.
    fn run_sync(&self, sync: DetachedSync) -> SyncJob {
        let delay_ms = if !self.sync_latency {
            0
        } else {
            let mut rng = self.disk_rng.lock().expect("rng lock");
            if rng.next_u64().is_multiple_of(SIM_SYNC_SLOW_ONE_IN) {
                SIM_SYNC_MS_MAX + 1 + rng.next_u64() % (SIM_SYNC_SLOW_MS_MAX - SIM_SYNC_MS_MAX)
            } else {
                rng.next_u64() % (SIM_SYNC_MS_MAX + 1)
            }
        };
        Box::pin(async move {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            sync.run()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's runtime: one thread, as `dynamo serve` runs a node.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    /// A real environment's syncs run on its one sync thread, in the order they were handed
    /// over, and a sync handed over runs even when nobody waits for it (a driver that stopped).
    #[test]
    fn real_syncs_run_in_order_on_the_sync_thread() {
        let runtime = runtime();
        let env = TokioEnv::default();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let job = |i: usize| {
            let ran = ran.clone();
            DetachedSync::new(move || {
                let name = std::thread::current().name().map(str::to_string);
                ran.lock().expect("lock").push((i, name));
                Ok(())
            })
        };
        let jobs: Vec<SyncJob> = (0..5).map(|i| env.run_sync(job(i))).collect();
        drop(env.run_sync(job(5)));
        runtime.block_on(async {
            for job in jobs {
                job.await.expect("the sync ran");
            }
        });
        // The dropped job's sync still runs: wait for it, within reason.
        for _ in 0..1_000 {
            if ran.lock().expect("lock").len() == 6 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let ran = ran.lock().expect("lock").clone();
        assert_eq!(ran.len(), 6, "every sync handed over ran: {ran:?}");
        for (position, (i, thread)) in ran.iter().enumerate() {
            assert_eq!(*i, position, "syncs run in the order they began");
            assert_eq!(thread.as_deref(), Some("dynamo-sync"));
        }
    }

    /// A failed sync's error reaches the driver.
    #[test]
    fn a_real_syncs_error_reaches_the_driver() {
        let runtime = runtime();
        let env = TokioEnv::default();
        let job = env.run_sync(DetachedSync::new(|| Err(io::Error::other("disk on fire"))));
        let error = runtime.block_on(job).expect_err("the sync failed");
        assert!(error.to_string().contains("disk on fire"), "{error}");
    }
}
