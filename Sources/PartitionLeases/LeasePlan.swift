/// What an engine does with partition leases in one round: pure, so the rules are tested without a server.
///
/// Each live engine aims at its fair share, `ceil(partitions / engines)`. An engine under its share takes
/// free partitions (no key in the bucket); one over its share hands the excess back, so a new engine gets
/// partitions without waiting for a failure. It takes its free partitions starting at its own offset,
/// so engines that start together mostly try different keys (a lost race only costs a refused create).
public struct LeasePlan: Sendable, Hashable {
    /// Partitions to try to create leases for.
    public var acquire: [Int]
    /// Partitions to hand back (stop, snapshot, delete the lease).
    public var release: [Int]

    /// Creates a plan.
    public init(acquire: [Int] = [], release: [Int] = []) {
        self.acquire = acquire
        self.release = release
    }

    /// The fair share of each of `engines` engines.
    public static func fairShare(partitions: Int, engines: Int) -> Int {
        let engines = max(1, engines)
        return (partitions + engines - 1) / engines
    }

    /// The plan for one engine.
    ///
    /// - Parameters:
    ///   - partitions: P, the number of partitions.
    ///   - owned: the partitions this engine holds a confirmed lease for.
    ///   - held: the partitions whose lease key exists (by anyone, this engine included).
    ///   - engines: the live engines (member keys), this one included.
    ///   - offset: where this engine starts looking for free partitions (a stable number of its own).
    public static func plan(partitions: Int, owned: Set<Int>, held: Set<Int>, engines: Int, offset: Int) -> LeasePlan {
        let share = fairShare(partitions: partitions, engines: engines)
        if owned.count > share {
            // Hand back the highest-numbered: deterministic, and a joining engine takes them.
            return LeasePlan(release: Array(owned.sorted().suffix(owned.count - share)))
        }
        let wanted = share - owned.count
        guard wanted > 0, partitions > 0 else { return LeasePlan() }
        let start = ((offset % partitions) + partitions) % partitions
        let free = (0..<partitions).map { (start + $0) % partitions }.filter {
            !held.contains($0) && !owned.contains($0)
        }
        return LeasePlan(acquire: Array(free.prefix(wanted)))
    }
}
