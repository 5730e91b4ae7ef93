//! The client library: what the CLI and the simulated workload clients use to talk to a node.
//!
//! A [`Client`] keeps one connection to one node and sends one request at a time, each with a
//! deadline. Any failure to get an answer (a time-out, a broken or stalled connection) drops the
//! connection, so the next request re-dials: under turmoil a lost segment stalls a stream forever.
//! Errors say whether the operation certainly did not happen ([`ClientError::is_definite`]), which
//! is what a history needs to record `fail` rather than `info`.
//!
//! A read's context comes back as a [`Context`]: the clock and the MAC the cluster signed it
//! with. A node with a cluster secret takes back only a context it signed for that key, so a
//! client hands a context back whole, as it got it ([`crate::auth`], "Signed contexts"); an open
//! node signs nothing and takes any clock.

use crate::auth::{CONTEXT_MAC_BYTES, ContextMac, Role, Secret};
use crate::conn::{Budget, Conn};
use crate::env::Env;
use crate::version::{Dot, KeyVersions, VClock};
use crate::wire::{
    FRAME_BYTES_MAX, Frame, NodeStatus, Request, RequestError, Response, SiblingView,
};
use std::io;
use tokio::time::{Duration, timeout};

/// Default client-side deadline of one request: a little more than the node's own, so that the
/// node's answer (even an error) usually arrives first.
pub const CLIENT_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// Why a request got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect: the request was never sent.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// No answer in time, or the connection broke after sending: the outcome is unknown.
    #[error("no answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The connection failed after the request may have been sent.
    #[error("connection failed: {0}")]
    Io(io::Error),
    /// The node answered with an error.
    #[error("{}", node_error_text(.0))]
    Node(RequestError),
    /// The node answered something that makes no sense for the request.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// True when the operation certainly took no effect.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Connect(_) => true,
            ClientError::Node(e) => e.definite && e.stored_on.is_empty(),
            ClientError::Timeout { .. } | ClientError::Io(_) | ClientError::Protocol(_) => false,
        }
    }
}

/// How a node's refusal reads: its kind, its message, and who stored the put anyway.
fn node_error_text(e: &RequestError) -> String {
    let mut text = format!("{:?}: {}", e.kind, e.message);
    if !e.stored_on.is_empty() {
        text.push_str(&format!(" (stored on: {})", e.stored_on.join(", ")));
    }
    text
}

/// A causal context as a client keeps it: the clock, and the MAC the cluster gave it for its key
/// ([`crate::auth`], "Signed contexts"; None from an open node, and for the empty context of a
/// blind write). Hand it back whole: a node with a cluster secret refuses a non-empty clock
/// without its MAC, so contexts are not joined or edited by clients (a join of two is signed by
/// nobody). It has no `Display` on purpose: a history records [`Context::clock`] alone, and the
/// CLI's text form, MAC included, is [`Context::to_text`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The versions the context says its holder saw.
    pub clock: VClock,
    /// The cluster's MAC of `clock` for the key.
    pub mac: Option<ContextMac>,
}

/// The separator between a context's clock and its MAC in the text form (`a.1=3,b.2=4#<hex>`):
/// neither an actor name nor a counter can hold it.
pub const CONTEXT_MAC_SEPARATOR: char = '#';

impl Context {
    /// The empty context: a blind write.
    pub fn blind() -> Context {
        Context::default()
    }

    /// A clock with no MAC: accepted only by an open node (a node without a cluster secret),
    /// or when it is empty.
    pub fn unsigned(clock: VClock) -> Context {
        Context { clock, mac: None }
    }

    /// The text form: the clock's (`a.1=3,b.2=4`), then `#` and the MAC in hex when there is one.
    pub fn to_text(&self) -> String {
        match &self.mac {
            None => self.clock.to_string(),
            Some(mac) => {
                let mut text = self.clock.to_string();
                text.push(CONTEXT_MAC_SEPARATOR);
                for b in mac {
                    text.push_str(&format!("{b:02x}"));
                }
                text
            }
        }
    }

