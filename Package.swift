// swift-tools-version:6.2
import Foundation
import PackageDescription

let package = Package(
    name: "sensor-pipeline",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "rules-engine", targets: ["rules-engine"]),
        .executable(name: "sensor-sim", targets: ["sensor-sim"]),
        .executable(name: "pipeline-monitor", targets: ["pipeline-monitor"]),
        .library(name: "MQTT", targets: ["MQTT"]),
        .library(name: "NATS", targets: ["NATS"]),
        .library(name: "Rules", targets: ["Rules"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // The C library, as the system provides it.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // The only importer of CMosquitto: a Sendable, async MQTT client with no C type in its API.
        .target(
            name: "MQTT",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // nats.c, as the system provides it (Debian: libnats-dev).
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        // The only importer of CNATS: a Sendable, async NATS client (core, JetStream streams, key-value) with
        // no C type in its API.
        .target(
            name: "NATS",
            dependencies: [
                "CNATS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Partition leases in a NATS key-value bucket: at most one engine per partition, a fair share each.
        .target(
            name: "PartitionLeases",
            dependencies: [
                "NATS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Partition snapshots in a NATS key-value bucket, fenced by revision, in chunks.
        .target(
            name: "PartitionState",
            dependencies: ["NATS", "Rules"]
        ),
        // Starts real nats-server nodes (JetStream, MQTT listener, clusters) for tests.
        .target(
            name: "NATSTestSupport",
            dependencies: ["MQTT", "MQTTTestSupport"]
        ),
        // Starts real mosquitto brokers for tests.
        .target(
            name: "MQTTTestSupport",
            dependencies: ["MQTT"]
        ),
        // A child process for tests that must kill an MQTT client without DISCONNECT.
        .executableTarget(
            name: "mqtt-test-client",
            dependencies: [
                "MQTT",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What the input files are made of: YAML read with positions, JSON values, durations, diagnostics.
        .target(
            name: "FileFormats",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // The rule language: pure, no I/O, time passed in.
        .target(
            name: "Rules",
            dependencies: [
                "FileFormats",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The simulated world: pure, seeded, time passed in.
        .target(
            name: "Simulation",
            dependencies: [
                "FileFormats",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // Rule and device files and folders read from disk, and watched for changes.
        .target(
            name: "InputFiles",
            dependencies: ["Rules", "Simulation"]
        ),
        // What the engine and the simulator share around their MQTT client: the wall clock passed into the
        // pure cores, and the report of a broker that cannot be reached.
        .target(
            name: "ServiceSupport",
            dependencies: ["FileFormats", "MQTT", .product(name: "Logging", package: "swift-log")]
        ),
        // `rules-engine run`: evaluates readings over MQTT, runs actions, keeps state, reloads, drains.
        .target(
            name: "RulesEngineDaemon",
            dependencies: [
                "FileFormats", "InputFiles", "MQTT", "Rules", "ServiceSupport",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // `rules-engine run --nats`: partitions taken by lease, read from JetStream, taken over with their state.
        .target(
            name: "PartitionedEngine",
            dependencies: [
                "FileFormats", "InputFiles", "MQTT", "NATS", "PartitionLeases", "PartitionState", "Rules",
                "RulesEngineDaemon", "ServiceSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The engine's HTTP surface: /metrics, /healthz, /api/…, the live page (the only user of Hummingbird).
        .target(
            name: "EngineHTTP",
            dependencies: [
                "FileFormats", "Rules", "RulesEngineDaemon",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Firing rule instances as alerts in Prometheus Alertmanager (`run --alertmanager URL`).
        .target(
            name: "Alertmanager",
            dependencies: [
                "FileFormats", "Rules", "RulesEngineDaemon", "ServiceSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The `webhook` action: HTTP POSTs with retries, headers and TLS trust from --webhook-config.
        .target(
            name: "Webhooks",
            dependencies: [
                "FileFormats", "Rules", "RulesEngineDaemon",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // `sensor-sim`: the simulated world over MQTT, and recordings played back.
        .target(
            name: "SimulatorService",
            dependencies: [
                "FileFormats", "InputFiles", "MQTT", "Rules", "ServiceSupport", "Simulation",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `pipeline-monitor`'s terminal view, fed with MQTT messages.
        .target(
            name: "PipelineMonitor",
            dependencies: ["FileFormats", "MQTT", "Rules"]
        ),
        // `rules-engine check`, `replay`, `diff`, `test` and the table of `explain`: offline, no broker.
        .target(
            name: "RuleTools",
            dependencies: ["FileFormats", "InputFiles", "Rules", "Simulation"]
        ),
        // Reads a running engine's HTTP API (`rules-engine explain`, `pipeline-monitor --engine`).
        .target(
            name: "EngineAPIClient",
            dependencies: [
                "FileFormats",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Options and output that every program's command line shares (`--broker`, TLS, stderr, `ready`).
        .target(
            name: "CommandLineOptions",
            dependencies: ["MQTT", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "rules-engine",
            dependencies: [
                "Alertmanager", "CommandLineOptions", "EngineAPIClient", "EngineHTTP", "FileFormats", "InputFiles",
                "PartitionedEngine",
                "RuleTools", "Rules", "RulesEngineDaemon", "ServiceSupport", "Simulation", "Webhooks",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "sensor-sim",
            dependencies: [
                "CommandLineOptions", "FileFormats", "InputFiles", "MQTT", "Rules", "RuleTools", "ServiceSupport",
                "Simulation", "SimulatorService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "pipeline-monitor",
            dependencies: [
                "CommandLineOptions", "EngineAPIClient", "FileFormats", "InputFiles", "MQTT", "PipelineMonitor",
                "ServiceSupport", "Simulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The raw libmosquitto publisher/subscriber that pipeline-bench compares against (C, no pipeline code).
        .executableTarget(
            name: "mqtt-load",
            dependencies: ["CMosquitto"],
            path: "Benchmarks/mqtt-load",
            linkerSettings: [.linkedLibrary("mosquitto")]
        ),
        // Injects faults into a running pipeline (docs/operations.md).
        .executableTarget(
            name: "fault-soak",
            dependencies: [
                "MQTT", "MQTTTestSupport", "NATS", "NATSTestSupport", "PartitionLeases", "PartitionState", "Rules",
                "Simulation", "rules-engine", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Soak/fault-soak"
        ),
        // Counts heap allocations for pipeline-bench's in-process scenario.
        .target(
            name: "AllocationCounter",
            path: "Benchmarks/AllocationCounter"
        ),
        // Every performance figure in one run (docs/performance.md).
        .executableTarget(
            name: "pipeline-bench",
            dependencies: [
                "MQTT", "Rules", "MQTTTestSupport", "AllocationCounter", "mqtt-load", "rules-engine", "sensor-sim",
                "NATS", "NATSTestSupport", "PartitionLeases", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/pipeline-bench"
        ),
        .testTarget(
            name: "PartitionLeasesTests",
            dependencies: [
                "PartitionLeases",
                "NATS",
                "NATSTestSupport",
                "MQTT",
                "MQTTTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PartitionedEngineTests",
            dependencies: ["PartitionedEngine"]
        ),
        .testTarget(
            name: "PartitionStateTests",
            dependencies: [
                "PartitionState",
                "NATS",
                "NATSTestSupport",
                "Rules",
                "MQTT",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS",
                "NATSTestSupport",
                "MQTT",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "MQTTTests",
            dependencies: [
                "MQTT", "MQTTTestSupport", "mqtt-test-client", .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "RulesTests",
            dependencies: [
                "FileFormats",
                "Rules",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            // Read through #filePath by DifferentialReplayTests.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "SimulationTests",
            dependencies: ["FileFormats", "Simulation"]
        ),
        .testTarget(
            name: "RulesEngineDaemonTests",
            dependencies: [
                "FileFormats", "MQTT", "MQTTTestSupport", "Rules", "RulesEngineDaemon",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PipelineMonitorTests",
            dependencies: ["FileFormats", "MQTT", "PipelineMonitor"]
        ),
        // The HTTP routes in process, on a read model of the test's own (Hummingbird's test client, no socket).
        .testTarget(
            name: "EngineHTTPTests",
            dependencies: [
                "EngineHTTP", "FileFormats", "Rules", "RulesEngineDaemon",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The real programs against real brokers, as users and scripts run them.
        .testTarget(
            name: "ProgramTests",
            dependencies: [
                "MQTT", "MQTTTestSupport",
                "NATS", "NATSTestSupport", "PartitionLeases", "rules-engine", "sensor-sim",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)

// Upcoming language features for every target of ours, as swift-nio does: imports name what they use
// (MemberImportVisibility) and existential types are spelled `any` (ExistentialAny).
for target in package.targets {
    switch target.type {
    case .regular, .test, .executable:
        var settings = target.swiftSettings ?? []
        settings.append(.enableUpcomingFeature("MemberImportVisibility"))
        settings.append(.enableUpcomingFeature("ExistentialAny"))
        target.swiftSettings = settings
    case .macro, .plugin, .system, .binary:
        ()  // not applicable
    @unknown default:
        ()
    }
}

// libFuzzer targets (scripts/fuzz.sh): only declared with SENSOR_PIPELINE_FUZZ=1, because they have no
// `main` and build only with `--sanitize=fuzzer`.
if ProcessInfo.processInfo.environment["SENSOR_PIPELINE_FUZZ"] == "1" {
    for (name, dependency) in [
        ("fuzz-rules", "Rules"), ("fuzz-devices", "Simulation"), ("fuzz-payload", "Rules"), ("fuzz-readings", "Rules"),
    ] {
        package.targets.append(
            .executableTarget(
                name: name,
                dependencies: [.target(name: dependency), .target(name: "FileFormats")],
                path: "Fuzz/\(name)",
                swiftSettings: [.unsafeFlags(["-parse-as-library"])]
            )
        )
    }
}
