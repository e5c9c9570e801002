#!/usr/bin/env bash
# Fan-out across a two-node cluster through Redis, against the same load on one node:
#
#   bench/cluster.sh [--quick] [--no-standalone]
#
# Installs redis-server from Debian when it is missing (the system service is stopped,
# as scripts/test does), builds the release binaries, starts a private redis-server on
# a free port (no persistence) and two `switchyard serve` nodes with
# `[engine] kind = "redis"`, then runs switchyard-bench's fan-out for 100 and 1,000
# subscribers at a few fixed rates, in these cases:
#
#   single      publisher and subscribers on node A (B idles in the cluster)
#   cross       publisher on node A, subscribers on node B
#   standalone  one node without an engine, for reference (--no-standalone: skip)
#
# Every step reports deliveries/s, p50/p99, the CPU time (utime + stime from
# /proc/<pid>/stat) of node A, node B and Redis per delivery, and Redis's PUBLISH count
# (INFO commandstats) against the messages published. Writes
# bench/results/<date>-cluster.json and prints the table: cross-node against
# single-node CPU per delivery (goal: at most 1.3×) and deliveries per core-second
# against Centrifugo's ≈12.5k through Redis.
#
# Pinning (a 2-core machine cannot keep all four processes apart): both nodes on core 0
# (each with one runtime thread), Redis and the load tool on core 1. The node doing the
# deliveries is on core 0 in every case, so single and cross compare like for like;
# CPU time is per process, so sharing a core moves latency, not the CPU figures.
#
#   --quick            one round of 3 s steps, two rates per size (about a minute and
#                      a half with the build done); the default is three rounds of 5 s
#                      steps and three rates at 100 subscribers (about seven minutes)
#   --no-standalone    skip the engine-less reference node
#
# Environment: NODE_A_CORE (0), NODE_B_CORE (0), REDIS_CORE (1), TOOL_CORE (1),
# CARGO_BUILD_JOBS (1), CARGO_TARGET_DIR (target).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
standalone=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-standalone) standalone=0 ;;
        *) echo "usage: $0 [--quick] [--no-standalone]" >&2; exit 2 ;;
    esac
    shift
done
a_core="${NODE_A_CORE:-0}"
b_core="${NODE_B_CORE:-0}"
redis_core="${REDIS_CORE:-1}"
tool_core="${TOOL_CORE:-1}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
bin="${CARGO_TARGET_DIR:-target}/release"

say() { echo "cluster: $*" >&2; }

# ---- install (skipped when present) ----
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    say "installing redis-server (apt-get)"
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools >/dev/null
    # Only our own redis-server runs: never the system service the package starts.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
    elif command -v service >/dev/null; then
        as_root service redis-server stop >/dev/null 2>&1 || true
    fi
fi
say "building release binaries"
cargo build --release --locked -p switchyard -p switchyard-bench

# ---- run setup ----
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
work="${CARGO_TARGET_DIR:-target}/bench-runs/$stamp-cluster"
mkdir -p "$work" bench/results
lines="$work/results.jsonl"
: >"$lines"
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "run $stamp (quick=$quick), load average at start: $loadavg_start"

if [ "$quick" = 1 ]; then
    step_ms=3000; rounds=1
    rates_100=20000,100000; rates_1000=100000,300000
else
    step_ms=5000; rounds=3
    rates_100=20000,100000,200000; rates_1000=100000,300000