    /// Parses [`Context::to_text`]'s form. A clock without `#MAC` parses (an open node takes it;
    /// a signing node refuses it, saying so).
    pub fn parse(text: &str) -> Result<Context, String> {
        let text = text.trim();
        let (clock, mac) = match text.split_once(CONTEXT_MAC_SEPARATOR) {
            None => (text, None),
            Some((clock, hex)) => (clock, Some(parse_mac(hex)?)),
        };
        Ok(Context {
            clock: VClock::parse(clock)?,
            mac,
        })
    }
}

/// A MAC's hex digits (exactly [`crate::auth::CONTEXT_MAC_BYTES`] bytes' worth).
fn parse_mac(hex: &str) -> Result<ContextMac, String> {
    let bad = || {
        format!(
            "a context's MAC must be {} hex digits after '{CONTEXT_MAC_SEPARATOR}'",
            2 * CONTEXT_MAC_BYTES
        )
    };
    if hex.len() != 2 * CONTEXT_MAC_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut mac = [0u8; CONTEXT_MAC_BYTES];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// The answer to a get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetReply {
    /// The siblings, each with its dot and clock; tombstones too (`tombstone` set, the delete's
    /// marker as the value).
    pub siblings: Vec<SiblingView>,
    /// The context to hand back with a put that supersedes them.
    pub context: Context,
}

/// The answer to a put or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutReply {
    /// The version the put made.
    pub dot: Option<Dot>,
    /// Its context (or plain clock).
    pub clock: VClock,
    /// Replicas that stored it before the answer.
    pub stored_on: Vec<crate::ring::NodeId>,
    /// The context that covers the new version (its clock and dot), signed: what to hand back
    /// with the next write of the key if nothing was read since.
    pub context: Context,
}

/// How a client proves who it is ([`crate::auth`]): a role, and the key it proves (the cluster
/// secret for an admin, the client token for a client; `None`: the empty key of an open node).
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// Who the client says it is.
    pub role: Role,
    /// Its cluster's name (empty: any).
    pub cluster: String,
    /// The key it proves.
    pub key: Option<Secret>,
}

impl ClientAuth {
    /// An admin holding the cluster secret (or, with `None`, of an open cluster).
    pub fn admin(secret: Option<Secret>) -> ClientAuth {
        ClientAuth {
            role: Role::Admin,
            cluster: String::new(),
            key: secret,
        }
    }

    /// A client holding the client token.
    pub fn client(token: Secret) -> ClientAuth {
        ClientAuth {
            role: Role::Client,
            cluster: String::new(),
            key: Some(token),
        }
    }
}

/// A connection to one node.
pub struct Client<E: Env> {
    env: E,
    addr: String,
    conn: Option<Conn<E::Stream>>,
    next_id: u64,
    timeout_ms: u64,
    auth: Option<ClientAuth>,
    /// Whether a refused connect is dialled again until the deadline ([`Client::waiting_on_refusals`]).
    redial_refused: bool,
}

/// How long a client that waits on refusals waits before it dials a refusing node again.
pub const REFUSED_REDIAL_MS: u64 = 50;

impl<E: Env> Client<E> {
    /// A client of the node at `addr`; it dials on the first request.
    pub fn new(env: E, addr: impl Into<String>) -> Client<E> {
        Client {
            env,
            addr: addr.into(),
            conn: None,
            next_id: 1,
            timeout_ms: CLIENT_TIMEOUT_MS_DEFAULT,
            auth: None,
            redial_refused: false,
        }
    }

    /// Makes a refused connect wait: the client dials again every [`REFUSED_REDIAL_MS`] until the
    /// node accepts or the request's deadline passes (then the refusal is the answer, as before).
    /// A killed process refuses at once, where a host that is down in the simulator lets the
    /// connect hang until the deadline; a test harness that waits on refusals spends its
    /// operations on nodes that are up, and its waiting on one that is down, in both worlds.
    /// Nothing was sent before the connection exists, so dialling again changes nothing the node
    /// sees.
    pub fn waiting_on_refusals(mut self) -> Client<E> {
        self.redial_refused = true;
        self
    }

    /// Makes every connection start with the handshake as `auth` says (without, the client is
    /// anonymous: gets and puts on a node that needs no client token).
    pub fn with_auth(mut self, auth: ClientAuth) -> Client<E> {
        self.auth = Some(auth);
        self
    }

