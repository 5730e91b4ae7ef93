//! `dynamo bench`: a closed-loop load generator on the client library.
//!
//! `--clients` tasks each keep one request in flight: pick get or put (`--gets` percent), a key
//! (`--keys`, uniform or Zipf), a node (round robin over `--node`), send, wait, record the latency
//! in an HDR histogram of its operation type, repeat, until `--duration` or `--ops`. A put carries
//! the last context any client was given for its key (by a read or a put's answer), as an
//! application that reads before it writes would: blind puts would pile up siblings, and every
//! read would then carry them all. Contexts are kept whole, not joined: a node with a cluster
//! secret takes back only a context it signed, and a join of two is signed by nobody (siblings
//! that the last context misses are superseded by the next read's). Errors are counted per type
//! and their latency is not recorded.

use clap::Args;
use dynamo_node::client::{Client, Context};
use dynamo_node::env::TokioEnv;
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most clients.
pub const CLIENTS_MAX: usize = 4_096;
/// Most keys.
pub const KEYS_MAX: u64 = 100_000_000;
/// Largest value.
pub const VALUE_BYTES_MAX: usize = dynamo_node::wire::VALUE_BYTES_MAX;
/// Highest latency the histograms hold, µs (a minute); longer ones are recorded as this.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Most threads of the load generator (`--threads`): more than any machine it runs on has cores.
pub const BENCH_THREADS_MAX: i64 = 256;

/// Options of `dynamo bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The nodes, host:port, comma-separated; requests go round robin.
    #[arg(long, value_delimiter = ',', required = true)]
    node: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to run (10s, 1m); the default when --ops is not given is 30s.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many operations instead.
    #[arg(long)]
    ops: Option<u64>,
    /// Share of gets, in percent; the rest are puts.
    #[arg(long, default_value_t = 50)]
    gets: u32,
    /// Number of keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Key choice: uniform, zipf (key i has weight 1/(i+1)), or sequential (the clients take
    /// keys 0, 1, 2, ... in turn, wrapping around: with `--ops` equal to `--keys`, every key is
    /// written once, a load phase for gets that read stored values).
    #[arg(long, default_value = "uniform")]
    key_dist: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Deadline of one request, ms.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    /// Threads of the load generator (default: one per core). 1 runs every client on one
    /// thread, as redis-benchmark does; on a one-machine cluster the generator's threads compete
    /// with the nodes for the cores (on 2 cores, 1 and 2 threads measured alike: BENCHMARKS.md).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=BENCH_THREADS_MAX))]
    threads: Option<u16>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The client token (or cluster secret) to prove, for a node that asks for one.
    #[command(flatten)]
    auth: crate::kv::AuthArgs,
}

/// One operation type's figures.
struct Figures {
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Figures {
    fn new() -> Figures {
        Figures {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds"),
            errors: 0,
            first_error: None,
        }
    }

    fn add(&mut self, other: &Figures) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms of the same bounds");
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error.clone();
        }
    }

    fn record(&mut self, elapsed: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_US_MAX);
                self.latency_us.record(us).expect("clamped into range");
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// The key chooser.
#[derive(Clone)]
enum Keys {
    Uniform(u64),
    /// Cumulative weights.
    Zipf(Arc<Vec<f64>>),
    /// The next key of a count the clients share, modulo the key count.
    Sequential(u64, Arc<AtomicU64>),
}