fi

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! in_use "$p"; then echo "$p"; return 0; fi
    done
    say "no free port"; return 1
}
wait_port() {
    for _ in $(seq 100); do
        if in_use "$1"; then return 0; fi
        sleep 0.1
    done
    say "nothing listening on $1"; return 1
}
stop() { # stop PID: SIGTERM, then SIGKILL after 5 s
    local pid="$1"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

redis_pid=""; a_pid=""; b_pid=""
stop_nodes() { stop "$a_pid"; stop "$b_pid"; a_pid=""; b_pid=""; }
cleanup() { stop_nodes; stop "$redis_pid"; redis_pid=""; }
trap cleanup EXIT

redis_port=$(free_port)
mkdir -p "$work/redis"
taskset -c "$redis_core" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$work/redis" >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_port "$redis_port"
say "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') pid $redis_pid on port $redis_port (core $redis_core)"

# write_config FILE PORT ENGINE NODE_ID
write_config() {
    cat >"$1" <<TOML
[listen]
ws = "127.0.0.1:$2"
[auth]
anonymous = true
[[auth.keys]]
kid = "bench"
secret = "$secret"
[driver]
max_connections = 19000
worker_threads = 1
[limits]
message_rate = 10000000
message_burst = 10000000
TOML
    if [ "$3" = redis ]; then
        cat >>"$1" <<TOML
[engine]
kind = "redis"
url = "redis://127.0.0.1:$redis_port"
node_id = "$4"
TOML
    fi
}

# start_node NAME CORE ENGINE: sets started_pid and started_port
start_node() {
    local name="$1" core="$2" engine="$3"
    started_port=$(free_port)
    write_config "$work/$name.toml" "$started_port" "$engine" "$name"
    SWITCHYARD_LOG=warn taskset -c "$core" "$bin/switchyard" serve -c "$work/$name.toml" \
        >>"$work/$name.log" 2>&1 &
    started_pid=$!
}

wait_engine() { # wait_engine PORT: until /healthz says the engine is connected
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$1/healthz" 2>/dev/null | grep -q "engine: redis connected"; then
            return 0
        fi
        sleep 0.1
    done
    say "node on $1 never connected to Redis"; return 1
}

bench() { # bench CASE SUBS RATES SUB_PORT PUB_PORT
    local case="$1" subs="$2" rates="$3" sub_port="$4" pub_port="$5"
    local watch=(--watch "node-a=$a_pid")
    if [ -n "$b_pid" ]; then watch+=(--watch "node-b=$b_pid" --watch "redis=$redis_pid" --redis "127.0.0.1:$redis_port"); fi
    taskset -c "$tool_core" "$bin/switchyard-bench" fanout --url "ws://127.0.0.1:$sub_port/v1" \
        --publish-url "ws://127.0.0.1:$pub_port/v1" --proto json --key "bench:$secret" \
        --label "$case" --out "$lines" --subs "$subs" --rates "$rates" --duration-ms "$step_ms" \
        "${watch[@]}" >/dev/null \
        || say "$case $subs subscribers failed (continuing)"
}

# Rounds interleave the cases, so that a change in the machine's load hits them alike;
# the report pools a case's steps over the rounds.
for round in $(seq "$rounds"); do
for subs in 100 1000; do
    if [ "$subs" = 100 ]; then rates="$rates_100"; else rates="$rates_1000"; fi
    cases="single cross"
    if [ "$standalone" = 1 ]; then cases="standalone $cases"; fi
    for case in $cases; do
        stop_nodes
        if [ "$case" = standalone ]; then
            start_node standalone "$a_core" memory; a_pid=$started_pid; a_port=$started_port
            wait_port "$a_port"
        else
            start_node node-a "$a_core" redis; a_pid=$started_pid; a_port=$started_port
            start_node node-b "$b_core" redis; b_pid=$started_pid; b_port=$started_port
            wait_port "$a_port"; wait_port "$b_port"
            wait_engine "$a_port"; wait_engine "$b_port"
        fi
        say "round $round/$rounds: $case, $subs subscribers at $rates deliveries/s (node A pid $a_pid core $a_core${b_pid:+, node B pid $b_pid core $b_core})"
        if [ "$case" = cross ]; then
            bench "$case" "$subs" "$rates" "$b_port" "$a_port"
        else
            bench "$case" "$subs" "$rates" "$a_port" "$a_port"
        fi
    done
done
done
stop_nodes

loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
out="bench/results/$stamp-cluster.json"
"$bin/switchyard-bench" cluster-report "$lines" --json "$out" \
    --meta "date=$stamp" --meta "mode=$([ "$quick" = 1 ] && echo quick || echo full)" \
    --meta "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)" --meta "cores=$(nproc)" \
    --meta "kernel=$(uname -r)" --meta "loadavg_start=$loadavg_start" --meta "loadavg_end=$loadavg_end" \
    --meta "switchyard=$(git rev-parse --short HEAD)" \
    --meta "redis=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
    --meta "node_a_core=$a_core" --meta "node_b_core=$b_core" \
    --meta "redis_core=$redis_core" --meta "tool_core=$tool_core" | tee "$work/table.txt"
say "pinning: node A core $a_core, node B core $b_core, redis core $redis_core, load tool core $tool_core"
say "load average at start $loadavg_start, at end $loadavg_end"
say "wrote $out (raw lines: $lines)"
