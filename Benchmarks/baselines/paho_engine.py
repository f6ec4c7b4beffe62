"""The peer pipeline-bench compares rules-engine with: a minimal rules engine as a user would script it
in Python with paho-mqtt, evaluating the same rules as scenario 2 with dictionary lookups.

    python paho_engine.py PORT PREFIX RULE_COUNT

Rules: hot-i (i < 10) on PREFIX/sensors/{device}/temperature, above 25+i, clear at or below 23+i;
other-j (10 <= j < RULE_COUNT) on PREFIX/other/{device}/qj, above 50. A transition publishes
{"state": "on"|"off", ...} at QoS 1 on PREFIX/actuators/{device}/<actuator>/set. Prints `ready` once
subscribed; on SIGTERM prints `messages=N` on stderr and exits.
"""
import json
import os
import signal
import socket
import sys

import paho.mqtt.client as mqtt

port, prefix, rule_count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rules_by_level = {"temperature": [(f"hot-{i}", 25 + i, 23 + i, f"cooling-{i}") for i in range(10)]}
for j in range(10, rule_count):
    rules_by_level[f"q{j}"] = [(f"other-{j}", 50, 50, f"q{j}")]
firing = set()
handled = 0


def send(client, device, actuator, state, rule_id, value):
    payload = json.dumps({"state": state, "rule": rule_id, "value": value})
    client.publish(f"{prefix}/actuators/{device}/{actuator}/set", payload, qos=1)


def on_message(client, userdata, message):
    global handled
    handled += 1
    levels = message.topic.split("/")
    rules = rules_by_level.get(levels[-1])
    if not rules:
        return
    try:
        value = json.loads(message.payload)["value"]
    except (ValueError, KeyError, TypeError):
        return
    if not isinstance(value, (int, float)):
        return
    device = levels[-2]
    for rule_id, above, clear, actuator in rules:
        key = (rule_id, device)
        if key in firing:
            if value <= clear:
                firing.discard(key)
                send(client, device, actuator, "off", rule_id, value)
        elif value > above:
            firing.add(key)
            send(client, device, actuator, "on", rule_id, value)


def on_connect(client, userdata, flags, reason_code, properties):
    filters = [(f"{prefix}/sensors/+/temperature", 1)] + [(f"{prefix}/other/+/q{j}", 1) for j in range(10, rule_count)]
    client.subscribe(filters)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    print("ready", flush=True)


def stop(signum, frame):
    print(f"messages={handled}", file=sys.stderr, flush=True)
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-peer-{os.getpid()}")
client.on_connect, client.on_message, client.on_subscribe = on_connect, on_message, on_subscribe
client.connect("127.0.0.1", port, 60)
client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every client in the benchmark
client.loop_forever()
