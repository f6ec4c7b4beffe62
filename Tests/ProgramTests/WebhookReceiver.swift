import Foundation
import MQTT
import MQTTTestSupport

/// A local HTTP(S) server for webhook tests (Python's http.server, started on a free loopback port, stopped by
/// PID). It answers each POST with the next status of `statuses` (200 once they run out), or never answers
/// when `silent`, and prints one JSON line per request: path, headers, body, the status it answered.
struct WebhookReceiver {
    struct Request: Decodable, Sendable {
        var path: String
        var headers: [String: String]
        var body: String
        var status: Int
    }

    let port: Int
    let process: ChildProcess

    static let script = """
        import http.server, json, ssl, sys, time
        port, statuses, silent = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",") if s], sys.argv[3] == "silent"
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if silent:
                    time.sleep(3600)
                status = statuses.pop(0) if statuses else 200
                print(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                  "body": body, "status": status}), flush=True)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if len(sys.argv) > 5:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[4], sys.argv[5])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        print("ready", flush=True)
        server.serve_forever()
        """

    /// `certificate`/`key` (PEM files) make it HTTPS.
    init(statuses: [Int] = [], silent: Bool = false, certificate: String? = nil, key: String? = nil) async throws {
        port = try TestBroker.freePort()
        var arguments = [
            "-c", Self.script, "\(port)", statuses.map(String.init).joined(separator: ","),
            silent ? "silent" : "answer",
        ]
        if let certificate, let key { arguments += [certificate, key] }
        process = try ChildProcess("/usr/bin/python3", arguments)
        try await process.waitForLine("ready")
    }

    /// The requests answered so far.
    var requests: [Request] {
        process.output.filter { $0.hasPrefix("{") }.compactMap {
            try? JSONDecoder().decode(Request.self, from: Data($0.utf8))
        }
    }

    /// Waits until `count` requests were answered.
    func waitForRequests(_ count: Int) async throws -> [Request] {
        try await withTimeout(.seconds(20), "\(count) webhook requests") { () async throws -> [Request] in
            while true {
                let requests = self.requests
                if requests.count >= count { return requests }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    func stop() async {
        process.signal(SIGKILL)
        _ = await process.waitForExit()
    }
}
