#!/usr/bin/env bash
# Side by side, in one run: a 3-node loopback cluster under `dynamo bench` and redis-server under
# redis-benchmark, at the same client count, in interleaved rounds (these machines are noisy:
# only figures from the same minutes compare). BENCHMARKS.md ("`dynamo bench` against
# redis-benchmark") quotes its output.
#
#   scripts/bench-vs-redis.sh [--bin PATH] [--rounds N] [--clients C] [--duration 6s]
#
# Per round: redis `appendfsync always`; the cluster with `--fsync always`, then `none`, each with
# puts alone, then gets alone of the keys they stored (redis-benchmark measures SET and then GET
# on one server, so these compare with its rows), then a 50/50 mix; redis `appendfsync everysec`.
# N=3, R=W=2, 10,000 uniform keys, 100-byte values. The redis rows are left out when redis-server
# is not installed (Debian: `apt-get install redis-server`). Ports 23101-23103 and 23200 must be
# free.
set -euo pipefail

bin=target/release/dynamo
rounds=3
clients=16
duration=6s
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-vs-redis: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "bench-vs-redis: no binary at $bin (cargo build --release)" >&2; exit 2; }
have_redis=1
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null &&
  command -v redis-cli >/dev/null || have_redis=0

work=$(mktemp -d /tmp/bench-vs-redis.XXXXXX)
# shellcheck source=scripts/cluster-lib.sh
. "$(dirname "$0")/cluster-lib.sh"
trap 'stop_all; rm -rf "$work"' EXIT
# A trap alone would clean up and carry on with the next row: the signal ends the script.
trap 'exit 130' INT
trap 'exit 143' TERM

# redis-benchmark's CSV as this script's rows (it gives no p99.9).
cat >"$work/redis_rows.py" <<'EOF'
import csv, sys
label = sys.argv[1]
for row in csv.DictReader(sys.stdin):
    op = row["test"].lower()
    print(f'{label:<32} {op:<4} {float(row["rps"]):>9.0f} {float(row["p50_latency_ms"]):>7.2f} '
          f'{float(row["p99_latency_ms"]):>7.2f} {"-":>7} {float(row["max_latency_ms"]):>7.2f}')
EOF

# A round's ratios, from its rows: the cluster with fsync always against redis with appendfsync
# always, each operation alone against redis-benchmark's row of it, and the mix against the
# harmonic mean of SET and GET (the rate of a 50/50 mix on redis).
cat >"$work/ratios.py" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, op = line[:32].strip(), line[32:].split()[0]
    # ops/s, p50, p99, p99.9, max; a count of failed requests may follow.
    rows[(label, op)] = [None if x == "-" else float(x) for x in line[32:].split()[1:6]]
def rate(label, op):
    return rows.get((label, op), [0])[0]
redis_set, redis_get = rate("redis always", "set"), rate("redis always", "get")
puts, gets = rate("dynamo fsync always, 0% gets", "put"), rate("dynamo fsync always, 100% gets", "get")
mix = rate("dynamo fsync always, 50% gets", "get") + rate("dynamo fsync always, 50% gets", "put")
p99_alone = rows.get(("dynamo fsync always, 100% gets", "get"), [0, 0, 0])[2]
p99_mix = rows.get(("dynamo fsync always, 50% gets", "get"), [0, 0, 0])[2]
if redis_set and redis_get:
    both = 2 / (1 / redis_set + 1 / redis_get)
    print(f"# ratios (always): puts alone {puts / redis_set:.2f}x of SET, gets alone "
          f"{gets / redis_get:.2f}x of GET, mix {mix / both:.2f}x of a 50/50 redis mix ({both:.0f}/s)")
print(f"# gets' p99 (fsync always): {p99_alone:.2f} ms alone, {p99_mix:.2f} ms in the mix")
EOF


# The cluster's rows for one fsync policy, on one cluster (fresh data directories) as redis-benchmark
# runs on one server: puts alone first, which also store the keys, so that the gets read stored
# 100-byte values as redis's GETs read what its SETs stored (gets of keys never put read nothing,
# and cost less); then gets alone, then the mix.
cluster() { # FSYNC
  local fsync=$1 dir="$work/cluster-$1"
  start_cluster bench-vs-redis "$dir" "$fsync" ""
  for gets in 0 100 50; do
    "$bin" bench --node "$addrs" --clients "$clients" --duration "$duration" --keys 10000 \
      --value-bytes 100 --gets "$gets" --json >"$dir/bench.json"
    # One line per operation type that ran: label, op, ops/s, p50, p99, p99.9, max (ms), and
    # the failed requests, which ops/s does not count.
    python3 - "$dir/bench.json" "dynamo fsync $fsync, $gets% gets" <<'EOF' | tee -a "$work/round.txt"
import json, sys
data = json.load(open(sys.argv[1]))
for row in data["results"]:
    if row["op"] != "all" and row["ops"] > 0:
        errors = f'  {row["errors"]} failed' if row["errors"] else ""
        print(f'{sys.argv[2]:<32} {row["op"]:<4} {row["ops_per_s"]:>9.0f} {row["p50_ms"]:>7.2f} '
              f'{row["p99_ms"]:>7.2f} {row["p999_ms"]:>7.2f} {row["max_ms"]:>7.2f}{errors}')
EOF
  done
  stop_all
  rm -rf "$dir"
}

# redis-server with an append-only file synced as told, then redis-benchmark's SET and GET rows.
redis() { # always|everysec
  local dir="$work/redis-$1"
  mkdir -p "$dir"
  redis-server --port 23200 --dir "$dir" --appendonly yes --appendfsync "$1" --save '' \
    --daemonize no >"$dir/log" 2>&1 &
  pids+=($!)
  local tries=0
  until redis-cli -p 23200 ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || { echo "bench-vs-redis: redis-server did not start" >&2; exit 1; }
    sleep 0.05
  done
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "bench-vs-redis: redis-server exited (port taken?)" >&2; exit 1; }
  redis-benchmark -p 23200 -c "$clients" -n 100000 -r 10000 -d 100 -t set,get --csv 2>/dev/null |
    python3 "$work/redis_rows.py" "redis $1" | tee -a "$work/round.txt"
  stop_all
  rm -rf "$dir"
}

echo "# $(nproc) cores, $clients clients, $duration per cluster row; $("$bin" --version 2>/dev/null || echo dynamo)"
printf '%-32s %-4s %9s %7s %7s %7s %7s\n' "system" "op" "ops/s" "p50" "p99" "p99.9" "max ms"
for round in $(seq 1 "$rounds"); do
  echo "## round $round, $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1 /proc/loadavg)"
  : >"$work/round.txt"
  [ $have_redis = 1 ] && redis always
  for fsync in always none; do
    cluster "$fsync"
  done
  [ $have_redis = 1 ] && redis everysec
  python3 "$work/ratios.py" "$work/round.txt"
done
[ $have_redis = 1 ] || echo "# redis-server or redis-benchmark is not installed: no redis rows"
