#!/usr/bin/env bash
# Every test: installs what is missing, builds without warnings, lints, runs the unit and broker-backed
# tests (each starts its own mosquitto on a free loopback port), then checks and tests the shipped rules.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh

echo "== build"
set +e
swift build --build-tests > .build-log.txt 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
    grep -E "error:" .build-log.txt >&2 || tail -50 .build-log.txt >&2
    exit "$status"
fi
# Our own code builds without warnings (dependencies' warnings are theirs).
if grep -E "^/.*/(Sources|Tests|Benchmarks|Soak)/.*warning:" .build-log.txt | grep -v "/.build/"; then
    echo "the build has warnings (above): fix them" >&2
    exit 1
fi
rm -f .build-log.txt

echo "== lint"
swift format lint --strict --recursive Sources Tests Benchmarks Fuzz Soak Package.swift

echo "== tests"
set +e
swift test > .test-log.txt 2>&1
status=$?
set -e
grep -E "✘|recorded an issue|error:|Test run with" .test-log.txt | head -80 || true
if [ "$status" -ne 0 ]; then
    echo "swift test failed (exit $status); full output in .test-log.txt" >&2
    exit "$status"
fi
swift_tests=$(grep -Eo "Test run with [0-9]+ tests" .test-log.txt | grep -Eo "[0-9]+" | tail -1)
rm -f .test-log.txt

bin=$(swift build --show-bin-path)
echo "== benchmark harness, smoke mode (keeps it working; figures from a debug build mean nothing)"
"$bin/pipeline-bench" --smoke > .bench-log.txt 2>&1 || { cat .bench-log.txt >&2; exit 1; }
tail -1 .bench-log.txt
rm -f .bench-log.txt

echo "== fault soak, short mode (rule-file corruption, engine and broker kills, broker restarts on mosquitto and RabbitMQ, a network cut, an actuator kill, scale-out: engine and NATS node kills)"
"$bin/fault-soak" > .soak-log.txt 2>&1 || { cat .soak-log.txt >&2; exit 1; }
tail -n +2 .soak-log.txt
rm -f .soak-log.txt

echo "== shipped rules"
"$bin/rules-engine" check rules
"$bin/rules-engine" test rules/*.test.yaml | tee .rules-test-log.txt
rule_tests=$(grep -c "^PASS" .rules-test-log.txt)
rm -f .rules-test-log.txt
echo "tests: $((swift_tests + rule_tests)) passed, 0 failed"
