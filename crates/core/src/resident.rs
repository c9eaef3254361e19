//! The process's resident set size (RSS), which the registry reads before and after a model
//! load to learn what the model costs in memory.
//!
//! Read from `/proc/self/status` (`VmRSS`, in kB), so it needs neither a system call wrapper
//! (the workspace forbids `unsafe`) nor the page size. Where there is no `/proc` the size is
//! unknown (`None`) and the registry falls back to the model's size hint.

/// Where Linux reports the process's memory counters as text.
const STATUS_PATH: &str = "/proc/self/status";

/// Bytes of the process's memory resident in RAM now, or `None` where the platform does not
/// say.
pub fn resident_set_bytes() -> Option<u64> {
    let status = std::fs::read_to_string(STATUS_PATH).ok()?;
    vm_rss_bytes(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kilobytes = line
        .trim()
        .strip_suffix("kB")?
        .trim_end()
        .parse::<u64>()
        .ok()?;
    kilobytes.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_rss_line_is_read_in_bytes() {
        let status = "Name:\ttest\nVmPeak:\t  900 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(1234 * 1024));
    }

    #[test]
    fn a_status_without_a_readable_vm_rss_says_nothing() {
        assert_eq!(vm_rss_bytes("Name:\ttest\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tmany kB\n"), None);
    }
}
