//! Giving freed memory back to the operating system at the moments a replica frees a lot
//! at once: FLUSHALL/FLUSHDB, and the old dataset a full resync replaces.
//!
//! Owns the one call into the allocator (mimalloc's `mi_collect`, the global allocator of
//! the binary, tests and benches). mimalloc otherwise returns emptied pages only when the
//! thread that owned them allocates again nearby, so an idle replica kept the RSS of a
//! dataset it no longer held (`tests/daemon_memory.rs`). Redis does the same after a
//! FLUSHALL (it purges jemalloc). A leaf: it knows nothing of keys; it must never be called
//! per command, only after a bulk free (a collect walks the thread's pages: milliseconds).

/// Return the calling thread's freed pages (and abandoned ones) to the OS now.
pub fn return_freed() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // with another global allocator it only tidies mimalloc's own (empty) heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
