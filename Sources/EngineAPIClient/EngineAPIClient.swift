import AsyncHTTPClient
import FileFormats
import NIOCore
import NIOHTTP1

/// Reads a running engine's `--http` API (`/api/rules`, `/api/instances`) for `rules-engine explain` and
/// `pipeline-monitor --engine`. Uses async-http-client, which the engine links anyway, rather than
/// URLSession (FoundationNetworking would bring libcurl and its libraries into every program that links it).
public enum EngineAPIClient {
    /// Why an answer could not be had.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// GETs `address` (an `http://` or `https://` URL) and parses the answer as JSON.
    public static func json(at address: String, timeout: Duration = .seconds(5)) async throws -> JSONValue {
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(HTTPClientRequest(url: address), timeout: .init(timeout))
            body = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw Failure(description: "cannot reach the engine at \(address): \(error) (run it with --http)")
        }
        guard response.status.code == 200 else {
            throw Failure(description: "\(address) answered \(response.status.code) \(response.status.reasonPhrase)")
        }
        guard let value = JSONValue(parsing: Array(buffer: body)) else {
            throw Failure(description: "\(address) answered something that is not JSON")
        }
        return value
    }
}
