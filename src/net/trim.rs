//! Handing freed memory back to the OS after a spike. glibc's allocator
//! keeps freed pages of its heap for reuse; after a burst of big messages
//! or many connections that is memory the server looks like it holds
//! forever. `malloc_trim` returns what is free.

/// Returns free heap memory to the OS (glibc); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // has no preconditions and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
