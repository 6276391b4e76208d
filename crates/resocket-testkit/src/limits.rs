//! The process's open-file limit, for tests and benches that hold thousands of sockets: both
//! ends of every loopback connection count against it, and the soft limit is often 1,024.

/// Raises the soft open-file limit to the hard one (safe `setrlimit`) and returns it; `None`
/// when it is unlimited. Child processes started afterwards inherit it.
///
/// # Panics
/// If the kernel refuses a limit it reported as the hard one.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).expect("raise the open-file limit");
    }
    limit.current
}
