// fault-soak: runs mosquitto, the real engine and simulator, injects faults and prints a table of what
// was injected, lost, duplicated and how long recovery took. Short by default (the test command runs
// it); `--long` for the full counts (about 15 minutes, release build).
//
//   swift run -c release fault-soak [--long] [--seed N] [--only rules,engine,broker-stop,broker-kill,cut,broker-stop-rabbitmq,actuator,scale-out]

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
                "usage: fault-soak [--long] [--seed N] [--only rules,engine,broker-stop,broker-kill,cut,broker-stop-rabbitmq,actuator,scale-out]\n"
                    .utf8
            )
        )
        exit(2)
    }
}
signal(SIGPIPE, SIG_IGN)  // the proxy writes to sockets its peers may have closed
let long = parsedLong
let seed = parsedSeed

/// One line to stdout at once (print's buffer would hold rows back when stdout is a file).
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The stream faults: name, fault, injections, readings and readings per second (short, long).
let streamFaults:
    [(
        name: String, fault: StreamFault, broker: SoakBrokerKind, count: (Int, Int), readings: (Int, Int),
        perSecond: (Int, Int)
    )] =
        [
            ("engine", .engineKill, .mosquitto, (3, 20), (20_000, 1_000_000), (2_000, 10_000)),
            ("broker-stop", .brokerStop, .mosquitto, (2, 20), (10_000, 200_000), (2_000, 4_000)),
            ("broker-kill", .brokerKill, .mosquitto, (2, 20), (10_000, 200_000), (2_000, 4_000)),
            ("cut", .networkCut, .mosquitto, (1, 5), (30_000, 300_000), (2_000, 4_000)),
            // The system this project grew from: the same restart row through RabbitMQ's MQTT plugin.
            ("broker-stop-rabbitmq", .brokerStop, .rabbitMQ, (1, 5), (6_000, 100_000), (1_000, 2_000)),
        ]

let sections: [(name: String, run: () async throws -> FaultRow)] =
    [("rules", { try await runRuleFileCorruptions(count: long ? 1_000 : 40, seed: seed) })]
    + streamFaults.map { plan in
        (
            plan.name,
            {
                try await runStream(
                    plan.fault,
                    count: long ? plan.count.1 : plan.count.0,
                    stream: ReadingStream(
                        readings: long ? plan.readings.1 : plan.readings.0,
                        sensors: 100,
                        perSecond: long ? plan.perSecond.1 : plan.perSecond.0,
                        prefix: "soak-\(plan.name)-\(seed)"
                    ),
                    seed: seed,
                    keepalive: plan.fault == .networkCut ? 5 : 30,
                    broker: plan.broker
                )
            }
        )
    }
    + [("actuator", { try await runActuatorRestarts(count: long ? 20 : 2) })]
    + [
        (
            "scale-out",
            {
                try await ScaleOutSoak(
                    sensors: 1_000,
                    rounds: long ? 90 : 20,
                    round: .seconds(2),
                    engineKills: long ? 10 : 2,
                    nodeKills: long ? 3 : 1
                ).run()
            }
        )
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
