/// The version every program prints for `--version` (raise it with each release; CHANGELOG-style notes
/// live in the README's history).
public enum PackageVersion {
    public static let text = "0.9.0"
}
