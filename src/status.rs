//! `dynamo status --node ADDR`: a node's view of the ring (members, partitions and their
//! preference lists, the ring's version, N/R/W) and of its peers (member, up or suspected, when it
//! last heard from each), as JSON: what a harness or an operator needs to know where a key lives
//! without re-implementing placement.

use crate::kv::AuthArgs;
use clap::Args;
use dynamo_node::client::CLIENT_TIMEOUT_MS_DEFAULT;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Options of `dynamo status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node to ask, host:port.
    #[arg(long)]
    node: String,
    /// Also say where these keys live (their partition and preference list); repeatable.
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// How long to wait for the answer, in ms.
    #[arg(long, default_value_t = CLIENT_TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    /// Status is an admin verb: a node with a cluster secret answers only those who prove it.
    #[command(flatten)]
    auth: AuthArgs,
}

/// `dynamo status`.
pub fn status(args: StatusArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut client = crate::kv::authed_client(&args.node, args.timeout_ms, &args.auth.load()?);
    let answer = runtime.block_on(async { client.status().await });
    let s = match answer {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dynamo: status of {} failed: {e}", args.node);
            return Ok(ExitCode::from(1));
        }
    };
    let n = s.n as usize;
    let ring = &s.ring;
    let partitions: Vec<Value> = (0..ring.partition_count())
        .map(|p| json!(ring.partition_preference_list(p, n)))
        .collect();
    let keys: serde_json::Map<String, Value> = args
        .keys
        .iter()
        .map(|k| {
            let value = json!({
                "partition": ring.partition_of(k.as_bytes()),
                "preference_list": ring.preference_list(k.as_bytes(), n),
            });
            (k.clone(), value)
        })
        .collect();
    let peers: Vec<Value> = s
        .peers
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "addr": p.addr,
                "member": p.member,
                "up": !p.suspected,
                "suspected": p.suspected,
                "heard_ms_ago": p.heard_ms_ago,
            })
        })
        .collect();
    let mut out = json!({
        "node": s.id,
        "actor": s.actor,
        "ring": {
            "version": ring.version(),
            "members": ring.members(),
            "partition_count": ring.partition_count(),
            "n": s.n,
            "r": s.r,
            "w": s.w,
            "sloppy_quorum": s.sloppy_quorum,
            "partitions": partitions,
        },
        "peers": peers,
        "requests_in_flight": s.requests_in_flight,
        "keys_stored": s.keys,
        "hints_pending": s.hints_pending,
        "hints_delivered": s.hints_delivered,
        "handoff_keys": s.handoff_keys,
        "partitions_stored": s.merkle_roots.len(),
        "ae_exchanges": s.ae_exchanges,
        "ae_keys_repaired": s.ae_keys_repaired,
        "read_repairs_sent": s.read_repairs_sent,
    });
    if !keys.is_empty() {
        out["keys"] = Value::Object(keys);
    }
    outln!("{out}");
    Ok(ExitCode::SUCCESS)
}
