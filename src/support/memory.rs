//! How the process's allocator hands memory back to the kernel.
//!
//! recover allocates and frees buffers of megabytes all the time (a bucket's columns, its
//! encoded pages, the split's slices). By default glibc's malloc maps buffers above a threshold
//! (at most 32 MiB) on their own and unmaps them when freed, and gives the top of a heap back to
//! the kernel once 128 KiB or more are free there; the next buffer then faults fresh pages in,
//! each zeroed by the kernel. At 11.4M rows that was 4.8-5.0 s of system time in a 24-25 s run.
//! A batch process that reuses its memory within seconds is better off keeping it: with these
//! settings the same run took 2.5-3.7 s of system time and its wall time fell by about 4%, for
//! 120-190 MB more peak memory (docs/performance.md, session 25).

/// Keeps freed memory in the process for reuse: buffers below 256 MiB come from the heaps rather
/// than maps of their own, heaps are trimmed only when 2 GiB at their top are free, and grow
/// 64 MiB beyond each request. Called first thing in `main`, before any other thread exists.
/// Returns whether the allocator took every setting; on other platforms than Linux with glibc it
/// does nothing and returns true.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() -> bool {
    SETTINGS.iter().all(|&(parameter, value)| {
        // SAFETY: mallopt only sets one of glibc malloc's parameters, here to a constant within
        // its valid range; it is called before any other thread exists, as glibc asks.
        unsafe { libc::mallopt(parameter, value) == 1 }
    })
}

/// The malloc parameters set, with their values.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: [(libc::c_int, libc::c_int); 3] = [
    (libc::M_MMAP_THRESHOLD, 256 << 20),
    (libc::M_TRIM_THRESHOLD, libc::c_int::MAX),
    (libc::M_TOP_PAD, 64 << 20),
];

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_takes_every_setting() {
        // glibc refuses a value out of range (returns 0): a threshold it does not take would
        // silently leave the default behaviour in place.
        assert!(super::keep_freed_memory());
    }
}
