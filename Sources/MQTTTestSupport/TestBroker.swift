import Foundation
import MQTT
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real `mosquitto` for one test: a private port on 127.0.0.1, a config file the test writes,
/// stopped by PID. It can be killed (-9) and restarted on the same port.
public final class TestBroker: Sendable {
    /// The port it listens on.
    public let port: Int
    /// A fresh temporary directory for this broker's files (config, log, passwords, certificates).
    public let directory: String
    /// The path of the config file.
    public let configurationPath: String
    /// The path of the broker's log (its stderr).
    public let logPath: String
    private let pid = Mutex<pid_t?>(nil)

    /// Writes a config (a loopback listener, no persistence, no per-client queue limit, TCP_NODELAY,
    /// then `extraConfiguration`) and starts the broker; returns once it accepts connections.
    ///
    /// `listenerConfiguration` replaces the default `allow_anonymous true` lines that follow the listener
    /// (use it for TLS, passwords and ACLs). `directory` may be prepared in advance with `makeDirectory()`.
    public init(
        listenerConfiguration: String = "allow_anonymous true",
        extraConfiguration: String = "",
        directory: String? = nil
    ) async throws {
        let directory = try directory ?? TestBroker.makeDirectory()
        self.directory = directory
        self.configurationPath = directory + "/mosquitto.conf"
        self.logPath = directory + "/mosquitto.log"
        // Another test's broker or an outgoing connection can take a port between our check and the
        // broker's bind: try a few ports.
        var attempt = 0
        while true {
            let port = try TestBroker.freePort()
            let configuration = """
                user root
                listener \(port) 127.0.0.1
                \(listenerConfiguration)
                persistence false
                max_queued_messages 0
                set_tcp_nodelay true
                log_dest stderr
                log_type error
                log_type warning
                log_type notice
                log_type information
                \(extraConfiguration)

                """
            try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
            do {
                let pid = try await TestBroker.launch(
                    configurationPath: configurationPath,
                    logPath: logPath,
                    port: port
                )
                self.port = port
                self.pid.withLock { $0 = pid }
                return
            } catch let error as TestBrokerError
                where error.description.contains("Address already in use") && attempt < 5
            {
                attempt += 1
                try? FileManager.default.removeItem(atPath: logPath)
            }
        }
    }

    deinit {
        if let pid = pid.withLock({ $0 }) {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    /// The broker's process id while it runs (for its CPU time in /proc).
    public var processID: pid_t? { pid.withLock { $0 } }

    /// `mqtt://127.0.0.1:PORT`.
    public var url: BrokerURL { BrokerURL(host: "127.0.0.1", port: port) }

    /// Starts the broker process (again) on its port and waits until it accepts TCP connections.
    public func start() async throws {
        let newPID = try await TestBroker.launch(configurationPath: configurationPath, logPath: logPath, port: port)
        pid.withLock { $0 = newPID }
    }

    private static func launch(configurationPath: String, logPath: String, port: Int) async throws -> pid_t {
        let newPID = try spawn(["mosquitto", "-c", configurationPath], outputPath: logPath)
        let deadline = ContinuousClock.now + .seconds(15)
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)" }
        while !acceptsConnections(port: port) {
            var status: Int32 = 0
            if waitpid(newPID, &status, WNOHANG) == newPID {
                throw TestBrokerError("mosquitto exited at start: \(log())")
            }
            guard ContinuousClock.now < deadline else {
                Glibc.kill(newPID, SIGKILL)
                waitpid(newPID, &status, 0)
                throw TestBrokerError("mosquitto did not accept connections on port \(port) within 15 s: \(log())")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return newPID
    }

    /// Stops the broker with SIGTERM and waits for it to exit.
    public func stop() {
        signalAndReap(SIGTERM)
    }

    /// Kills the broker with SIGKILL (no clean shutdown) and waits for it to exit.
    public func kill() {
        signalAndReap(SIGKILL)
    }

    /// Kills (-9) and starts the broker again on the same port.
    public func restart() async throws {
        kill()
        try await start()
    }

    /// What the broker logged so far.
    public var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)"
    }

    private func signalAndReap(_ signal: Int32) {
        guard
            let pid = pid.withLock({ value -> pid_t? in
                defer { value = nil }
                return value
            })
        else { return }
        Glibc.kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    // MARK: Helpers for test files

    /// A new empty temporary directory.
    public static func makeDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/sensor-pipeline-test-XXXXXX").utf8CString)
        guard let result = mkdtemp(&template) else { throw TestBrokerError("mkdtemp failed") }
        return String(cString: result)
    }

    /// Writes a mosquitto password file with `mosquitto_passwd` and returns its path.
    public static func makePasswordFile(users: [String: String], in directory: String) throws -> String {
        let path = directory + "/passwords"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        for (user, password) in users.sorted(by: { $0.key < $1.key }) {
            try run(["mosquitto_passwd", "-b", path, user, password])
        }
        return path
    }

    /// Writes an ACL file and returns its path.
    public static func makeACLFile(_ contents: String, in directory: String) throws -> String {
        let path = directory + "/acl"
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs a program to completion; throws with its output when it fails.
    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestBrokerError(
                "\(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(output)"
            )
        }
        return output
    }

    /// Spawns a program with stdout and stderr into `outputPath`, with `environment` added to this process's, and
    /// with `newProcessGroup` as the leader of a process group of its own (to stop it with every child); returns its
    /// PID.
    public static func spawn(
        _ arguments: [String],
        outputPath: String,
        environment: [String: String] = [:],
        newProcessGroup: Bool = false
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var merged = ProcessInfo.processInfo.environment
        for (name, value) in environment { merged[name] = value }
        var cArguments = arguments.map { strdup($0) } + [nil]
        var cEnvironment = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        let rc = withDefaultSignalAttributes { attributes in
            if newProcessGroup {
                let mutable = UnsafeMutablePointer(mutating: attributes)
                posix_spawnattr_setpgroup(mutable, 0)
                var flags: Int16 = 0
                posix_spawnattr_getflags(mutable, &flags)
                posix_spawnattr_setflags(mutable, flags | Int16(POSIX_SPAWN_SETPGROUP))
            }
            return posix_spawnp(&pid, arguments[0], &actions, attributes, &cArguments, &cEnvironment)
        }
        guard rc == 0 else {
            throw TestBrokerError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// Calls `body` with spawn attributes that unblock every signal and reset handlers to their defaults:
    /// a child must not inherit the blocked signals of a Swift concurrency thread, or SIGTERM would not stop it.
    static func withDefaultSignalAttributes<Result>(_ body: (UnsafePointer<posix_spawnattr_t>) -> Result) -> Result {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return body(&attributes)
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now, chosen below Linux's ephemeral range
    /// (32768–60999) so that no outgoing connection can be holding it.
    public static func freePort() throws -> Int {
        for _ in 0..<100 {
            let candidate = Int.random(in: 20_000..<32_000)
            if try canBind(port: candidate) { return candidate }
        }
        throw TestBrokerError("no free port found in 20000..<32000")
    }

    private static func canBind(port: Int) throws -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestBrokerError("socket() failed") }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static func acceptsConnections(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func loopbackAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// A failure to set up a test broker, with the broker's log where useful.
public struct TestBrokerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
