import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 for the network-cut fault. It forwards bytes both ways until `cut()`; from
/// then on it reads and drops them — no FIN, no RST, as when a route dies between two hosts, so only
/// MQTT's keepalive can tell. `heal()` closes the connections that lived through the cut (their peers
/// have given up on them by then) and forwards new connections again.
final class FaultProxy: @unchecked Sendable {
    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var isCut = false
    private var nextID = 0
    private var open: [Int: (client: Int32, upstream: Int32)] = [:]
    private var blackHoled: Set<Int> = []

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = FaultProxy.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard listener >= 0, bound == 0, listen(listener, 16) == 0 else {
            throw SoakError("the proxy cannot listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptConnections() }.start()
    }

    /// From now on, bytes in either direction are dropped.
    func cut() {
        lock.withLock {
            isCut = true
            blackHoled.formUnion(open.keys)
        }
    }

    /// Closes the connections that lived through the cut and forwards again.
    func heal() {
        let dead = lock.withLock {
            isCut = false
            defer { blackHoled.removeAll() }
            return blackHoled.compactMap { open[$0] }
        }
        for (client, upstream) in dead {
            shutdown(client, Int32(SHUT_RDWR))
            shutdown(upstream, Int32(SHUT_RDWR))
        }
    }

    /// Stops listening and closes every connection.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for (client, upstream) in lock.withLock({ Array(open.values) }) {
            shutdown(client, Int32(SHUT_RDWR))
            shutdown(upstream, Int32(SHUT_RDWR))
        }
    }

    private func acceptConnections() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = FaultProxy.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                close(client)
                close(upstream)
                continue
            }
            var on: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(upstream, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            let id = lock.withLock {
                nextID += 1
                open[nextID] = (client, upstream)
                if isCut { blackHoled.insert(nextID) }
                return nextID
            }
            let finished = Finished()
            for (from, to) in [(client, upstream), (upstream, client)] {
                Thread { [self] in
                    pump(from: from, to: to, id: id)
                    if finished.second() {
                        lock.withLock { _ = open.removeValue(forKey: id) }
                        close(client)
                        close(upstream)
                    }
                }.start()
            }
        }
    }

    private func pump(from source: Int32, to destination: Int32, id: Int) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            if lock.withLock({ blackHoled.contains(id) }) { continue }
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + written, count - written) }
                guard result > 0 else { break }
                written += result
            }
            guard written == count else { break }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    /// Counts the two pumps of a connection; the second to finish closes it.
    private final class Finished: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func second() -> Bool {
            lock.withLock {
                count += 1
                return count == 2
            }
        }
    }
}
