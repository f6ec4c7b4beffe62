#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS (default 60): the rule-file loader, the device-file loader, the
# payload decoder and the readings file of replay. Seeds: the shipped rules/ and Devices/, Fuzz/corpus/readings,
# Fuzz/corpus/payload and examples/. New inputs go to
# a scratch corpus; a crash leaves its input in .fuzz-artifacts/ and fails the script — turn it into a
# regression test (Tests/RulesTests/LoaderFuzzTests.swift or Tests/SimulationTests) before fixing.
#
#   bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/install-dependencies.sh
export SENSOR_PIPELINE_FUZZ=1 SWIFT_BACKTRACE=enable=no
mkdir -p .fuzz-artifacts
status=0
targets=${FUZZ_TARGETS:-fuzz-rules fuzz-devices fuzz-payload fuzz-readings}
for target in $targets; do
    swift build --scratch-path .build-fuzz -c debug --sanitize=fuzzer --product "$target" 2>&1 | grep -E "error:" || true
    corpus=$(mktemp -d)
    case "$target" in
        fuzz-rules) cp rules/*.yaml "$corpus"/ ;;
        fuzz-devices) cp Devices/*.yaml "$corpus"/ ;;
        fuzz-payload) cp Fuzz/corpus/payload/* "$corpus"/ ;;
        fuzz-readings) cp examples/*.jsonl Fuzz/corpus/readings/* "$corpus"/ ;;
    esac
    echo "== $target for ${seconds}s"
    if ! .build-fuzz/debug/"$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
        -artifact_prefix=.fuzz-artifacts/"$target"- "$corpus" 2>.fuzz-artifacts/"$target".log; then
        echo "$target found a crash: see .fuzz-artifacts/" >&2
        status=1
    fi
    grep -E "^Done [0-9]+ runs" .fuzz-artifacts/"$target".log || tail -3 .fuzz-artifacts/"$target".log
    rm -rf "$corpus"
done
exit "$status"
