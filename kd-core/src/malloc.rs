//! Tells glibc's allocator to keep freed memory for reuse.
//!
//! A training step frees and allocates the same large activation buffers every
//! batch. By default glibc serves buffers above its mmap threshold with fresh
//! `mmap`s and gives them back on free, so each step page-faults and the
//! kernel zeroes every page again (15 % of the samples in a profile of
//! `kd-steps` here were in `clear_page`). Serving them from the heap, and not
//! trimming it, lets the next step reuse the same pages; the process keeps its
//! peak size instead.
/// Call once at start-up, before large allocations. A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any
    // thread is started by kd.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
