import Foundation

/// Certificates made with `openssl` in a directory: a CA, a server certificate signed by it for
/// the given host names, and a second, unrelated CA for negative tests.
public struct TestCertificates: Sendable {
    /// The trusted CA certificate.
    public var caCertificate: String
    /// A CA certificate that did not sign the server certificate.
    public var otherCACertificate: String
    /// The server certificate.
    public var serverCertificate: String
    /// The server key.
    public var serverKey: String
    /// A client certificate signed by the trusted CA, and its key (for `require_certificate`).
    public var clientCertificate: String
    public var clientKey: String
    /// A client certificate signed by the unrelated CA, and its key.
    public var strangerCertificate: String
    public var strangerKey: String

    /// Makes the files in `directory`; the server certificate's subjectAltName lists `hostNames` as DNS names.
    public init(in directory: String, hostNames: [String] = ["localhost"]) throws {
        caCertificate = directory + "/ca.crt"
        otherCACertificate = directory + "/other-ca.crt"
        serverCertificate = directory + "/server.crt"
        serverKey = directory + "/server.key"
        clientCertificate = directory + "/client.crt"
        clientKey = directory + "/client.key"
        strangerCertificate = directory + "/stranger.crt"
        strangerKey = directory + "/stranger.key"
        let caKey = directory + "/ca.key"
        let otherKey = directory + "/other-ca.key"
        let request = directory + "/server.csr"
        let extensions = directory + "/server.ext"
        try TestBroker.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", caCertificate,
            "-days", "2", "-subj", "/CN=sensor-pipeline test CA",
        ])
        try TestBroker.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", otherKey, "-out",
            otherCACertificate, "-days", "2", "-subj", "/CN=unrelated CA",
        ])
        try TestBroker.run([
            "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", serverKey, "-out", request, "-subj",
            "/CN=\(hostNames.first ?? "localhost")",
        ])
        let names = hostNames.map { "DNS:\($0)" }.joined(separator: ",")
        try "subjectAltName=\(names)\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try TestBroker.run([
            "openssl", "x509", "-req", "-in", request, "-CA", caCertificate, "-CAkey", caKey, "-CAcreateserial",
            "-out", serverCertificate, "-days", "2", "-extfile", extensions,
        ])
        for (certificate, key, signer, signerKey) in [
            (clientCertificate, clientKey, caCertificate, caKey),
            (strangerCertificate, strangerKey, otherCACertificate, otherKey),
        ] {
            let clientRequest = key + ".csr"
            try TestBroker.run([
                "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", clientRequest, "-subj",
                "/CN=sensor-pipeline test client",
            ])
            try TestBroker.run([
                "openssl", "x509", "-req", "-in", clientRequest, "-CA", signer, "-CAkey", signerKey, "-CAcreateserial",
                "-out", certificate, "-days", "2",
            ])
        }
    }

    /// Listener lines for a TLS broker that also requires a client certificate signed by the CA.
    public var requireCertificateConfiguration: String {
        listenerConfiguration + "\nrequire_certificate true"
    }

    /// Listener lines for a TLS broker with these files.
    public var listenerConfiguration: String {
        """
        allow_anonymous true
        cafile \(caCertificate)
        certfile \(serverCertificate)
        keyfile \(serverKey)
        """
    }
}