    /// Sets the per-request deadline.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Client<E> {
        self.timeout_ms = timeout_ms;
        self
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let mut deadline = Duration::from_millis(self.timeout_ms);
        if self.conn.is_none() {
            let dialled = tokio::time::Instant::now();
            let redial = Duration::from_millis(REFUSED_REDIAL_MS);
            let stream = loop {
                let left = deadline.saturating_sub(dialled.elapsed());
                match timeout(left, self.env.connect(&self.addr)).await {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(e))
                        if self.redial_refused
                            && e.kind() == io::ErrorKind::ConnectionRefused
                            && dialled.elapsed() + redial < deadline =>
                    {
                        tokio::time::sleep(redial).await;
                    }
                    Ok(Err(e)) => return Err(ClientError::Connect(e)),
                    Err(_) => {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                        return Err(ClientError::Connect(e));
                    }
                }
            };
            // The time spent waiting on refusals counts against the request's deadline (without
            // redials the connect's own time does not, as before).
            if self.redial_refused {
                deadline = deadline.saturating_sub(dialled.elapsed()).max(redial);
            }
            // A client reads only its own answers: no budget to share.
            let mut conn = Conn::new(stream, &Budget::unbounded(), FRAME_BYTES_MAX)
                .map_err(ClientError::Connect)?;
            if let Some(auth) = &self.auth {
                let key: &[u8] = auth.key.as_ref().map(|k| k.expose()).unwrap_or(&[]);
                let nonce = crate::auth::nonce(|| self.env.random_u64());
                let handshake = crate::conn::dial_handshake(
                    &mut conn,
                    auth.role.clone(),
                    &auth.cluster,
                    key,
                    nonce,
                    None,
                );
                // Nothing was sent yet but the handshake: a refusal is definite.
                match timeout(deadline, handshake).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(ClientError::Connect(e)),
                    Err(_) => {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "handshake timed out");
                        return Err(ClientError::Connect(e));
                    }
                }
            }
            self.conn = Some(conn);
        }
        let id = self.next_id;
        self.next_id += 1;
        let result = timeout(deadline, self.exchange(id, request)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(ClientError::Timeout {
                    timeout_ms: self.timeout_ms,
                })
            }
        }
    }

    async fn exchange(&mut self, id: u64, request: Request) -> Result<Response, ClientError> {
        let conn = self.conn.as_mut().expect("connected above");
        let frame = Frame::Request { id, request };
        // A request that cannot be encoded never left: say so definitely.
        conn.feed(&frame).map_err(|e| {
            ClientError::Node(RequestError {
                kind: crate::wire::ErrorKind::BadRequest,
                message: e.to_string(),
                stored_on: Vec::new(),
                definite: true,
            })
        })?;
        conn.flush().await.map_err(ClientError::Io)?;
        loop {
            match conn.next_frame().await {
                None => {
                    let e =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "node closed the connection");
                    return Err(ClientError::Io(e));
                }
                Some(Err(e)) => return Err(ClientError::Io(e)),
                Some(Ok(Frame::Response { id: got, response })) if got == id => {
                    return Ok(response);
                }
                // An answer to an earlier request that timed out on our side: skip it.
                Some(Ok(Frame::Response { .. })) => continue,
                Some(Ok(Frame::Error { message })) => return Err(ClientError::Protocol(message)),
                Some(Ok(other)) => {
                    return Err(ClientError::Protocol(format!("unexpected frame {other:?}")));
                }
            }
        }
    }

    /// Reads a key through a quorum.
    pub async fn get(&mut self, key: &[u8]) -> Result<GetReply, ClientError> {
        let key = key.to_vec();
        match self.request(Request::Get { key }).await? {
            Response::Get {
                siblings,
                context,
                context_mac,
            } => Ok(GetReply {
                siblings,
                context: Context {
                    clock: context,
                    mac: context_mac,
                },
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a value with the context of an earlier read, or of this client's last put of the
    /// key ([`Context::blind`] for a blind write).
    pub async fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        context: &Context,
    ) -> Result<PutReply, ClientError> {
        self.write(key, value, false, context).await
    }

    /// Deletes the versions `context` covers, leaving a tombstone that carries `marker` (returned
    /// with the tombstone by reads and replica states, e.g. the delete's write id for a history).
    pub async fn delete(
        &mut self,
        key: &[u8],
        context: &Context,
        marker: Vec<u8>,
    ) -> Result<PutReply, ClientError> {
        self.write(key, marker, true, context).await
    }

    async fn write(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        tombstone: bool,
        context: &Context,
    ) -> Result<PutReply, ClientError> {
        let request = Request::Put {
            key: key.to_vec(),
            value,
            tombstone,
            context: context.clock.clone(),
            context_mac: context.mac,
        };
        match self.request(request).await? {
            Response::Put {
                version,
                stored_on,
                context_mac,
            } => Ok(PutReply {
                context: Context {
                    clock: version.covering_context(),
                    mac: context_mac,
                },
                dot: version.dot,
                clock: version.clock,
                stored_on,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: the node's own stored state of a key, without a quorum.
    pub async fn replica_state(&mut self, key: &[u8]) -> Result<KeyVersions, ClientError> {
        let key = key.to_vec();
        match self.request(Request::ReplicaState { key }).await? {
            Response::ReplicaState { state } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: the node's status.
    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        match self.request(Request::Status).await? {
            Response::Status { status } => Ok(*status),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(response: Response) -> ClientError {
    match response {
        Response::Error { error } => ClientError::Node(error),
        other => ClientError::Protocol(format!("unexpected answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_text_carries_its_mac() {
        let clock = VClock::parse("a.1=3,b.2=4").unwrap();
        let signed = Context {
            clock: clock.clone(),
            mac: Some([0xab; CONTEXT_MAC_BYTES]),
        };
        let text = signed.to_text();
        assert_eq!(
            text,
            format!("a.1=3,b.2=4#{}", "ab".repeat(CONTEXT_MAC_BYTES))
        );
        assert_eq!(Context::parse(&text).unwrap(), signed);
        let old = Context::parse("a.1=3,b.2=4").unwrap();
        assert_eq!(old, Context::unsigned(clock));
        assert_eq!(Context::parse("").unwrap(), Context::blind());
        assert_eq!(Context::blind().to_text(), "");
        for bad in [
            "a=1#",
            "a=1#ab",
            "a=1#zz",
            &format!("a=1#{}", "0".repeat(34)),
        ] {
            assert!(Context::parse(bad).is_err(), "{bad}");
        }
    }

    /// A port on loopback where nothing listens (it was free a moment ago): connects are refused.
    fn refusing_addr() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    #[tokio::test]
    async fn a_client_waiting_on_refusals_reaches_a_node_that_comes_up_before_the_deadline() {
        let addr = refusing_addr();
        let env = crate::env::TokioEnv::default();
        // Without the option, the refusal is the answer at once.
        let mut eager = Client::new(env.clone(), addr.clone()).with_timeout_ms(2_000);
        match eager.get(b"k").await {
            Err(ClientError::Connect(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("expected a refused connect, got {other:?}"),
        }
        // The "node" comes up after 300 ms and hangs up on its first connection: a client that
        // waited on the refusals got connected (its error is no longer a refused connect).
        let up = addr.clone();
        let node = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let listener = tokio::net::TcpListener::bind(&up).await.unwrap();
            let (conn, _) = listener.accept().await.unwrap();
            drop(conn);
        });
        let mut waiting = Client::new(env, addr)
            .with_timeout_ms(2_000)
            .waiting_on_refusals();
        match waiting.get(b"k").await {
            Err(ClientError::Connect(e)) => panic!("still refused: {e}"),
            Err(_) => {}
            Ok(reply) => panic!("a node that hangs up answered {reply:?}"),
        }
        node.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_waiting_on_refusals_gives_up_at_its_deadline() {
        let addr = refusing_addr();
        let mut waiting = Client::new(crate::env::TokioEnv::default(), addr)
            .with_timeout_ms(300)
            .waiting_on_refusals();
        let started = std::time::Instant::now();
        match waiting.get(b"k").await {
            Err(ClientError::Connect(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("expected a refused connect, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300 - REFUSED_REDIAL_MS)
                && waited < Duration::from_secs(2),
            "waited {waited:?} for a deadline of 300 ms"
        );
    }
}
