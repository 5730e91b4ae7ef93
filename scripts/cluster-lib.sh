# Sourced by scripts/bench-*.sh: a 3-node loopback cluster (N=3, R=W=2) on ports 23101-23103,
# and the processes a script started (`pids`), stopped by `stop_all` (a row's end, and on exit).
# The caller sets `bin` (the dynamo binary).

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

nodes="n1=127.0.0.1:23101,n2=127.0.0.1:23102,n3=127.0.0.1:23103"
addrs="127.0.0.1:23101,127.0.0.1:23102,127.0.0.1:23103"

# start_cluster SCRIPT DIR FSYNC CPUS: three `dynamo serve` with fresh data directories under DIR
# and the given fsync policy, pinned to CPUS with taskset ("" for the scheduler's choice), their
# pids appended to `pids`. Waits until each answers `dynamo status`, then checks they are this
# script's own (something else answering on the ports would pass the wait). SCRIPT names the
# caller in errors.
start_cluster() {
  local script=$1 dir=$2 fsync=$3 cpus=$4
  local pin=()
  [ -z "$cpus" ] || pin=(taskset -c "$cpus")
  mkdir -p "$dir"
  for i in 1 2 3; do
    local peers
    peers=$(tr ',' '\n' <<<"$nodes" | grep -v "^n$i=" | paste -sd,)
    ${pin[@]+"${pin[@]}"} "$bin" serve --id "n$i" --listen "127.0.0.1:2310$i" --peers "$peers" \
      --data-dir "$dir/n$i" --fsync "$fsync" 2>"$dir/n$i.log" &
    pids+=($!)
  done
  for i in 1 2 3; do
    local tries=0
    until "$bin" status --node "127.0.0.1:2310$i" >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ $tries -lt 100 ] || { echo "$script: node n$i did not start" >&2; exit 1; }
      sleep 0.05
    done
  done
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "$script: a node exited (port taken?): $dir" >&2; exit 1; }
  done
}
