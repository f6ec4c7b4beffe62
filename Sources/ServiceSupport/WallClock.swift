#if canImport(Glibc)
import Glibc
#endif

/// The wall clock in Unix milliseconds: the only place the engine reads time; the Rules core gets it passed in.
public enum WallClock {
    public static func nowMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    /// Makes glibc read the local time zone once: without `TZ`, every `localtime_r` (one per log line's
    /// timestamp) stats /etc/localtime again, which measurably delayed commands in the engine.
    public static func pinLocalTimeZone() {
        if getenv("TZ") == nil { setenv("TZ", ":/etc/localtime", 1) }
    }
}
