#!/usr/bin/env bash
# Where a get's latency goes on a small machine: the same work with the processes left to the
# scheduler and pinned with `taskset`. BENCHMARKS.md ("What the CPUs' placement costs") quotes its
# output.
#
#   scripts/bench-placement.sh [--bin PATH] [--duration 3s] [--rounds N]
#
# Part 1, the floor of any design: four processes pass tokens round a ring over loopback TCP
# (client -> relay -> relay -> relay -> client), no work per hop: four wake-ups per round trip,
# as a get's critical path (bench -> coordinator -> replica -> coordinator -> bench). Built from
# the Rust source below with `rustc` (no crate). Part 2: the 3-node cluster (N=3, R=W=2, fsync
# always), its 10,000 keys each stored once first (`--key-dist sequential`), then gets alone at
# 2, 8 and 16 clients, with the nodes and the bench (one thread, as redis-benchmark) free on
# CPUs 0 and 1 (the scheduler's choice between the two), all on CPU 0, and the nodes on CPU 0
# with the bench on CPU 1. Needs CPUs 0 and 1, `taskset`, `chrt`, `rustc` and `python3`; ports
# 23101-23103 and 24000-24003 must be free.
set -euo pipefail

bin=target/release/dynamo
duration=3s
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench-placement: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "bench-placement: no binary at $bin (cargo build --release)" >&2; exit 2; }
for tool in taskset chrt rustc python3; do
  command -v $tool >/dev/null || { echo "bench-placement: $tool is not installed" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "bench-placement: needs 2 CPUs" >&2; exit 2; }
secs=${duration%s}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-placement: --duration in whole seconds, e.g. 3s" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench-placement: --rounds must be a positive number" >&2; exit 2; }
for port in 23101 23102 23103 24000 24001 24002 24003; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench-placement: port $port is taken" >&2
    exit 2
  fi
done

work=$(mktemp -d /tmp/bench-placement.XXXXXX)
# shellcheck source=scripts/cluster-lib.sh
. "$(dirname "$0")/cluster-lib.sh"
# Busy loops of `ring_spun`, apart from `pids` as `stop_all` ends a row's processes within it.
spinners=()
stop_spinners() {
  for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${spinners[@]}"; do wait "$p" 2>/dev/null || true; done
  spinners=()
}
trap 'stop_all; stop_spinners; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$work/ring.rs" <<'EOF'
// ring relay LISTEN NEXT | ring client LISTEN FIRST TOKENS SECONDS
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
fn connect(addr: &str) -> TcpStream {
    for _ in 0..250 {
        if let Ok(s) = TcpStream::connect(addr) {
            s.set_nodelay(true).unwrap();
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot connect to {addr}");
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let listener = TcpListener::bind(&a[2]).unwrap();
    let mut next = connect(&a[3]);
    let (mut inp, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 65536];
    if a[1] == "relay" {
        loop {
            let n = inp.read(&mut buf).unwrap_or(0);
            if n == 0 || next.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    }
    let tokens: usize = a[4].parse().unwrap();
    let run = Duration::from_secs(a[5].parse().unwrap());
    let mut sent = vec![Instant::now(); tokens];
    for (i, at) in sent.iter_mut().enumerate() {
        *at = Instant::now();
        next.write_all(&(i as u64).to_le_bytes()).unwrap();
    }
    let (start, mut have, mut ns) = (Instant::now(), 0, Vec::new());
    while start.elapsed() < run {
        have += inp.read(&mut buf[have..]).unwrap();
        let whole = have / 8 * 8;
        for token in buf[..whole].chunks(8) {
            let i = u64::from_le_bytes(token.try_into().unwrap()) as usize;
            ns.push(sent[i].elapsed().as_nanos() as u64);
            sent[i] = Instant::now();
        }
        next.write_all(&buf[..whole]).unwrap();
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)] as f64 / 1e6;
    println!("{:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3}", ns.len() as f64 / run.as_secs_f64(),
        q(0.5), q(0.99), q(0.999), q(1.0));
}
EOF
rustc --edition 2021 -O -o "$work/ring" "$work/ring.rs"

# `dynamo bench --json`'s gets as a row.
cat >"$work/row.py" <<'EOF'
import json, sys
row = next(r for r in json.load(sys.stdin)["results"] if r["op"] == "get")
failed = f'  {row["errors"]} failed' if row["errors"] else ""
print(f'{row["ops_per_s"]:>9.0f} {row["p50_ms"]:>7.3f} {row["p99_ms"]:>7.3f} {row["p999_ms"]:>7.3f} '
      f'{row["max_ms"]:>7.3f}{failed}')
EOF

# PIN_RELAYS PIN_CLIENT TOKENS: one ring run's row.
ring() {
  local r=$1 c=$2 tokens=$3
  taskset -c "$r" "$work/ring" relay 127.0.0.1:24001 127.0.0.1:24002 & pids+=($!)
  taskset -c "$r" "$work/ring" relay 127.0.0.1:24002 127.0.0.1:24003 & pids+=($!)
  taskset -c "$r" "$work/ring" relay 127.0.0.1:24003 127.0.0.1:24000 & pids+=($!)
  printf '%-50s %7s ' "ring, relays on $r, client on $c${4:+, $4}" "$tokens"
  taskset -c "$c" "$work/ring" client 127.0.0.1:24000 127.0.0.1:24001 "$tokens" "$secs"
  stop_all
}

# TOKENS: the free ring with a busy loop at SCHED_IDLE on each CPU, which runs only when nothing
# else would, so that no CPU halts: what is left of the tail is not the wake-up of an idle CPU.
ring_spun() {
  for cpu in 0 1; do
    taskset -c "$cpu" chrt -i 0 sh -c 'while :; do :; done' &
    spinners+=($!)
  done
  ring 0,1 0,1 "$1" "idle CPUs spun"
  stop_spinners
}

# PIN_NODES PIN_BENCH: a fresh cluster on PIN_NODES, its keys stored, then gets alone.
cluster() {
  local n=$1 b=$2 dir="$work/cluster"
  rm -rf "$dir"
  start_cluster bench-placement "$dir" always "$n"
  # Every key stored once, as redis-benchmark's GETs read what its SETs stored (a get of a key
  # never stored costs less).
  "$bin" bench --node "$addrs" --clients 16 --ops 10000 --key-dist sequential --keys 10000 \
    --value-bytes 100 --gets 0 --threads 1 >/dev/null
  for clients in 2 8 16; do
    printf '%-50s %7s ' "cluster gets, nodes on $n, bench on $b" "$clients"
    taskset -c "$b" "$bin" bench --node "$addrs" --clients "$clients" --duration "$duration" \
      --keys 10000 --value-bytes 100 --gets 100 --threads 1 --json |
      python3 "$work/row.py"
  done
  stop_all
}

echo "# $(nproc) CPUs, $duration per row; $("$bin" --version 2>/dev/null || echo dynamo)"
printf '%-50s %7s %9s %7s %7s %7s %7s\n' "what, where" "flight" "per s" "p50" "p99" "p99.9" "max ms"
for round in $(seq 1 "$rounds"); do
  echo "## round $round, $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1 /proc/loadavg)"
  for tokens in 1 16; do
    ring 0,1 0,1 "$tokens"
    ring 0 0 "$tokens"
    ring_spun "$tokens"
  done
  cluster 0,1 0,1
  cluster 0 0
  cluster 0 1
done
