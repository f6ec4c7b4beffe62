#!/usr/bin/env bash
# Every test: installs what is missing, builds without warnings, lints, runs the unit and broker-backed
# tests (each starts its own mosquitto on a free loopback port), then checks and tests the shipped rules.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh

echo "== build"
swift build --build-tests 2>&1 | tee .build-log.txt | grep -E "error|warning:" || true
if grep -E "^/.*(Sources|Tests|Benchmarks)/.*warning:" .build-log.txt | grep -v "/.build/" ; then
    echo "the build has warnings (above): fix them" >&2
    exit 1
fi
grep -q "error:" .build-log.txt && { cat .build-log.txt >&2; exit 1; }
rm -f .build-log.txt

echo "== lint"
swift format lint --strict --recursive Sources Tests Benchmarks Package.swift

echo "== tests"
swift test 2>swift test --parallel 2>&11 | tee .test-log.txt | grep -E "✘|error:|Test run with|Executed .* tests" || true
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    grep -E "✘|recorded an issue|error" .test-log.txt | head -50 >&2
    exit "$status"
fi
rm -f .test-log.txt

echo "== shipped rules"
bin=$(swift build --show-bin-path)
"$bin/rules-engine" check rules
"$bin/rules-engine" test rules/*.test.yaml
