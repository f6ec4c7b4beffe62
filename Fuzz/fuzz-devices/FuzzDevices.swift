// libFuzzer entry point: the device-file loader (and, when a file loads, a minute of its world).
import FileFormats
import Simulation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDevices(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let devices = try? DeviceLoader.load([(path: "fuzz.yaml", text: text)]), devices.count < 50 {
        var world = Simulator(devices: devices, seed: 1, start: 0, interval: 1000)
        var readings: [SimulatedReading] = []
        var changes: [ActuatorStateChange] = []
        world.advance(to: 60_000, readings: &readings, changes: &changes)
    }
    return 0
}
