//! `dynamo serve`, `get`, `put`, `delete`: a real node and its command-line clients.

use clap::Args;
use dynamo_node::auth::{AuthConfig, CLUSTER_NAME_DEFAULT, Secret};
use dynamo_node::client::{CLIENT_TIMEOUT_MS_DEFAULT, Client, ClientAuth, ClientError, Context};
use dynamo_node::config::NodeOptions;
use dynamo_node::config::{ClusterSettings, FsyncPolicy, NodeConfig, REQUEST_TIMEOUT_MS_DEFAULT};
use dynamo_node::env::{Env, TokioEnv};
use dynamo_node::ring::{NodeId, PARTITION_COUNT_DEFAULT};
use dynamo_node::version::{NODE_ID_BYTES_MAX, valid_node_id};
use dynamo_node::wire::{SiblingView, valid_addr};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `dynamo serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// This node's name (e.g. n1).
    #[arg(long)]
    id: String,
    /// Address to listen on, host:port. Loopback unless told otherwise; any other address needs
    /// a cluster secret.
    #[arg(long, default_value = "127.0.0.1:7101")]
    listen: String,
    /// The other members: name=host:port, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "")]
    peers: Vec<String>,
    /// Directory of the node's data files (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    quorum: QuorumArgs,
    /// Partitions of the ring (Q).
    #[arg(long, default_value_t = PARTITION_COUNT_DEFAULT)]
    partitions: u32,
    /// When writes are synced: always, interval[:MS], none.
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,
    /// Deadline of a request at its coordinator, in ms.
    #[arg(long, default_value_t = REQUEST_TIMEOUT_MS_DEFAULT)]
    request_timeout_ms: u64,
    /// Join a running cluster through these members (host:port, comma-separated) instead of
    /// forming the ring from --peers.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    #[command(flatten)]
    mechanisms: MechanismArgs,
    /// Children per Merkle tree node.
    #[arg(long, default_value_t = dynamo_node::merkle::FANOUT_DEFAULT)]
    merkle_fanout: u32,
    /// The cluster's name: peers of another cluster are refused, and the data directory
    /// remembers it.
    #[arg(long, default_value = CLUSTER_NAME_DEFAULT)]
    cluster: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// A deliberate bug (for `dynamo live --bug` and tests only: see DESIGN.md).
    #[arg(long, hide = true)]
    bug: Option<dynamo_node::config::Bug>,
}

/// The secrets a command proves, read from files (never from the command line, where `ps` would
/// show them).
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// File holding the cluster secret (at least 16 bytes; trailing newline ignored). Peers and
    /// admin commands (join, leave, state, forget) prove it; without it a node runs open, on
    /// loopback only.
    #[arg(long, env = "DYNAMO_CLUSTER_SECRET_FILE", value_name = "PATH")]
    cluster_secret_file: Option<PathBuf>,
    /// File holding the client token: a node given one serves only clients that prove it (or
    /// the cluster secret); a client command proves it.
    #[arg(long, env = "DYNAMO_CLIENT_TOKEN_FILE", value_name = "PATH")]
    client_token_file: Option<PathBuf>,
}

impl AuthArgs {
    /// Whether a client token file was named.
    pub fn has_client_token(&self) -> bool {
        self.client_token_file.is_some()
    }

    /// The secrets, read and checked.
    pub fn load(&self) -> Result<AuthConfig, String> {
        let read = |path: &Option<PathBuf>| path.as_deref().map(Secret::from_file).transpose();
        Ok(AuthConfig {
            cluster_secret: read(&self.cluster_secret_file)?,
            client_token: read(&self.client_token_file)?,
        })
    }
}

/// N, R and W, shared by `serve` and `sim`.
#[derive(Args, Debug, Clone, Copy)]
pub struct QuorumArgs {
    /// Replicas per key.
    #[arg(long, default_value_t = 3)]
    pub n: usize,
    /// Read quorum: replies a read waits for.
    #[arg(long, default_value_t = 2)]
    pub r: usize,
    /// Write quorum: acks a write waits for.
    #[arg(long, default_value_t = 2)]
    pub w: usize,
}

/// Switches of the availability machinery, shared by `serve` and `sim`.
#[derive(Args, Debug, Clone)]
pub struct MechanismArgs {
    /// Strict quorum: writes fail instead of using stand-ins for unreachable replicas.
    #[arg(long)]
    strict_quorum: bool,
    /// Turn read repair off.
    #[arg(long)]
    no_read_repair: bool,
    /// Turn hinted handoff off.
    #[arg(long)]
    no_hinted_handoff: bool,
    /// Turn anti-entropy off.
    #[arg(long)]
    no_anti_entropy: bool,
    /// Time between a node's anti-entropy rounds, ms.
    #[arg(long, default_value_t = dynamo_node::config::ANTI_ENTROPY_INTERVAL_MS_DEFAULT)]
    anti_entropy_ms: u64,
}

impl MechanismArgs {
    /// The switches as node options.
    pub fn options(&self) -> NodeOptions {
        NodeOptions {
            sloppy_quorum: !self.strict_quorum,
            hinted_handoff: !self.no_hinted_handoff,
            read_repair: !self.no_read_repair,
            anti_entropy: !self.no_anti_entropy,
            anti_entropy_interval_ms: self.anti_entropy_ms,
        }
    }
}

/// Options shared by the client commands.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node to ask, host:port.
    #[arg(long)]
    node: String,
    /// How long to wait for the answer, in ms.
    #[arg(long, default_value_t = CLIENT_TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Options of `dynamo get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    key: String,
}

