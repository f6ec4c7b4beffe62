/// The unit each simulated sensor's topic carries, from the device files: for views of readings whose payload
/// names none (`payload: number`).
public enum SensorUnits {
    /// Topic → unit, for every sensor that has a unit.
    public static func byTopic(_ devices: [Device]) -> [String: String] {
        var units: [String: String] = [:]
        for device in devices {
            for sensor in device.sensors where !sensor.unit.isEmpty {
                units[sensor.topic.replacingDevice(device.id)] = sensor.unit
            }
        }
        return units
    }
}
