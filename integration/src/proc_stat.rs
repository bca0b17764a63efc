//! A process's CPU time from `/proc`, for the bench and for bench-paho (which includes this
//! file by path: it builds outside the workspace and cannot depend on this crate).

/// CPU time (user + system, all threads) process `pid` (or `self`) has used, in seconds, from
/// `/proc/PID/stat` (clock ticks of 1/100 s, Linux's `USER_HZ`); 0 when unreadable.
pub fn process_cpu_seconds(pid: &str) -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // twelfth and stime the thirteenth.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}