/// Options of `dynamo put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    key: String,
    /// The value.
    value: String,
    /// The context of the read this write supersedes, as `dynamo get` printed it (the clock, then
    /// `#` and the cluster's MAC of it; or the `context` a `dynamo put` printed); omit for a blind
    /// write. A node with a cluster secret refuses a context without its MAC.
    #[arg(long, default_value = "")]
    context: String,
}

/// Options of `dynamo state`.
#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    key: String,
}

/// Options of `dynamo leave`.
#[derive(Args, Debug)]
pub struct LeaveArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// Options of `dynamo forget`.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The member to remove: gone for good (its data is refilled from the other replicas).
    id: String,
}

/// Options of `dynamo delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    key: String,
    /// The context of the read whose versions are deleted, as `dynamo get` printed it (MAC
    /// included).
    #[arg(long)]
    context: String,
    /// A marker the tombstone carries, shown by later reads among `versions` (for example the
    /// delete's id in a client's history).
    #[arg(long, default_value = "")]
    marker: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Whether every address `addr` (host:port) names is a loopback address. A name that does not
/// resolve is not.
fn is_loopback(addr: &str) -> bool {
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// The members `--id`, `--listen` and `--peers` name, checked: every entry `name=host:port`
/// with a valid name and address, no name twice, no peer on this node's own address.
fn members_of(args: &ServeArgs) -> Result<BTreeMap<NodeId, String>, String> {
    if !valid_node_id(&args.id) {
        return Err(format!(
            "--id {:?} must be 1-{NODE_ID_BYTES_MAX} of [A-Za-z0-9._-]",
            args.id
        ));
    }
    if !valid_addr(&args.listen) {
        return Err(format!("--listen {:?} is not host:port", args.listen));
    }
    let own: Vec<std::net::SocketAddr> = args
        .listen
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    let mut members: BTreeMap<NodeId, String> = BTreeMap::new();
    members.insert(args.id.as_str().into(), args.listen.clone());
    for peer in args.peers.iter().filter(|p| !p.is_empty()) {
        let (name, addr) = peer
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {peer:?} is not name=host:port"))?;
        if !valid_node_id(name) {
            return Err(format!(
                "--peers entry {peer:?}: {name:?} is not a node name (1-{NODE_ID_BYTES_MAX} of [A-Za-z0-9._-])"
            ));
        }
        if addr.is_empty() {
            return Err(format!(
                "--peers entry {peer:?} has no address: name=host:port"
            ));
        }
        if !valid_addr(addr) {
            return Err(format!("--peers entry {peer:?}: {addr:?} is not host:port"));
        }
        let same = addr == args.listen
            || addr
                .to_socket_addrs()
                .is_ok_and(|mut a| a.any(|a| own.contains(&a)));
        if same {
            return Err(format!(
                "--peers entry {peer:?} is this node's own address (--listen {})",
                args.listen
            ));
        }
        if members.insert(name.into(), addr.to_string()).is_some() {
            return Err(format!("--peers names {name:?} twice (or names this node)"));
        }
    }
    Ok(members)
}

/// Checks `serve`'s options before anything is written or bound; the error is the message.
fn serve_config(args: &ServeArgs) -> Result<NodeConfig, String> {
    let members = members_of(args)?;
    let auth = args.auth.load()?;
    if auth.cluster_secret.is_none() && !is_loopback(&args.listen) {
        return Err(format!(
            "--listen {} is not a loopback address: a node that listens beyond this machine needs --cluster-secret-file (without a secret, anyone who reaches it could join the ring or write as a peer)",
            args.listen
        ));
    }
    if args.join.is_empty() {
        let count = members.len();
        let QuorumArgs { n, r, w } = args.quorum;
        for (name, value) in [("--n", n), ("--r", r), ("--w", w)] {
            if value > count {
                return Err(format!(
                    "{name} {value} exceeds the {count} member(s) of the ring (this node and --peers): {}",
                    if name == "--n" {
                        "every key would have fewer replicas than asked"
                    } else {
                        "no quorum could ever be met"
                    }
                ));
            }
        }
    }
    for seed in &args.join {
        if !valid_addr(seed) {
            return Err(format!("--join {seed:?} is not host:port"));
        }
    }
    check_data_dir(&args.data_dir)?;
    let settings = ClusterSettings {
        n: args.quorum.n,
        r: args.quorum.r,
        w: args.quorum.w,
        partition_count: args.partitions,
        fsync: args.fsync,
        request_timeout_ms: args.request_timeout_ms,
        options: args.mechanisms.options(),
        bug: args.bug,
    };
    let mut config = NodeConfig::for_cluster(args.id.as_str(), members, &settings);
    config.cluster = args.cluster.clone();
    config.auth = auth;
    config.merkle_fanout = args.merkle_fanout;
    config.seeds = args.join.clone();
    config.validate()?;
    Ok(config)
}

/// A data directory must be a directory, or not exist yet (it is created).
fn check_data_dir(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "--data-dir {} exists and is not a directory",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--data-dir {}: {e}", path.display())),
    }
}

