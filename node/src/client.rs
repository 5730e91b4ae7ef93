//! The client library: what the CLI and the simulated workload clients use to talk to a node.
//!
//! A [`Client`] keeps one connection to one node and sends one request at a time, each with a
//! deadline. Any failure to get an answer (a time-out, a broken or stalled connection) drops the
//! connection, so the next request re-dials: under turmoil a lost segment stalls a stream forever.
//! Errors say whether the operation certainly did not happen ([`ClientError::is_definite`]), which
//! is what a history needs to record `fail` rather than `info`.

use crate::auth::{Role, Secret};
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

/// The answer to a get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetReply {
    /// The siblings, each with its dot and clock; tombstones too (`tombstone` set, the delete's
    /// marker as the value).
    pub siblings: Vec<SiblingView>,
    /// The context to hand back with a put that supersedes them.
    pub context: VClock,
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
}

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
        }
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
        let deadline = Duration::from_millis(self.timeout_ms);
        if self.conn.is_none() {
            let stream = match timeout(deadline, self.env.connect(&self.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(ClientError::Connect(e)),
                Err(_) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    return Err(ClientError::Connect(e));
                }
            };
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
            Response::Get { siblings, context } => Ok(GetReply { siblings, context }),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a value with the context of an earlier read (empty for a blind write).
    pub async fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        context: &VClock,
    ) -> Result<PutReply, ClientError> {
        self.write(key, value, false, context).await
    }

    /// Deletes the versions `context` covers, leaving a tombstone that carries `marker` (returned
    /// with the tombstone by reads and replica states, e.g. the delete's write id for a history).
    pub async fn delete(
        &mut self,
        key: &[u8],
        context: &VClock,
        marker: Vec<u8>,
    ) -> Result<PutReply, ClientError> {
        self.write(key, marker, true, context).await
    }

    async fn write(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        tombstone: bool,
        context: &VClock,
    ) -> Result<PutReply, ClientError> {
        let request = Request::Put {
            key: key.to_vec(),
            value,
            tombstone,
            context: context.clone(),
        };
        match self.request(request).await? {
            Response::Put { version, stored_on } => Ok(PutReply {
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
