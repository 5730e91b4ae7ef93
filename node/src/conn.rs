//! Connections: frames read into buffers that grow as bytes arrive and are charged to a shared
//! [`Budget`], frames written with one flush per batch, the MACs of an authenticated connection,
//! and the two sides of the handshake ([`crate::auth`]).
//!
//! Why not tokio-util's `LengthDelimitedCodec`: it reserves a frame's declared length as soon as
//! it reads the header, so a connection that declares an 8 MiB frame and sends all but one byte
//! costs 8 MiB (and the read buffer's doubling up to twice that); a few hundred such connections
//! exhaust the machine. Here a frame's buffer at most doubles per read that fills it, up to the
//! declared length, so a connection holds at most about twice what it actually sent (and at
//! most its class's frame bound), and every byte of capacity beyond the first is charged to the
//! node's budget of inbound bytes: when it is spent, the connection that asks for more is closed
//! with an error instead of the node running out of memory.

use crate::auth::{FrameMac, MAC_TAG_BYTES, NONCE_BYTES, Role, Transcript};
use crate::ring::NodeId;
use crate::wire::{self, FRAME_BYTES_MAX, Frame};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A connection's read buffer when no frame is in progress, and its first allocation.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Encoded frames are written out to the stream once this many bytes are waiting (a batch of
/// small frames goes out in one write; a large frame at once).
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// The length prefix of a frame: 4 bytes, big-endian, the body's length.
pub const FRAME_HEADER_BYTES: usize = 4;

/// A bound on bytes held by many connections together, shared by its clones (an atomic counter,
/// so that charging it costs one atomic add).
#[derive(Clone, Debug)]
pub struct Budget {
    used_bytes: Arc<AtomicUsize>,
    limit_bytes: usize,
}

impl Budget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Budget {
        Budget {
            used_bytes: Arc::new(AtomicUsize::new(0)),
            limit_bytes,
        }
    }

    /// A budget that never refuses (a client reading its own answers).
    pub fn unbounded() -> Budget {
        Budget::new(usize::MAX / 2)
    }

    /// Bytes charged now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Whether `other` is this budget (a clone of it).
    pub fn same_as(&self, other: &Budget) -> bool {
        Arc::ptr_eq(&self.used_bytes, &other.used_bytes)
    }

    /// Charges `bytes`, or refuses if the budget would pass its bound.
    pub fn charge(&self, bytes: usize) -> Option<Charge> {
        let mut charge = Charge {
            budget: self.clone(),
            bytes: 0,
        };
        charge.grow(bytes).then_some(charge)
    }
}

/// Bytes charged to a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Budget,
    bytes: usize,
}

