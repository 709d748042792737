@preconcurrency import Glibc

/// A wall-clock instant broken down in the master's local time zone.
package struct LocalTime: Sendable, Equatable {
    package var year, month, day, hour, minute, second, millisecond: Int

    package init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int) {
        (self.year, self.month, self.day) = (year, month, day)
        (self.hour, self.minute, self.second, self.millisecond) = (hour, minute, second, millisecond)
    }

    /// Breaks down nanoseconds since the Unix epoch (as `Clock.wallNanoseconds` gives them).
    /// The corresponding C function is `localtime_r`.
    package init(nanosecondsSinceEpoch nanoseconds: UInt64) {
        var seconds = time_t(nanoseconds / 1_000_000_000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        self.init(
            year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday), hour: Int(parts.tm_hour),
            minute: Int(parts.tm_min), second: Int(parts.tm_sec), millisecond: Int(nanoseconds % 1_000_000_000 / 1_000_000))
    }
}
