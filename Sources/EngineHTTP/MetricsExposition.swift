/// The Prometheus text format as `/metrics` serves it: the registry's output with a `# HELP` line before
/// each family's `# TYPE` line (the metrics API that the engine records through has no place for help texts,
/// and `promtool check metrics` asks for them).
enum MetricsExposition {
    /// `exposition` with `# HELP NAME TEXT` inserted before every `# TYPE NAME …` whose name `helpTexts` has.
    static func addingHelp(to exposition: [UInt8], helpTexts: [String: String]) -> [UInt8] {
        let typePrefix = Array("# TYPE ".utf8)
        let newline = UInt8(ascii: "\n")
        var output: [UInt8] = []
        output.reserveCapacity(exposition.count + helpTexts.count * 80)
        let lines = exposition.split(separator: newline, omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            if line.starts(with: typePrefix) {
                let name = String(
                    decoding: line.dropFirst(typePrefix.count).prefix { $0 != UInt8(ascii: " ") },
                    as: UTF8.self
                )
                if let help = helpTexts[name] { output += Array("# HELP \(name) \(escaped(help))\n".utf8) }
            }
            output += line
            if index < lines.count - 1 { output.append(newline) }
        }
        return output
    }

    /// A help text as the format wants it: backslash and line feed escaped.
    static func escaped(_ text: String) -> String {
        text.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }
}
