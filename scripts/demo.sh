#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a private mosquitto on loopback (config in
# config/mosquitto/demo.conf), the rules engine on rules/, the simulator on Devices/ at 10x speed, and
# shows sensors, rule instances, actuators and commands live, refreshed in place. Ctrl-C stops
# everything it started. Without a terminal (or with DEMO_SECONDS=N) it stops by itself after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh demo
bin=$(swift build -c release --show-bin-path)
products=(rules-engine sensor-sim pipeline-monitor)

# Builds one product, showing SwiftPM's progress on one line; stops the demo on a build error.
build() {
    local log
    log=$(mktemp)
    swift build -c release --product "$1" 2>&1 | tee "$log" | while IFS= read -r line; do
        case "$line" in "["*"]"*) printf '\r  %-100.100s' "$line" ;; esac
    done || true
    printf '\r%104s\r' ''
    if grep -qE "error:" "$log"; then
        grep -E "error:" "$log" >&2
        rm -f "$log"
        echo "the build failed (above)" >&2
        exit 1
    fi
    rm -f "$log"
}

# Up to date when every binary exists and nothing under Sources/ (or Package.swift) is newer than the oldest.
up_to_date() {
    local product oldest=""
    for product in "${products[@]}"; do
        [ -x "$bin/$product" ] || return 1
        if [ -z "$oldest" ] || [ "$bin/$product" -ot "$oldest" ]; then oldest="$bin/$product"; fi
    done
    [ -z "$(find Sources Package.swift -newer "$oldest" -print -quit)" ]
}

if up_to_date; then
    echo "== built already (release): ${products[*]}"
else
    echo "== building (release): ${products[*]} — the first build takes a few minutes"
    for product in "${products[@]}"; do
        echo "  $product"
        build "$product"
    done
fi
speed=${DEMO_SPEED:-10}
seconds=${DEMO_SECONDS:-}
[ -t 1 ] || seconds=${seconds:-30}

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp config/mosquitto/demo.conf "$work/mosquitto.conf"
echo "listener $port 127.0.0.1" >> "$work/mosquitto.conf"
[ "$(id -u)" -eq 0 ] && echo "user root" >> "$work/mosquitto.conf"
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    printf '\n== stopped the broker, the engine and the simulator; engine log: %s\n' "$work/engine.log"
    if [ -n "${http_port:-}" ]; then
        printf '   (while it ran, the live page was http://127.0.0.1:%s/)\n' "$http_port"
    fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
broker="mqtt://127.0.0.1:$port"

http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/rules-engine" run --rules rules --devices Devices --broker "$broker" --client-id demo-engine --http "127.0.0.1:$http_port" --announce-transitions \
    2>"$work/engine.log" >"$work/engine.out" &
pids+=($!)
note="live page: http://127.0.0.1:$http_port/ — metrics: /metrics — explain: rules-engine explain rack-cooling --engine 127.0.0.1:$http_port — Ctrl-C stops the demo (broker, simulator, engine)"
"$bin/sensor-sim" run Devices --broker "$broker" --speed "$speed" --client-id demo-sim 2>"$work/sim.log" >"$work/sim.out" &
pids+=($!)
printf '\033[2J'
if [ -n "$seconds" ]; then
    timeout "$seconds" "$bin/pipeline-monitor" --broker "$broker" --devices Devices --engine "127.0.0.1:$http_port" --refresh 1000 --note "$note" || true
else
    "$bin/pipeline-monitor" --broker "$broker" --devices Devices --engine "127.0.0.1:$http_port" --note "$note"
fi
