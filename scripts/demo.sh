#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a private mosquitto on loopback, and shows the
# rules at work. Until the live engine (`rules-engine run`) and the simulator exist, it replays a
# recorded day (examples/readings.jsonl) through the shipped rules and publishes every command the
# rules decide through the broker, where a subscriber shows it live.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh
echo "== building (release)"
swift build -c release --product rules-engine 2>&1 | grep -E "error|Compiling|Build complete" | tail -2
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp config/mosquitto/demo.conf "$work/mosquitto.conf"
echo "listener $port 127.0.0.1" >> "$work/mosquitto.conf"
[ "$(id -u)" -eq 0 ] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
broker=$!
subscriber=""
cleanup() {
    [ -n "$subscriber" ] && kill "$subscriber" 2>/dev/null || true
    kill "$broker" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
echo "== private broker: mqtt://127.0.0.1:$port (pid $broker)"

echo "== rules-engine check rules/"
"$bin/rules-engine" check rules

echo "== rules-engine test rules/*.test.yaml"
"$bin/rules-engine" test rules/*.test.yaml

echo "== live: commands on actuators/# and alerts/# as the rules send them"
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'actuators/#' -t 'alerts/#' -v -q 1 &
subscriber=$!
sleep 0.3
"$bin/rules-engine" replay --rules rules examples/readings.jsonl | while IFS= read -r line; do
    topic=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["topic"])' "$line")
    payload=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["payload"], ensure_ascii=False))' "$line")
    mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "$topic" -m "$payload"
    sleep 0.4
done
sleep 0.5
echo "== done: the broker and subscriber are stopped"
