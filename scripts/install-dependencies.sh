#!/usr/bin/env bash
# Installs what the build and the tests need on Debian, when it is missing:
# mosquitto (the broker the tests and the demo start), mosquitto-clients, libmosquitto-dev, openssl,
# chromium and curl (the live page's test loads it headless and reads its event stream).
# tzdata: the zone database that schedules (`active: {timezone: …}`) read.
# prometheus: its promtool checks /metrics and docs/prometheus/rules.yml (the server itself is not used).
# python3-jsonschema: the schema test validates rule and device files against docs/schema/ with it.
# prometheus-alertmanager: the --alertmanager test runs it on a loopback port (its packaged service is not used).
# nats-server: an MQTT 3.1.1-only broker (its MQTT listener) the engine is tested against, and the JetStream
# server the NATS client is tested against. libnats-dev: nats.c, the C library the NATS module wraps.
# rabbitmq-server and python3-pika: RabbitMQ with its MQTT plugin, and the AMQP client of the system this project
# grew from; the RabbitMQ tests start their own node on loopback ports (the packaged service is not used).
#
#   bash scripts/install-dependencies.sh         everything the tests need
#   bash scripts/install-dependencies.sh demo    only what the build and the demo need (no browser, no
#                                                Prometheus, Alertmanager or nats-server: minutes less)
set -euo pipefail

# The build needs libmosquitto-dev and libnats-dev (both C libraries are linked); the demo runs mosquitto.
packages=(mosquitto mosquitto-clients libmosquitto-dev libnats-dev openssl pkg-config tzdata)
if [ "${1:-tests}" != "demo" ]; then
    packages+=(chromium curl prometheus prometheus-alertmanager python3-jsonschema nats-server rabbitmq-server python3-pika)
fi
needed=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || needed+=("$package")
done
if [ "${#needed[@]}" -gt 0 ]; then
    echo "installing: ${needed[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
# The packaged broker starts as a system service on port 1883; our tests and the demo never use it.
# Installing rabbitmq-server tries to start its service and leaves an epmd on the default port: neither is
# used (each test runs its own node and epmd), so they are stopped.
if [[ " ${needed[*]:-} " == *" rabbitmq-server "* ]]; then
    service rabbitmq-server stop >/dev/null 2>&1 || true
    epmd -kill >/dev/null 2>&1 || true
fi
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.2 or newer is needed)" >&2; exit 1; }
