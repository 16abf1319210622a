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
        // its valid range, under the allocator's own lock; called before any other thread exists,
        // no allocation runs while the parameters change.
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

/// Gives the memory the heaps hold free back to the kernel, once: after a phase whose memory the
/// next phase's threads will not reuse (recover's census fills its tables on the calling thread,
/// whose heap the split's workers do not allocate from; at 113.8M rows that kept 1.1 GB of freed
/// tables resident through the rest of the run).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free pages of the heaps to the kernel, under the
    // allocator's locks; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Bytes the allocator holds in maps of their own (glibc's `mallinfo2().hblkhd`).
    #[allow(unsafe_code)]
    fn mapped_bytes() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2().hblkhd }
    }

    #[test]
    fn buffers_below_the_threshold_come_from_the_heaps() {
        assert!(super::keep_freed_memory());
        // 48 MiB: above the largest map threshold glibc ever chooses by itself (32 MiB), so with
        // its defaults this buffer is always a map of its own; below both the 256 MiB set here
        // and the 64 MiB a thread's heap can hold.
        const SIZE: usize = 48 << 20;
        let before = mapped_bytes();
        let buffer: Vec<u8> = std::hint::black_box(Vec::with_capacity(SIZE));
        let during = mapped_bytes();
        drop(buffer);
        assert!(
            during < before + SIZE,
            "a {SIZE}-byte buffer was mapped on its own ({before} -> {during} bytes mapped)"
        );
    }
}
