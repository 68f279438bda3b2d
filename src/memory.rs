//! glibc allocator settings for a long-running server (docs/performance.md, "Memory").
//!
//! Measured with glibc's defaults: the 19 MiB argon2 blocks raise malloc's dynamic mmap
//! threshold the first time one is freed, after which later blocks come from the heap
//! and are never given back (idle RSS 66–104 MiB); and every thread that allocates
//! (runtime workers, SQLite connection threads, argon2 workers) gets an arena of its
//! own, about 2 MiB each under load. Fixing the threshold makes every large block its
//! own mapping, returned to the kernel when freed; two arenas per core are plenty for a
//! server whose work is mostly RSA and argon2.

/// Applies the settings; call first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let arenas = libc::c_int::try_from(cores * 2).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists, and a refused setting (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