/// Raises the process's soft limit of open files to its hard limit, as any process may, and
/// returns the limit now in force: the node counts its connections against it
/// (`dynamo_node::shell::clients_for_open_files`). Many systems start processes with a soft limit
/// of 1,024 under a far higher hard one.
fn raise_open_files_limit() -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` that lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from this stack frame.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the open-file limit to its hard limit"
            );
        }
    }
    Ok(limit.rlim_cur)
}

/// Runs a node until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    init_logging("info");
    let mut config = serve_config(&args)?;
    let fds_max = raise_open_files_limit()?;
    config.client_connections_max = dynamo_node::shell::clients_for_open_files(fds_max)?;
    if config.client_connections_max < dynamo_node::shell::CLIENT_CONNECTIONS_MAX {
        tracing::warn!(
            fds_max,
            clients_max = config.client_connections_max,
            "the open-file limit leaves room for fewer client connections than {} (raise it with `ulimit -n`)",
            dynamo_node::shell::CLIENT_CONNECTIONS_MAX
        );
    }
    if config.auth.cluster_secret.is_none() {
        tracing::warn!(
            "no --cluster-secret-file: the node runs open (loopback only); anyone on this machine can speak as a peer or an admin"
        );
    }
    // One thread: the node's tasks all run on the driver's `LocalSet`, and a current-thread
    // runtime polls the sockets on that same thread, where a multi-thread one hands every
    // readiness event over from a worker thread (a wake-up across threads on each hop). The
    // fsync still runs apart, on the node's sync thread (`TokioEnv::run_sync`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let env = TokioEnv::default();
        let listener = env
            .bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let node =
            dynamo_node::shell::run(env, config, &args.data_dir, listener, shutdown_signal());
        tokio::task::LocalSet::new()
            .run_until(node)
            .await
            .map_err(|e| format!("node failed: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A client of `--node`, proving the cluster secret if given (an admin), or else the client
/// token if given; anonymous otherwise.
fn client(node: &NodeArgs) -> Result<Client<TokioEnv>, String> {
    Ok(authed_client(
        &node.node,
        node.timeout_ms,
        &node.auth.load()?,
    ))
}

/// A client of `addr` that proves the cluster secret if `auth` has one (an admin), or else the
/// client token if it has one; anonymous otherwise (`dynamo status` and `dynamo bench` too).
pub fn authed_client(addr: &str, timeout_ms: u64, auth: &AuthConfig) -> Client<TokioEnv> {
    let client = Client::new(TokioEnv::default(), addr.to_string()).with_timeout_ms(timeout_ms);
    match (&auth.cluster_secret, &auth.client_token) {
        (Some(secret), _) => client.with_auth(ClientAuth::admin(Some(secret.clone()))),
        (None, Some(token)) => client.with_auth(ClientAuth::client(token.clone())),
        (None, None) => client,
    }
}

/// A value as JSON: text where it is UTF-8, otherwise `{"hex": "..."}`.
fn value_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "hex": hex })
        }
    }
}

/// A sibling's version, and for a tombstone `"deleted": true` and its marker.
fn version_json(s: &SiblingView) -> Value {
    let mut v = json!({
        "dot": s.dot.as_ref().map(|d| json!([d.actor, d.counter])),
        "clock": s.clock.to_map(),
    });
    if s.tombstone {
        v["deleted"] = json!(true);
        v["marker"] = value_json(&s.value);
    }
    v
}

fn parse_context(text: &str) -> Result<Context, String> {
    Context::parse(text).map_err(|e| format!("bad --context: {e}"))
}

/// Prints a request failure and picks the exit code: 1.
fn failed(what: &str, e: ClientError) -> ExitCode {
    let outcome = if e.is_definite() {
        "it did not take effect"
    } else {
        "it may or may not have taken effect"
    };
    eprintln!("dynamo: {what} failed ({outcome}): {e}");
    ExitCode::from(1)
}

/// `dynamo get`.
pub fn get(args: GetArgs) -> Result<ExitCode, String> {
    init_logging("warn");
    runtime()?.block_on(async move {
        match client(&args.node)?.get(args.key.as_bytes()).await {
            Ok(reply) => {
                // `values` are the live values; `versions` every sibling, tombstones included,
                // so that a script can tell a deleted key from one never written.
                let values: Vec<Value> = reply
                    .siblings
                    .iter()
                    .filter(|s| !s.tombstone)
                    .map(|s| value_json(&s.value))
                    .collect();
                let versions: Vec<Value> = reply.siblings.iter().map(version_json).collect();
                let out = json!({
                    "values": values,
                    "context": reply.context.to_text(),
                    "versions": versions,
                });
                outln!("{out}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(failed("get", e)),
        }
    })
}

/// `dynamo state`: one node's raw stored state of a key (no quorum, no repair), tombstones included.
pub fn state(args: StateArgs) -> Result<ExitCode, String> {
    init_logging("warn");
    runtime()?.block_on(async move {
        match client(&args.node)?.replica_state(args.key.as_bytes()).await {
            Ok(state) => {
                let siblings: Vec<Value> = state
                    .siblings
                    .iter()
                    .map(|s| {
                        json!({
                            "value": value_json(&s.value),
                            "tombstone": s.tombstone,
                            "dot": s.dot.as_ref().map(|d| json!([d.actor, d.counter])),
                            "clock": s.context.to_map(),
                        })
                    })
                    .collect();
                let out = json!({"clock": state.clock.to_map(), "siblings": siblings});
                outln!("{out}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(failed("state", e)),
        }
    })
}

/// `dynamo leave`: the node leaves the ring; it hands its data to the new owners and keeps
/// serving until they have it (`dynamo state` on it then shows its keys going).
pub fn leave(args: LeaveArgs) -> Result<ExitCode, String> {
    membership_request("leave", &args.node, dynamo_node::wire::Request::Leave)
}

/// `dynamo forget`: removes a member gone for good from the ring (admin).
pub fn forget(args: ForgetArgs) -> Result<ExitCode, String> {
    if !valid_node_id(&args.id) {
        return Err(format!("{:?} is not a node name", args.id));
    }
    let request = dynamo_node::wire::Request::Forget {
        id: args.id.as_str().into(),
    };
    membership_request("forget", &args.node, request)
}

/// Sends a membership request (`verb` names it in errors) and prints the ring it answers with.
fn membership_request(
    verb: &str,
    node: &NodeArgs,
    request: dynamo_node::wire::Request,
) -> Result<ExitCode, String> {
    init_logging("warn");
    runtime()?.block_on(async move {
        match client(node)?.request(request).await {
            Ok(dynamo_node::wire::Response::Membership { ring, .. }) => {
                let members: Vec<&NodeId> = ring.members().keys().collect();
                outln!(
                    "{}",
                    json!({"ok": true, "version": ring.version(), "members": members})
                );
                Ok(ExitCode::SUCCESS)
            }
            Ok(dynamo_node::wire::Response::Error { error }) => {
                Ok(failed(verb, ClientError::Node(error)))
            }
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Ok(failed(verb, e)),
        }
    })
}

fn print_written(reply: dynamo_node::client::PutReply) {
    let out = json!({
        "ok": true,
        "dot": reply.dot.as_ref().map(|d| json!([d.actor, d.counter])),
        "clock": reply.clock.to_map(),
        "stored_on": reply.stored_on,
        // What covers the new version, signed: the next put's `--context` if nothing is read
        // in between.
        "context": reply.context.to_text(),
    });
    outln!("{out}");
}

/// `dynamo put`.
pub fn put(args: PutArgs) -> Result<ExitCode, String> {
    init_logging("warn");
    let context = parse_context(&args.context)?;
    runtime()?.block_on(async move {
        let value = args.value.into_bytes();
        match client(&args.node)?
            .put(args.key.as_bytes(), value, &context)
            .await
        {
            Ok(reply) => {
                print_written(reply);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(failed("put", e)),
        }
    })
}

/// `dynamo delete`.
pub fn delete(args: DeleteArgs) -> Result<ExitCode, String> {
    init_logging("warn");
    let context = parse_context(&args.context)?;
    runtime()?.block_on(async move {
        match client(&args.node)?
            .delete(args.key.as_bytes(), &context, args.marker.into_bytes())
            .await
        {
            Ok(reply) => {
                print_written(reply);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(failed("delete", e)),
        }
    })
}
