//! The client library: what the CLI and the simulated workload clients use to talk to a node.
//!
//! A [`Client`] keeps one connection to one node and sends one request at a time, each with a
//! deadline. Any failure to get an answer (a time-out, a broken or stalled connection) drops the
//! connection, so the next request re-dials: under turmoil a lost segment stalls a stream forever.
//! Errors say whether the operation certainly did not happen ([`ClientError::is_definite`]), which
//! is what a history needs to record `fail` rather than `info`.

use crate::env::Env;
use crate::version::{Dot, KeyVersions, VClock};
use crate::wire::{Frame, FrameCodec, NodeStatus, Request, RequestError, Response, SiblingView};
use futures::{SinkExt, StreamExt};
use std::fmt;
use std::io;
use tokio::time::{Duration, timeout};
use tokio_util::codec::Framed;

/// Default client-side deadline of one request: a little more than the node's own, so that the
/// node's answer (even an error) usually arrives first.
pub const CLIENT_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// Why a request got no successful answer.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect: the request was never sent.
    Connect(io::Error),
    /// No answer in time, or the connection broke after sending: the outcome is unknown.
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The connection failed after the request may have been sent.
    Io(io::Error),
    /// The node answered with an error.
    Node(RequestError),
    /// The node answered something that makes no sense for the request.
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

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Timeout { timeout_ms } => write!(f, "no answer within {timeout_ms} ms"),
            ClientError::Io(e) => write!(f, "connection failed: {e}"),
            ClientError::Node(e) => {
                write!(f, "{:?}: {}", e.kind, e.message)?;
                if !e.stored_on.is_empty() {
                    write!(f, " (stored on: {})", e.stored_on.join(", "))?;
                }
                Ok(())
            }
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

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

/// A connection to one node.
pub struct Client<E: Env> {
    env: E,
    addr: String,
    framed: Option<Framed<E::Stream, FrameCodec>>,
    next_id: u64,
    timeout_ms: u64,
}

impl<E: Env> Client<E> {
    /// A client of the node at `addr`; it dials on the first request.
    pub fn new(env: E, addr: impl Into<String>) -> Client<E> {
        Client {
            env,
            addr: addr.into(),
            framed: None,
            next_id: 1,
            timeout_ms: CLIENT_TIMEOUT_MS_DEFAULT,
        }
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
        if self.framed.is_none() {
            let stream = match timeout(deadline, self.env.connect(&self.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(ClientError::Connect(e)),
                Err(_) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    return Err(ClientError::Connect(e));
                }
            };
            self.framed = Some(Framed::new(stream, FrameCodec::default()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let result = timeout(deadline, self.exchange(id, request)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.framed = None;
                Err(e)
            }
            Err(_) => {
                self.framed = None;
                Err(ClientError::Timeout {
                    timeout_ms: self.timeout_ms,
                })
            }
        }
    }

    async fn exchange(&mut self, id: u64, request: Request) -> Result<Response, ClientError> {
        let framed = self.framed.as_mut().expect("connected above");
        framed
            .send(Frame::Request { id, request })
            .await
            .map_err(ClientError::Io)?;
        loop {
            match framed.next().await {
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
            Response::Status { status } => Ok(status),
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
