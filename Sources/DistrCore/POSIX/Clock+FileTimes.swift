@preconcurrency import Glibc

extension Clock {
    /// The clock the kernel stamps file times with (`current_time`: the coarse wall clock), in
    /// nanoseconds since the epoch. The corresponding C function is `clock_gettime` with
    /// `CLOCK_REALTIME_COARSE`.
    package static var fileTimeNanoseconds: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
