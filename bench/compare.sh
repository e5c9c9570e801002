#!/usr/bin/env bash
# Switchyard side by side with its peers, on loopback, end to end:
#
#   bench/compare.sh [--quick] [--only SERVERS] [--scenarios LIST]
#
# Installs what is missing (nats-server from Debian, rtc-switchboard from the committed
# bench/peers/package-lock.json), builds the release binaries, then for every server
# runs every scenario with a fresh server process pinned to core 0 (`taskset -c 0`,
# one runtime thread / GOMAXPROCS=1) and the load tool pinned to core 1. Writes
# bench/results/<date>.json (every figure, the machine, the ratios) and
# bench/results/<date>.svg (p99 against load), and prints the table.
#
#   --quick            short steps and small counts (a few minutes); the default is
#                      the full run (about half an hour)
#   --only S1,S2       servers: switchyard-json, switchyard-signaller, nats,
#                      rtc-switchboard, baseline (default: all of these), and
#                      baseline-tokio-websockets (the baseline on tokio-websockets
#                      instead of tokio-tungstenite; only when named)
#   --scenarios L      fanout,rooms,storm,idle (default: all)
#
# Environment: SERVER_CORE (0), TOOL_CORE (1), CARGO_BUILD_JOBS (1).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
only="switchyard-json,switchyard-signaller,nats,rtc-switchboard,baseline"
scenarios="fanout,rooms,storm,idle"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --only) only="$2"; shift ;;
        --scenarios) scenarios="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--only SERVERS] [--scenarios LIST]" >&2; exit 2 ;;
    esac
    shift
done
server_core="${SERVER_CORE:-0}"
tool_core="${TOOL_CORE:-1}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

say() { echo "compare: $*" >&2; }
wants() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

# ---- install (each step is skipped when already done) ----
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v nats-server >/dev/null; then
    say "installing nats-server (apt-get)"
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nats-server >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing nodejs and npm (apt-get)"
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi
peers=bench/peers
want=$(cat "$peers/package.json" "$peers/package-lock.json" <(node --version) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$peers/node_modules/.stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing rtc-switchboard (npm ci)"
    npm ci --prefix "$peers" --no-audit --no-fund --loglevel=error
    echo "$want" >"$peers/node_modules/.stamp"
fi
say "building release binaries"
cargo build --release --locked -p switchyard -p switchyard-bench
bin=target/release

# ---- run setup ----
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
work="target/bench-runs/$stamp"
mkdir -p "$work" bench/results
lines="$work/results.jsonl"
: >"$lines"
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "run $stamp (quick=$quick), load average at start: $loadavg_start"

if [ "$quick" = 1 ]; then
    step_ms=1000; knee_factor=2; fan_subs_fixed="100 1000"; knee_subs="100,1000"
    rooms_args=(--rooms 20 --rounds 3); storm_conns=1000; idle_steps=1000,5000
else
    step_ms=3000; knee_factor=1.5; fan_subs_fixed="100 1000"; knee_subs="100,1000,5000"
    rooms_args=(--rooms 100 --rounds 10); storm_conns=5000; idle_steps=1000,5000,10000,15000
fi

pid=""
port=""
stop_server() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    pid=""
}
trap stop_server EXIT

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "nothing listening on $1"; return 1
}

# Starts server $1 pinned to the server core; sets pid, port, url, proto, key.
start_server() {
    stop_server
    local log="$work/$1.log"
    case "$1" in
        switchyard-json|switchyard-signaller)
            port=18080
            cat >"$work/switchyard.toml" <<EOF
[listen]
ws = "127.0.0.1:$port"
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
EOF
            SWITCHYARD_LOG=warn taskset -c "$server_core" "$bin/switchyard" serve -c "$work/switchyard.toml" >>"$log" 2>&1 &
            pid=$!
            if [ "$1" = switchyard-json ]; then
                url="ws://127.0.0.1:$port/v1"; proto=json; key="bench:$secret"
            else
                url="ws://127.0.0.1:$port/"; proto=signaller; key=""
            fi
            ;;
        nats)
            port=18222
            cat >"$work/nats.conf" <<EOF