impl Charge {
    /// Charges `more` bytes too; false (and nothing charged) if the budget would pass its bound.
    pub fn grow(&mut self, more: usize) -> bool {
        let used = &self.budget.used_bytes;
        let limit = self.budget.limit_bytes;
        let mut current = used.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(more).filter(|&n| n <= limit) else {
                return false;
            };
            match used.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.bytes += more;
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back all but `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let released = self.bytes - bytes;
            self.budget
                .used_bytes
                .fetch_sub(released, Ordering::Relaxed);
            self.bytes = bytes;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// One connection's framing: reads frames no larger than its bound into a budgeted buffer,
/// writes frames through an output buffer, and, once a handshake set its keys, MACs every frame
/// both ways. Reading is cancel-safe (all state is in the struct), so `next_frame` may sit in a
/// `select!` beside other branches.
pub struct Conn<S> {
    stream: S,
    /// Bytes received: `read_buf[start..end]` are not consumed yet.
    read_buf: Vec<u8>,
    start: usize,
    end: usize,
    read_charge: Charge,
    frame_bytes_max: usize,
    /// The encoded size of the last frame read (for the charge of the event it becomes).
    last_frame_bytes: usize,
    recv_mac: Option<FrameMac>,
    write_buf: Vec<u8>,
    send_mac: Option<FrameMac>,
}

impl<S> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered_bytes", &self.read_buf.len())
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("authenticated", &self.recv_mac.is_some())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// A connection over `stream` whose frames may be up to `frame_bytes_max` bytes (at most
    /// [`FRAME_BYTES_MAX`]), reading into buffers charged to `budget`; fails if the budget cannot
    /// give even the first [`READ_BUFFER_BYTES`].
    pub fn new(stream: S, budget: &Budget, frame_bytes_max: usize) -> io::Result<Conn<S>> {
        assert!(frame_bytes_max <= FRAME_BYTES_MAX);
        let read_charge = budget.charge(READ_BUFFER_BYTES).ok_or_else(full)?;
        Ok(Conn {
            stream,
            read_buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            read_charge,
            frame_bytes_max,
            last_frame_bytes: 0,
            recv_mac: None,
            write_buf: Vec::new(),
            send_mac: None,
        })
    }

    /// Charges what the connection buffers to `budget` from now on, and gives it back to the one
    /// it was charged to (when a connection says who it is, its class's budget takes over from
    /// the one of connections still saying it); fails, changing nothing, if `budget` has no room.
    pub fn move_to(&mut self, budget: &Budget) -> io::Result<()> {
        // Charged twice for a moment otherwise, and refused when the budget is nearly full.
        if self.read_charge.budget.same_as(budget) {
            return Ok(());
        }
        let charge = budget.charge(self.read_charge.bytes()).ok_or_else(full)?;
        self.read_charge = charge;
        Ok(())
    }

    /// Changes the bound on frames read (when a connection says who it is).
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        assert!(frame_bytes_max <= FRAME_BYTES_MAX);
        self.frame_bytes_max = frame_bytes_max;
    }

    /// From now on, frames sent carry `send`'s MACs and frames read must carry `recv`'s.
    pub fn set_macs(&mut self, send: FrameMac, recv: FrameMac) {
        self.send_mac = Some(send);
        self.recv_mac = Some(recv);
    }

    /// Whether frames are MACed.
    pub fn is_authenticated(&self) -> bool {
        self.recv_mac.is_some()
    }

    /// Bytes of read buffer this connection holds now.
    pub fn buffered_bytes(&self) -> usize {
        self.read_charge.bytes()
    }

    /// The encoded size of the last frame read, MAC included.
    pub fn last_frame_bytes(&self) -> usize {
        self.last_frame_bytes
    }

    /// The next frame: `None` at a clean end of stream, an error for a frame over the bound, one
    /// that fails its MAC or does not decode, a stream that ends mid-frame, or a budget spent.
    pub async fn next_frame(&mut self) -> Option<io::Result<Frame>> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Polls for the next frame (see [`Conn::next_frame`]).
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        loop {
            let available = self.end - self.start;
            let needed = if available >= FRAME_HEADER_BYTES {
                let header: [u8; FRAME_HEADER_BYTES] = self.read_buf
                    [self.start..self.start + FRAME_HEADER_BYTES]
                    .try_into()
                    .expect("four bytes");
                let len = u32::from_be_bytes(header) as usize;
                if len > self.frame_bytes_max {
                    let max = self.frame_bytes_max;
                    return Poll::Ready(Some(Err(invalid(format!(
                        "frame of {len} bytes exceeds {max}"
                    )))));
                }
                if available >= FRAME_HEADER_BYTES + len {
                    let body_start = self.start + FRAME_HEADER_BYTES;
                    self.start = body_start + len;
                    self.last_frame_bytes = len;
                    let frame = self.open(body_start, body_start + len);
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        if self.read_buf.len() > READ_BUFFER_BYTES {
                            // The large frame is done: give its buffer back.
                            self.read_buf = vec![0; READ_BUFFER_BYTES];
                            self.read_buf.shrink_to_fit();
                            self.read_charge.shrink_to(READ_BUFFER_BYTES);
                        }
                    }
                    return Poll::Ready(Some(frame));
                }
                FRAME_HEADER_BYTES + len
            } else {
                FRAME_HEADER_BYTES
            };
            if self.end == self.read_buf.len() {
                if self.start > 0 {
                    self.read_buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    // Full of one unfinished frame: double, up to what the frame needs.
                    let len = self.read_buf.len();
                    let target = needed.min(len.saturating_mul(2)).max(len + 1);
                    debug_assert!(target <= FRAME_HEADER_BYTES + self.frame_bytes_max);
                    if !self.read_charge.grow(target - len) {
                        return Poll::Ready(Some(Err(full())));
                    }
                    // Exactly: `resize` alone would let the vector double its capacity.
                    self.read_buf.reserve_exact(target - len);
                    self.read_buf.resize(target, 0);
                }
            }
            let mut buf = ReadBuf::new(&mut self.read_buf[self.end..]);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        if self.end == self.start {
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed in the middle of a frame",
                        ))));
                    }
                    self.end += n;
                }
            }
        }
    }

    /// Checks the MAC of the body at `read_buf[start..end]` and decodes it.
    fn open(&mut self, start: usize, end: usize) -> io::Result<Frame> {
        let body = &self.read_buf[start..end];
        let body = match &mut self.recv_mac {
            None => body,
            Some(mac) => {
                if body.len() < MAC_TAG_BYTES {
                    return Err(invalid("a frame too short for its MAC".into()));
                }
                let (body, tag) = body.split_at(body.len() - MAC_TAG_BYTES);
                if !mac.verify(body, tag) {
                    return Err(invalid(
                        "a frame failed its MAC (altered, replayed, or not from the peer)".into(),
                    ));
                }
                body
            }
        };
        wire::decode(body)
    }

    /// Encodes `frame` into the output buffer (with its MAC). A frame that cannot be encoded or
    /// passes [`FRAME_BYTES_MAX`] is refused with nothing of it buffered: the connection stays
    /// usable, and the caller decides what to send instead.
    pub fn feed(&mut self, frame: &Frame) -> io::Result<()> {
        let start = self.write_buf.len();
        self.write_buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        let tag_bytes = if self.send_mac.is_some() {
            MAC_TAG_BYTES
        } else {
            0
        };
        let flavor = VecFlavor {
            out: &mut self.write_buf,
            end_max: start + FRAME_HEADER_BYTES + FRAME_BYTES_MAX - tag_bytes,
        };
        let written = postcard::serialize_with_flavor(frame, flavor);
        let refused = match written {
            Err(postcard::Error::SerializeBufferFull) => Some(format!(
                "frame of more than {} bytes exceeds {FRAME_BYTES_MAX}",
                self.write_buf.len() - start - FRAME_HEADER_BYTES
            )),
            Err(e) => Some(format!("unencodable frame: {e}")),
            Ok(()) => None,
        };
        if let Some(message) = refused {
            self.write_buf.truncate(start);
            return Err(invalid(message));
        }
        if let Some(mac) = &mut self.send_mac {
            let tag = mac.tag(&self.write_buf[start + FRAME_HEADER_BYTES..]);
            self.write_buf.extend_from_slice(&tag);
        }
        let body_len = self.write_buf.len() - start - FRAME_HEADER_BYTES;
        self.write_buf[start..start + FRAME_HEADER_BYTES]
            .copy_from_slice(&(body_len as u32).to_be_bytes());
        Ok(())
    }

    /// Buffers `body` as a frame as it is, however it decodes (with a MAC if the connection has
    /// one): how a fuzzer sends damaged bodies. A node never sends one.
    #[doc(hidden)]
    pub fn feed_body_unchecked(&mut self, body: &[u8]) {
        self.write_buf
            .extend_from_slice(&(body.len() as u32 + self.tag_bytes()).to_be_bytes());
        self.write_buf.extend_from_slice(body);
        if let Some(mac) = &mut self.send_mac {
            let tag = mac.tag(body);
            self.write_buf.extend_from_slice(&tag);
        }
    }

    fn tag_bytes(&self) -> u32 {
        if self.send_mac.is_some() {
            MAC_TAG_BYTES as u32
        } else {
            0
        }
    }

    /// Bytes encoded and not yet written to the stream.
    pub fn pending_write_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes what is buffered to the stream (without flushing it).
    pub async fn write_out(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
            if self.write_buf.capacity() > 4 * WRITE_BUFFER_BYTES {
                self.write_buf = Vec::new();
            }
        }
        Ok(())
    }

    /// Writes what is buffered and flushes the stream.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.stream.flush().await
    }

    /// Feeds and flushes one frame.
    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        self.feed(frame)?;
        self.flush().await
    }
}

fn full() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "the node's budget of buffered inbound bytes is spent",
    )
}

/// A postcard output that appends to a `Vec`, refusing to grow it past `end_max`: a frame over
/// the bound stops being encoded as soon as it passes it.
struct VecFlavor<'a> {
    out: &'a mut Vec<u8>,
    end_max: usize,
}

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.out.len() + bytes.len() > self.end_max {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The dialer's side of the handshake ([`crate::auth`]): sends `Hello`, checks the listener's
/// proof (and, with `expect`, that the listener is that node), sends its own proof and sets the
/// connection's MACs. Returns the listener's node id. The caller bounds it in time.
pub async fn dial_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    role: Role,
    cluster: &str,
    key: &[u8],
    nonce: [u8; NONCE_BYTES],
    expect: Option<&NodeId>,
) -> io::Result<NodeId> {
    let refused = |m: String| io::Error::new(io::ErrorKind::PermissionDenied, m);
    let hello = Frame::Hello {
        role: role.clone(),
        cluster: cluster.to_string(),
        nonce,
    };
    conn.send(&hello).await?;
    let (id, listener_nonce, proof) = match conn.next_frame().await {
        Some(Ok(Frame::Challenge { id, nonce, proof })) => (id, nonce, proof),
        Some(Ok(Frame::Error { message })) => {
            return Err(refused(format!(
                "the node refused the handshake: {message}"
            )));
        }
        Some(Ok(_)) => {
            return Err(invalid(
                "the node answered a Hello with no Challenge".into(),
            ));
        }
        Some(Err(e)) => return Err(e),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection during the handshake",
            ));
        }
    };
    if let Some(expected) = expect
        && *expected != id
    {
        return Err(refused(format!(
            "dialled {expected} but {id} answered the handshake"
        )));
    }
    let transcript = Transcript {
        role: &role,
        cluster,
        listener: &id,
        dialer_nonce: &nonce,
        listener_nonce: &listener_nonce,
    };
    if !transcript.listener_proof_matches(key, &proof) {
        return Err(refused(format!(
            "{id} did not prove the cluster secret (a wrong secret on either side, or a stranger)"
        )));
    }
    let proof = transcript.dialer_proof(key);
    let (to_listener, to_dialer) = transcript.frame_keys(key);
    conn.send(&Frame::Proof { proof }).await?;
    conn.set_macs(FrameMac::new(&to_listener), FrameMac::new(&to_dialer));
    Ok(id)
}

/// The listener's side of the handshake, after it read the dialer's `Hello`: sends its
/// challenge and proof, checks the dialer's proof, and sets the connection's MACs. The caller has
/// checked the role and the cluster name, and bounds it in time.
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    hello: (&Role, &str, [u8; NONCE_BYTES]),
    me: &NodeId,
    key: &[u8],
    nonce: [u8; NONCE_BYTES],
) -> io::Result<()> {
    let (role, cluster, dialer_nonce) = hello;
    let transcript = Transcript {
        role,
        cluster,
        listener: me,
        dialer_nonce: &dialer_nonce,
        listener_nonce: &nonce,
    };
    let challenge = Frame::Challenge {
        id: me.clone(),
        nonce,
        proof: transcript.listener_proof(key),
    };
    conn.send(&challenge).await?;
    let proof = match conn.next_frame().await {
        Some(Ok(Frame::Proof { proof })) => proof,
        Some(Ok(_)) => {
            return Err(invalid(
                "a handshake needs a Proof after the Challenge".into(),
            ));
        }
        Some(Err(e)) => return Err(e),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
    };
    if !transcript.dialer_proof_matches(key, &proof) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "authentication failed: the dialer did not prove the secret",
        ));
    }
    let (to_listener, to_dialer) = transcript.frame_keys(key);
    conn.set_macs(FrameMac::new(&to_dialer), FrameMac::new(&to_listener));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{PeerMessage, Request};
    use tokio::io::AsyncWriteExt;

    fn put(value_bytes: usize) -> Frame {
        Frame::Request {
            id: 7,
            request: Request::Put {
                key: b"k".to_vec(),
                value: vec![3; value_bytes],
                tombstone: false,
                context: crate::version::VClock::parse("a=1").unwrap(),
                context_mac: None,
            },
        }
    }

    #[tokio::test]
    async fn frames_round_trip_with_and_without_macs() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let budget = Budget::new(1 << 22);
        let mut a = Conn::new(a, &budget, FRAME_BYTES_MAX).unwrap();
        let mut b = Conn::new(b, &budget, FRAME_BYTES_MAX).unwrap();
        for frame in [put(3), put(100_000), Frame::Ping { nonce: 1 }] {
            a.send(&frame).await.unwrap();
            assert_eq!(b.next_frame().await.unwrap().unwrap(), frame);
        }
        let key = [5u8; 32];
        a.set_macs(FrameMac::new(&key), FrameMac::new(&[6; 32]));
        b.set_macs(FrameMac::new(&[6; 32]), FrameMac::new(&key));
        for frame in [put(3), put(300_000), Frame::Pong { nonce: 2 }] {
            a.send(&frame).await.unwrap();
            assert_eq!(b.next_frame().await.unwrap().unwrap(), frame);
        }
        assert_eq!(
            b.buffered_bytes(),
            READ_BUFFER_BYTES,
            "big buffers given back"
        );
        drop(a);
        assert!(b.next_frame().await.is_none(), "clean end");
    }

    /// A frame whose header declares the bound but whose bytes trickle in holds about what
    /// arrived, not what was declared; the budget refuses growth past it.
    #[tokio::test]
    async fn buffers_grow_with_the_bytes_not_the_declared_length() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let budget = Budget::new(64 * 1024);
        let mut b = Conn::new(b, &budget, FRAME_BYTES_MAX).unwrap();
        a.write_all(&(FRAME_BYTES_MAX as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&[0; 10_000]).await.unwrap();
        let read = tokio::time::timeout(std::time::Duration::from_millis(50), b.next_frame());
        assert!(read.await.is_err(), "still waiting for the rest");
        assert!(b.buffered_bytes() <= 2 * 10_004 + READ_BUFFER_BYTES);
        a.write_all(&[0; 100_000]).await.unwrap();
        let err = b.next_frame().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
        assert!(budget.used_bytes() <= 64 * 1024);
        drop(b);
        assert_eq!(budget.used_bytes(), 0, "everything given back");
    }

    /// A connection that says who it is moves what it buffers to its class's budget: the old
    /// one gets it back, a full new one refuses and leaves the charge where it was, and a move to
    /// the same budget charges nothing twice (a nearly full budget would refuse it otherwise).
    #[tokio::test]
    async fn a_connection_moves_its_bytes_to_another_budget() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let pending = Budget::new(1 << 20);
        let mut b = Conn::new(b, &pending, FRAME_BYTES_MAX).unwrap();
        a.write_all(&(100_000u32).to_be_bytes()).await.unwrap();
        a.write_all(&[0; 50_000]).await.unwrap();
        let read = tokio::time::timeout(std::time::Duration::from_millis(50), b.next_frame());
        assert!(read.await.is_err(), "still waiting for the rest");
        let held = b.buffered_bytes();
        assert!(held > READ_BUFFER_BYTES);
        assert_eq!(pending.used_bytes(), held);

        let small = Budget::new(held - 1);
        let err = b.move_to(&small).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!((pending.used_bytes(), small.used_bytes()), (held, 0));

        let fill = pending.charge((1 << 20) - held).unwrap();
        b.move_to(&pending)
            .expect("the same budget, full: nothing to move");
        assert_eq!(pending.used_bytes(), 1 << 20);
        drop(fill);

        let class = Budget::new(1 << 20);
        b.move_to(&class).unwrap();
        assert_eq!((pending.used_bytes(), class.used_bytes()), (0, held));
        a.write_all(&[0; 50_000]).await.unwrap();
        assert!(
            b.next_frame().await.unwrap().is_err(),
            "zeros do not decode"
        );
        drop(b);
        assert_eq!((pending.used_bytes(), class.used_bytes()), (0, 0));
    }

    #[tokio::test]
    async fn oversized_frames_and_trailing_bytes_are_refused() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut b = Conn::new(b, &Budget::unbounded(), 100).unwrap();
        a.write_all(&101u32.to_be_bytes()).await.unwrap();
        let err = b.next_frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("exceeds 100"), "{err}");

        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut b = Conn::new(b, &Budget::unbounded(), 100).unwrap();
        let mut body = wire::encode(&Frame::Ping { nonce: 1 }).unwrap();
        body.push(0);
        a.write_all(&(body.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&body).await.unwrap();
        let err = b.next_frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("after its end"), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_whole_and_the_connection_goes_on() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut a = Conn::new(a, &Budget::unbounded(), FRAME_BYTES_MAX).unwrap();
        let mut b = Conn::new(b, &Budget::unbounded(), FRAME_BYTES_MAX).unwrap();
        a.set_macs(FrameMac::new(&[1; 32]), FrameMac::new(&[2; 32]));
        b.set_macs(FrameMac::new(&[2; 32]), FrameMac::new(&[1; 32]));
        let huge = Frame::Peer {
            from: "n1".into(),
            message: PeerMessage::Fetch {
                req: 1,
                key: vec![0; FRAME_BYTES_MAX],
            },
        };
        let err = a.feed(&huge).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert_eq!(a.pending_write_bytes(), 0);
        a.send(&Frame::Ping { nonce: 3 }).await.unwrap();
        assert_eq!(
            b.next_frame().await.unwrap().unwrap(),
            Frame::Ping { nonce: 3 },
            "the MAC sequence did not count the refused frame"
        );
    }

    #[tokio::test]
    async fn handshakes_pass_with_the_key_and_fail_without() {
        for (dial_key, listen_key, ok) in [(&b"k"[..], &b"k"[..], true), (b"k", b"x", false)] {
            let (a, b) = tokio::io::duplex(1 << 16);
            let mut a = Conn::new(a, &Budget::unbounded(), FRAME_BYTES_MAX).unwrap();
            let mut b = Conn::new(b, &Budget::unbounded(), FRAME_BYTES_MAX).unwrap();
            let me: NodeId = "n2".into();
            let expect = me.clone();
            // The dialer's connection goes with its future: a failed dial closes it, and the
            // listener's wait for a proof ends.
            let dial = async move {
                let id = dial_handshake(
                    &mut a,
                    Role::Peer { id: "n1".into() },
                    "c",
                    dial_key,
                    [1; NONCE_BYTES],
                    Some(&expect),
                )
                .await;
                id.map(|_| a)
            };
            let accept = async {
                let Some(Ok(Frame::Hello {
                    role,
                    cluster,
                    nonce,
                })) = b.next_frame().await
                else {
                    panic!("no hello")
                };
                accept_handshake(&mut b, (&role, &cluster, nonce), &me, listen_key, [2; 16]).await
            };
            let (dialled, accepted) = tokio::join!(dial, accept);
            assert_eq!(dialled.is_ok(), ok);
            assert!(accepted.is_err() || ok);
            if let Ok(mut a) = dialled {
                accepted.unwrap();
                a.send(&Frame::Ping { nonce: 9 }).await.unwrap();
                assert_eq!(
                    b.next_frame().await.unwrap().unwrap(),
                    Frame::Ping { nonce: 9 }
                );
                b.send(&Frame::Pong { nonce: 9 }).await.unwrap();
                assert_eq!(
                    a.next_frame().await.unwrap().unwrap(),
                    Frame::Pong { nonce: 9 }
                );
            }
        }
    }
}
