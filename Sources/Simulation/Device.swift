import FileFormats

/// A simulated device: sensors that publish readings and actuators that take commands.
public struct Device: Sendable, Hashable {
    public var id: String
    public var sensors: [Sensor]
    public var actuators: [Actuator]
    public var location: SourceLocation
}

/// A sensor: where and how often it publishes, and what its signal looks like.
public struct Sensor: Sendable, Hashable {
    /// How the value is put into the payload.
    public enum PayloadShape: Sendable, Hashable {
        /// `{"value": 23.4, "unit": "°C", "ts": <ms>, "seq": <n>}`
        case json
        /// `23.4`
        case number
        /// `{"<key>": 23.4}`, as many real devices send.
        case object(key: String)
        /// The text at the value's index (rounded, clamped), as a door or switch sensor sends: `open`.
        case states([String])
    }

    public var name: String
    /// The topic; `{device}` is the device id.
    public var topic: String
    public var unit: String
    public var intervalMilliseconds: Int64
    public var signal: Signal
    public var payload: PayloadShape
    /// Effects of this sensor's own reading on other sensors of the device (a door left open warms a
    /// freezer): `state` is the reading's text (`open`) or number.
    public var effects: [Actuator.Effect] = []
}

/// The signal model of a sensor.
public struct Signal: Sendable, Hashable {
    /// The underlying shape over time.
    public enum Model: Sendable, Hashable {
        case constant(Double)
        /// Starts at `start`; each reading moves by a uniform step in [-step, step] plus `drift`.
        case randomWalk(start: Double, step: Double, drift: Double)
        case sine(mean: Double, amplitude: Double, periodMilliseconds: Int64)
        /// Peaks at `peakHour` (UTC, 0–24) each day.
        case daily(mean: Double, amplitude: Double, peakHour: Double)
        /// Piecewise constant: the value of the last step whose offset has passed.
        case steps([(offsetMilliseconds: Int64, value: Double)])

        public static func == (lhs: Model, rhs: Model) -> Bool { "\(lhs)" == "\(rhs)" }
        public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
    }

    public var model: Model
    /// Standard deviation of Gaussian noise added to each reading.
    public var noise: Double = 0
    /// Chance per reading of a spike of `spikeSize` (random sign).
    public var spikeProbability: Double = 0
    public var spikeSize: Double = 0
    /// Chance per reading of falling silent for `dropoutMilliseconds`.
    public var dropoutProbability: Double = 0
    public var dropoutMilliseconds: Int64 = 0
    /// Values are clamped into these bounds.
    public var bounds: ClosedRange<Double>?
}

/// An actuator: takes commands, reports its state (retained), and changes the world.
public struct Actuator: Sendable, Hashable {
    /// While the actuator is in `state`, the sensor's value moves by `ratePerSecond`, up to `limit`
    /// away from its signal; in any other state it recovers toward the signal at `recoverPerSecond`.
    public struct Effect: Sendable, Hashable {
        public var sensor: String
        public var state: String
        public var ratePerSecond: Double
        public var limit: Double?
        public var recoverPerSecond: Double
    }

    public var name: String
    public var commandTopic: String
    public var stateTopic: String
    public var states: [String]
    public var initialState: String
    public var effects: [Effect]
    /// Time between a command and its effect.
    public var lagMilliseconds: Int64
    /// Chance that a command is lost by the device.
    public var failProbability: Double
}
