//! CPU time from /proc, for the benchmarks that measure what a node costs.

use std::sync::OnceLock;
use std::time::Duration;

/// CPU time (user + system) of `task` under /proc: `self` for this process, a pid for another,
/// `self/task/<tid>` for one of this process's threads.
pub fn cpu_time(task: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{task}/stat")).expect("read /proc/<task>/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name and state.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, asked once).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
