//! Gives freed heap memory back to the operating system after bulk work (a large schedules
//! file, a bulk `ApplySchedules`, a snapshot install), and reports the heap's and the process's
//! resident size as gauges.
//!
//! Invariant: it only returns pages glibc already holds free (`malloc_trim`, off the runtime's
//! worker threads) and reads statistics; without glibc it does nothing. It must not change what
//! is allocated or when.
//!
//! glibc keeps freed memory inside its arenas, so the resident size stays at its peak long after
//! the work is done (with 100,000 schedules about a third of it was freed memory). A background
//! task watches the free bytes in the arenas and trims when they grow past a threshold (or by a
//! little, and nothing was returned for a minute).
//!
//! glibc's arenas are left as they are. A single arena (`M_ARENA_MAX=1`) cut the memory of
//! 100,000 schedules with full run histories from 2,775 to 2,092 bytes each, but raised that
//! of 100,000 schedules just loaded from 960 to 1,034 bytes: the file's parse garbage then lies
//! among the schedules instead of in another thread's arena that can be returned whole.

use std::time::Duration;

/// Free bytes held by the allocator above which they are returned.
const TRIM_ABOVE_BYTES: usize = 32 << 20;

/// How often the free bytes are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Below `TRIM_ABOVE_BYTES`, freed bytes are still returned after this long without a trim if
/// they exceed `SETTLED_TRIM_ABOVE_BYTES`: otherwise a node that has gone quiet keeps up to
/// the threshold resident for good. A trim holds the allocator for about 13 ms per 150 MB
/// of heap, so this happens at most once a period.
const SETTLED_AFTER: Duration = Duration::from_secs(60);
const SETTLED_TRIM_ABOVE_BYTES: usize = 1 << 20;

/// What the allocator holds, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapUsage {
    /// In live allocations (including large ones mapped on their own).
    pub allocated: usize,
    /// Freed and kept for reuse; part of it may already have been returned to the OS.
    pub free: usize,
}

/// The allocator's own statistics, if it can tell.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn usage() -> Option<HeapUsage> {
    // SAFETY: mallinfo2 only reads the allocator's own statistics; it takes no arguments
    // and returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    Some(HeapUsage {
        allocated: info.uordblks + info.hblkhd,
        free: info.fordblks,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn usage() -> Option<HeapUsage> {
    None
}

/// Bytes the allocator holds freed, if it can tell.
pub(crate) fn freed_bytes() -> Option<usize> {
    usage().map(|u| u.free)
}

/// The process's resident size in bytes, if the OS tells.
pub(crate) fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn report(usage: HeapUsage) {
    use crate::telemetry::names::{HEAP_ALLOCATED, HEAP_FREE, RESIDENT_MEMORY};
    metrics::gauge!(HEAP_ALLOCATED).set(usage.allocated as f64);
    metrics::gauge!(HEAP_FREE).set(usage.free as f64);
    if let Some(resident) = resident_bytes() {
        metrics::gauge!(RESIDENT_MEMORY).set(resident as f64);
    }
}

/// Returns freed memory at the top and inside the arenas to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_freed() {
    // SAFETY: malloc_trim(0) only releases pages the allocator itself holds free; it is
    // thread-safe (it locks each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}

/// Returns freed memory now, off the runtime's worker threads (trimming walks the arenas).
/// Also called at the end of a bulk job whose garbage may fall short of the periodic pass's
/// threshold (a file of 100,000 schedules leaves about 30 MiB).
pub(crate) async fn release_freed_now() {
    let _ = tokio::task::spawn_blocking(release_freed).await;
}

/// Whether to return freed memory now: `freed` bytes are free, `after_last_trim` were free
/// right after the last trim, which was `since_last_trim` ago.
fn should_trim(freed: usize, after_last_trim: usize, since_last_trim: Duration) -> bool {
    let grown = freed.saturating_sub(after_last_trim);
    grown > TRIM_ABOVE_BYTES
        || (since_last_trim >= SETTLED_AFTER && grown > SETTLED_TRIM_ABOVE_BYTES)
}

/// Runs until aborted: every few seconds, returns freed memory when the allocator has
/// freed a lot since the last time. (Trimming leaves the free bytes counted, only their pages
/// go back, so the count is compared with what it was after the last trim.)
pub(crate) async fn release_freed_forever() {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut after_last_trim = 0;
    let mut last_trim = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(usage) = usage() else { return };
        report(usage);
        let freed = usage.free;
        if should_trim(freed, after_last_trim, last_trim.elapsed()) {
            release_freed_now().await;
            after_last_trim = freed_bytes().unwrap_or(freed);
            last_trim = tokio::time::Instant::now();
        } else if freed < after_last_trim {
            // Freed memory was reused: count growth from the lower level.
            after_last_trim = freed;
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_large_growth_is_trimmed_at_once_and_a_small_one_only_after_a_quiet_minute() {
        let mib = 1 << 20;
        let now = Duration::ZERO;
        assert!(should_trim(100 * mib, 60 * mib, now));
        assert!(!should_trim(80 * mib, 60 * mib, now));
        assert!(!should_trim(
            80 * mib,
            60 * mib,
            SETTLED_AFTER - Duration::from_secs(1)
        ));
        assert!(should_trim(80 * mib, 60 * mib, SETTLED_AFTER));
        // Nothing worth a trim: less than a MiB more, or less free than after the last one.
        assert!(!should_trim(
            60 * mib + mib / 2,
            60 * mib,
            SETTLED_AFTER * 10
        ));
        assert!(!should_trim(10 * mib, 60 * mib, SETTLED_AFTER * 10));
    }

    #[test]
    fn freed_memory_is_seen_and_given_back() {
        // 400,000 small blocks (~100 MB), of which one in 256 is kept: the kept ones pin the
        // arena's top, so the freed ones stay resident until trimmed.
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..400_000usize {
            let block = vec![i as u8; 240];
            if i % 256 == 255 {
                kept.push(block);
            } else {
                freed.push(block);
            }
        }
        drop(freed);
        let free_before = freed_bytes().unwrap_or_default();
        assert!(
            free_before > 50 << 20,
            "only {free_before} bytes free after freeing ~100 MB"
        );
        let resident_before = resident_bytes().unwrap_or_default();
        release_freed();
        let resident_after = resident_bytes().unwrap_or_default();
        assert!(
            resident_after + (50 << 20) < resident_before,
            "resident {resident_before} bytes before trimming, {resident_after} after"
        );
        assert_eq!(kept.len(), 400_000 / 256);
    }
}
