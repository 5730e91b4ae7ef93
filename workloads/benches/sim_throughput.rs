//! Simulated client operations per wall second, next to turmoil's own raw TCP request/response
//! rate, measured in one run on one core (issue 3). Not a timed test: it prints figures.
//!
//! `cargo bench -p dynamo-workloads --bench sim_throughput` (add `-- quick` for a short run: one
//! pass of fewer operations instead of the fastest of three).

use dynamo_workloads::plan::{NemesisKind, Plan, SimConfig, Workload};
use dynamo_workloads::run;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// turmoil alone: `clients` tasks on one host each send `requests` 100-byte requests to one of 5
/// echo hosts and wait for the answer, with the simulator's latency settings.
fn raw_turmoil_rate(clients: usize, requests: usize) -> f64 {
    let defaults = SimConfig::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .simulation_duration(Duration::from_secs(86_400))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(defaults.latency_ms_min))
        .max_message_latency(Duration::from_millis(defaults.latency_ms_max))
        .build();
    for h in 1..=5 {
        sim.host(format!("h{h}"), || async {
            let listener = turmoil::net::TcpListener::bind("0.0.0.0:9000").await?;
            loop {
                let (mut s, _) = listener.accept().await?;
                tokio::task::spawn_local(async move {
                    let mut buf = [0u8; 100];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    sim.client("client", async move {
        let tasks = (0..clients).map(|c| async move {
            let mut s = turmoil::net::TcpStream::connect(format!("h{}:9000", c % 5 + 1)).await?;
            let mut buf = [7u8; 100];
            for _ in 0..requests {
                s.write_all(&buf).await?;
                s.read_exact(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(())
        });
        for r in futures::future::join_all(tasks).await {
            r?;
        }
        Ok(())
    });
    let start = Instant::now();
    sim.run().expect("raw turmoil run");
    (clients * requests) as f64 / start.elapsed().as_secs_f64()
}

/// Runs `config` on `seeds` consecutive seeds and prints the total simulated client operations
/// over the total wall time of the runs (the simulation alone: no checking, no report). The
/// fastest of `repeats` passes counts: the machine is shared, and a pass can only be slowed by
/// other work, never sped up.
fn sim_rate(label: &str, config: SimConfig, seeds: u64, repeats: usize) {
    let plans: Vec<Plan> = (config.seed..config.seed + seeds)
        .map(|seed| {
            Plan::generate(SimConfig {
                seed,
                ..config.clone()
            })
            .expect("plan")
        })
        .collect();
    let (mut ops, mut sim_ms, mut wall_s) = (0u64, 0u64, f64::MAX);
    for _ in 0..repeats {
        let (mut pass_ops, mut pass_sim_ms, mut pass_wall_s) = (0u64, 0u64, 0f64);
        for plan in &plans {
            let start = Instant::now();
            let out = run(plan).expect("run");
            pass_wall_s += start.elapsed().as_secs_f64();
            pass_ops += out.summary.ops;
            pass_sim_ms += out.summary.sim_ms;
        }
        if pass_wall_s < wall_s {
            (ops, sim_ms, wall_s) = (pass_ops, pass_sim_ms, pass_wall_s);
        }
    }
    println!(
        "{label:<52} {seeds:>3} seeds {ops:>8} ops {:>7.1} s sim {wall_s:>6.2} s wall {:>9.0} ops/s",
        sim_ms as f64 / 1000.0,
        ops as f64 / wall_s
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 1 } else { 5 };
    let repeats = if quick { 1 } else { 3 };
    println!("one core, {} mode", if quick { "quick" } else { "full" });
    let raw = raw_turmoil_rate(32, 1_000 * scale);
    println!(
        "{:<52} {:>70.0} req/s",
        "turmoil raw TCP request/response (32 clients)", raw
    );
    let no_faults = |c: &SimConfig| SimConfig {
        nemesis: vec![],
        ..c.clone()
    };
    // What `dynamo sim` runs with no options (cart, 8 clients, 20 Zipf keys, 2,000 planned ops,
    // every nemesis), over several seeds: one run is a fraction of a second.
    let default = SimConfig {
        seed: 1,
        ..SimConfig::default()
    };
    sim_rate(
        "default (cart, 8 clients), no faults",
        no_faults(&default),
        2 * scale as u64,
        repeats,
    );
    sim_rate(
        "default (cart, 8 clients), all faults",
        default,
        2 * scale as u64,
        repeats,
    );
    // Longer carts: keys grow with operations, because a cart holds every item ever added to
    // it, so a fixed key count would make each update (and the figure) slower the longer the run.
    let carts = SimConfig {
        seed: 1,
        ops: 4_000 * scale,
        keys: 40 * scale,
        clients: 32,
        think_ms_max: 2,
        ..SimConfig::default()
    };
    sim_rate(
        "cart, 32 clients, 2 keys per 100 ops, no faults",
        no_faults(&carts),
        1,
        repeats,
    );
    sim_rate(
        "cart, 32 clients, 2 keys per 100 ops, all faults",
        carts,
        1,
        repeats,
    );
    let busy = SimConfig {
        seed: 1,
        workload: Workload::Register,
        ops: 4_000 * scale,
        keys: 1_000,
        clients: 32,
        think_ms_max: 2,
        quiesce_ms: 1_000,
        ..SimConfig::default()
    };
    sim_rate(
        "register, 32 clients, 1k keys, no faults",
        no_faults(&busy),
        1,
        repeats,
    );
    sim_rate(
        "register, 32 clients, 1k keys, all faults",
        SimConfig {
            nemesis: NemesisKind::ALL.to_vec(),
            ..busy
        },
        1,
        repeats,
    );
}

// The same allocator as the `dynamo` binary, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