impl Keys {
    fn pick(&self, rng: &mut u64) -> u64 {
        match self {
            Keys::Uniform(n) => next_random(rng) % n,
            Keys::Sequential(n, next) => next.fetch_add(1, Ordering::Relaxed) % n,
            Keys::Zipf(cdf) => {
                let u = (next_random(rng) >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|&x| x <= u).min(cdf.len() - 1) as u64
            }
        }
    }
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `dynamo bench`.
pub fn bench(args: BenchArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    if args.clients == 0 || args.clients > CLIENTS_MAX {
        return Err(format!("--clients must be 1..={CLIENTS_MAX}"));
    }
    if args.keys == 0 || args.keys > KEYS_MAX {
        return Err(format!("--keys must be 1..={KEYS_MAX}"));
    }
    if args.gets > 100 {
        return Err("--gets is a percentage".into());
    }
    if args.value_bytes > VALUE_BYTES_MAX {
        return Err(format!("--value-bytes must be at most {VALUE_BYTES_MAX}"));
    }
    let auth = args.auth.load()?;
    let duration = match (args.duration, args.ops) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(30)),
    };
    let keys = match args.key_dist.as_str() {
        "uniform" => Keys::Uniform(args.keys),
        "zipf" => {
            if args.keys > 10_000_000 {
                return Err("--key-dist zipf takes at most 10,000,000 keys".into());
            }
            let total: f64 = (1..=args.keys).map(|i| 1.0 / i as f64).sum();
            let mut acc = 0.0;
            let cdf = (1..=args.keys)
                .map(|i| {
                    acc += 1.0 / i as f64 / total;
                    acc
                })
                .collect();
            Keys::Zipf(Arc::new(cdf))
        }
        "sequential" => Keys::Sequential(args.keys, Arc::default()),
        other => {
            return Err(format!(
                "unknown --key-dist {other:?}: uniform, zipf or sequential"
            ));
        }
    };
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let budget = Arc::new(AtomicU64::new(args.ops.unwrap_or(u64::MAX)));
    let contexts: Arc<Mutex<HashMap<u64, Context>>> = Arc::default();
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|c| {
                let nodes = args.node.clone();
                let keys = keys.clone();
                let budget = budget.clone();
                let contexts = contexts.clone();
                let timeout_ms = args.timeout_ms;
                let gets = args.gets;
                let auth = auth.clone();
                let value = vec![b'v'; args.value_bytes];
                tokio::spawn(async move {
                    let mut clients: Vec<Client<TokioEnv>> = nodes
                        .iter()
                        .map(|a| crate::kv::authed_client(a, timeout_ms, &auth))
                        .collect();
                    let mut rng =
                        0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x2545_f491);
                    let (mut get, mut put) = (Figures::new(), Figures::new());
                    let mut turn = c;
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        if budget
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                b.checked_sub(1)
                            })
                            .is_err()
                        {
                            break;
                        }
                        let key = keys.pick(&mut rng);
                        let name = format!("bench-{key}");
                        turn += 1;
                        let client = &mut clients[turn % nodes.len()];
                        let began = Instant::now();
                        if (next_random(&mut rng) % 100) < u64::from(gets) {
                            let result = client.get(name.as_bytes()).await;
                            let result = result.map(|reply| {
                                let mut known = contexts.lock().expect("contexts");
                                known.insert(key, reply.context);
                            });
                            get.record(began.elapsed(), result.map_err(|e| e.to_string()));
                        } else {
                            let context = contexts
                                .lock()
                                .expect("contexts")
                                .get(&key)
                                .cloned()
                                .unwrap_or_default();
                            let result = client.put(name.as_bytes(), value.clone(), &context).await;
                            let result = result.map(|reply| {
                                let mut known = contexts.lock().expect("contexts");
                                known.insert(key, reply.context);
                            });
                            put.record(began.elapsed(), result.map_err(|e| e.to_string()));
                        }
                    }
                    (get, put)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(|e| format!("a client failed: {e}"))?);
        }
        Ok::<_, String>(all)
    })?;
    let elapsed_s = start.elapsed().as_secs_f64();
    let (mut get, mut put) = (Figures::new(), Figures::new());
    for (g, p) in &results {
        get.add(g);
        put.add(p);
    }
    let mut all = Figures::new();
    all.add(&get);
    all.add(&put);
    let row = |name: &str, f: &Figures| {
        let h = &f.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        json!({
            "op": name,
            "ops": h.len(),
            "ops_per_s": h.len() as f64 / elapsed_s,
            "p50_ms": ms(h.value_at_quantile(0.5)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "p999_ms": ms(h.value_at_quantile(0.999)),
            "max_ms": ms(h.max()),
            "errors": f.errors,
            "first_error": f.first_error,
        })
    };
    let rows = vec![row("get", &get), row("put", &put), row("all", &all)];
    if args.json {
        let out = json!({
            "nodes": args.node,
            "clients": args.clients,
            "threads": threads,
            "seconds": elapsed_s,
            "gets_percent": args.gets,
            "keys": args.keys,
            "key_dist": args.key_dist,
            "value_bytes": args.value_bytes,
            "results": rows,
        });
        outln!("{out}");
    } else {
        outln!(
            "dynamo bench: {} node(s), {} clients on {} thread(s), {:.1} s, {}% gets, {} keys {}, {}-byte values",
            args.node.len(),
            args.clients,
            threads,
            elapsed_s,
            args.gets,
            args.keys,
            args.key_dist,
            args.value_bytes
        );
        outln!(
            "{:<4} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "op",
            "ops",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors"
        );
        for r in &rows {
            outln!(
                "{:<4} {:>10} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                r["op"].as_str().unwrap_or(""),
                // As numbers: a JSON value's `Display` ignores the column's width.
                r["ops"].as_u64().unwrap_or(0),
                r["ops_per_s"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["p999_ms"].as_f64().unwrap_or(0.0),
                r["max_ms"].as_f64().unwrap_or(0.0),
                r["errors"].as_u64().unwrap_or(0)
            );
        }
        for (name, f) in [("get", &get), ("put", &put)] {
            if let Some(e) = &f.first_error {
                outln!("first {name} error: {e}");
            }
        }
    }
    let failed = get.errors + put.errors;
    let done = get.latency_us.len() + put.latency_us.len();
    Ok(if done == 0 && failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
