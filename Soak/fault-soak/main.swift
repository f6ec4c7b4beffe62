// fault-soak: runs mosquitto, the real engine and simulator, injects faults and prints a table of what
// was injected, lost, duplicated and how long recovery took. Short by default (the test command runs
// it); `--long` for the full counts (about 15 minutes, release build).
//
//   swift run -c release fault-soak [--long] [--seed N] [--only rules,engine,broker-stop,broker-kill,cut,actuator]

import Foundation

#if canImport(Glibc)
import Glibc
#endif

var parsedLong = false
var parsedSeed: UInt64 = 1
var only: Set<String>?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--long": parsedLong = true
    case "--seed": parsedSeed = UInt64(arguments.next() ?? "") ?? parsedSeed
    case "--only": only = Set((arguments.next() ?? "").split(separator: ",").map(String.init))
    default:
        FileHandle.standardError.write(
            Data(
                "usage: fault-soak [--long] [--seed N] [--only rules,engine,broker-stop,broker-kill,cut,actuator]\n"
                    .utf8
            )
        )
        exit(2)
    }
}
signal(SIGPIPE, SIG_IGN)  // the proxy writes to sockets its peers may have closed
let long = parsedLong
let seed = parsedSeed

@Sendable func stream(_ name: String, readings: Int, perSecond: Int) -> ReadingStream {
    ReadingStream(readings: readings, sensors: 100, perSecond: perSecond, prefix: "soak-\(name)-\(seed)")
}

/// One line to stdout at once (print's buffer would hold rows back when stdout is a file).
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let sections: [(name: String, run: @Sendable () async throws -> FaultRow)] = [
    ("rules", { try await runRuleFileCorruptions(count: long ? 1_000 : 40, seed: seed) }),
    (
        "engine",
        {
            try await runStream(
                .engineKill,
                count: long ? 20 : 3,
                stream: stream("engine", readings: long ? 1_000_000 : 20_000, perSecond: long ? 10_000 : 2_000),
                seed: seed
            )
        }
    ),
    (
        "broker-stop",
        {
            try await runStream(
                .brokerStop,
                count: long ? 20 : 2,
                stream: stream("stop", readings: long ? 200_000 : 10_000, perSecond: long ? 4_000 : 2_000),
                seed: seed
            )
        }
    ),
    (
        "broker-kill",
        {
            try await runStream(
                .brokerKill,
                count: long ? 20 : 2,
                stream: stream("kill", readings: long ? 200_000 : 10_000, perSecond: long ? 4_000 : 2_000),
                seed: seed
            )
        }
    ),
    (
        "cut",
        {
            try await runStream(
                .networkCut,
                count: long ? 5 : 1,
                stream: stream("cut", readings: long ? 300_000 : 30_000, perSecond: long ? 4_000 : 2_000),
                seed: seed,
                keepalive: 5
            )
        }
    ),
    ("actuator", { try await runActuatorRestarts(count: long ? 20 : 2) }),
]

emit("fault-soak\(long ? " --long" : ""), seed \(seed)")
emit(FaultRow.header())
var failed = false
for section in sections where only?.contains(section.name) ?? true {
    let started = ContinuousClock.now
    do {
        let row = try await section.run()
        emit(row.line + String(format: " (%.0f s)", (ContinuousClock.now - started).milliseconds / 1000))
        failed = failed || !row.passed
    } catch {
        emit("\(section.name): FAILED: \(error)")
        failed = true
    }
}
exit(failed ? 1 : 0)