listen: 127.0.0.1:14222
websocket {
  listen: "127.0.0.1:$port"
  no_tls: true
}
EOF
            GOMAXPROCS=1 taskset -c "$server_core" nats-server -c "$work/nats.conf" >>"$log" 2>&1 &
            pid=$!; url="ws://127.0.0.1:$port/"; proto=nats; key=""
            ;;
        rtc-switchboard)
            port=18300
            taskset -c "$server_core" node "$peers/switchboard.js" "$port" >>"$log" 2>&1 &
            pid=$!; url="ws://127.0.0.1:$port/"; proto=signaller; key=""
            ;;
        baseline)
            port=18400
            taskset -c "$server_core" "$bin/switchyard-baseline" "127.0.0.1:$port" --worker-threads 1 >>"$log" 2>&1 &
            pid=$!; url="ws://127.0.0.1:$port/"; proto=raw; key=""
            ;;
        baseline-tokio-websockets)
            port=18410
            taskset -c "$server_core" "$bin/switchyard-baseline" "127.0.0.1:$port" --worker-threads 1 \
                --stack tokio-websockets >>"$log" 2>&1 &
            pid=$!; url="ws://127.0.0.1:$port/"; proto=raw; key=""
            ;;
        *) say "unknown server $1"; return 1 ;;
    esac
    wait_port "$port"
}

bench() { # bench SERVER SCENARIO [args...]
    local server="$1" scenario="$2"; shift 2
    local keyarg=()
    if [ -n "$key" ]; then keyarg=(--key "$key"); fi
    taskset -c "$tool_core" "$bin/switchyard-bench" "$scenario" --url "$url" --proto "$proto" \
        "${keyarg[@]}" --server-pid "$pid" --label "$server" --out "$lines" "$@" >/dev/null \
        || say "$server $scenario failed (continuing)"
}

IFS=, read -r -a servers <<<"$only"
for server in "${servers[@]}"; do
    signaller=0
    case "$server" in switchyard-signaller|rtc-switchboard) signaller=1 ;; esac
    if wants "$scenarios" fanout; then
        for subs in $fan_subs_fixed; do
            if [ "$subs" = 100 ]; then rates=50000,200000,400000; else rates=100000,400000; fi
            start_server "$server"
            bench "$server" fanout --subs "$subs" --rates "$rates" --duration-ms "$step_ms"
        done
        # The knee sweep. rtc-signaller servers announce every join to the whole room
        # (N² frames to set up), so they stop at 1,000 subscribers.
        ksubs="$knee_subs"
        if [ "$signaller" = 1 ]; then ksubs="100,1000"; fi
        IFS=, read -r -a knee_list <<<"$ksubs"
        for subs in "${knee_list[@]}"; do
            start_server "$server"
            bench "$server" fanout --subs "$subs" --knee --knee-start $((subs < 1000 ? 25000 : 10000)) \
                --knee-factor "$knee_factor" --duration-ms "$step_ms"
        done
    fi
    if wants "$scenarios" rooms && [ "${server#baseline}" = "$server" ]; then
        start_server "$server"
        leaves=()
        # rtc-switchboard and NATS announce no departures: do not wait for them.
        if [ "$server" = rtc-switchboard ] || [ "$server" = nats ]; then leaves=(--no-leaves); fi
        bench "$server" rooms "${rooms_args[@]}" "${leaves[@]}"
    fi
    if wants "$scenarios" storm; then
        start_server "$server"
        bench "$server" storm --conns "$storm_conns"
        if [ -n "$key" ]; then
            # The same with auth off, to isolate HS256's cost.
            start_server "$server"
            saved="$key"; key=""
            bench "$server" storm --conns "$storm_conns"
            key="$saved"
        fi
    fi
    if wants "$scenarios" idle && [ "$server" != switchyard-signaller ]; then
        start_server "$server"
        bench "$server" idle --steps "$idle_steps"
    fi
    stop_server
done

loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
"$bin/switchyard-bench" report "$lines" --json "bench/results/$stamp.json" --svg "bench/results/$stamp.svg" \
    --meta "date=$stamp" --meta "mode=$([ "$quick" = 1 ] && echo quick || echo full)" \
    --meta "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)" --meta "cores=$(nproc)" \
    --meta "kernel=$(uname -r)" --meta "loadavg_start=$loadavg_start" --meta "loadavg_end=$loadavg_end" \
    --meta "switchyard=$(git rev-parse --short HEAD)" --meta "nats_server=$(nats-server --version)" \
    --meta "rtc_switchboard=3.2.0" --meta "node=$(node --version)" \
    --meta "server_core=$server_core" --meta "tool_core=$tool_core" | tee "$work/table.txt"
say "load average at start $loadavg_start, at end $loadavg_end"
say "wrote bench/results/$stamp.json and bench/results/$stamp.svg (raw lines: $lines)"
