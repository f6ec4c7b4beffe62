import Logging
import PartitionLeases
import RulesEngineDaemon
import Synchronization

/// The workers of the partitions this engine owns, started and stopped as the lease service says.
final class PartitionWorkers: PartitionLeaseDelegate {
    private let context: PartitionWorkerContext
    private let workers = Mutex<[Int: PartitionWorker]>([:])
    private let starts: AsyncStream<PartitionWorker>
    private let start: AsyncStream<PartitionWorker>.Continuation

    init(context: PartitionWorkerContext) {
        self.context = context
        (starts, start) = AsyncStream.makeStream(of: PartitionWorker.self)
    }

    /// Runs each worker as a child task until `finish()`; then waits for them all.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await worker in starts {
                group.addTask { await worker.run() }
            }
        }
    }

    /// Stops every worker (as lost: the leases are gone or going) and ends `run()` once they have returned.
    func finish() {
        start.finish()
        let all = workers.withLock { workers in
            defer { workers.removeAll() }
            return Array(workers.values)
        }
        for worker in all { worker.stop(.lost) }
    }

    /// An actuator's reported state, for the partitions whose rules commanded it.
    func observeActuatorState(topic: String, payload: [UInt8], at time: Int64) {
        let all = workers.withLock { Array($0.values) }
        for worker in all { worker.core?.observeActuatorState(topic: topic, payload: payload, at: time) }
    }

    func leaseAcquired(partition: Int, epoch: UInt64) async {
        let worker = PartitionWorker(partition: partition, epoch: epoch, context: context)
        let previous = workers.withLock { $0.updateValue(worker, forKey: partition) }
        previous?.stop(.lost)
        start.yield(worker)
    }

    func leaseLost(partition: Int, reason: String) {
        let worker = workers.withLock { $0.removeValue(forKey: partition) }
        worker?.stop(.lost)
        context.logger.warning(
            "partition lost: no longer evaluated here",
            metadata: ["partition": "\(partition)", "reason": "\(reason)"]
        )
    }

    func leaseWillBeReleased(partition: Int, epoch: UInt64) async {
        guard let worker = workers.withLock({ $0.removeValue(forKey: partition) }) else { return }
        worker.stop(.released)
        await worker.waitUntilFinished()
        context.logger.info("partition handed back", metadata: ["partition": "\(partition)"])
    }
}
