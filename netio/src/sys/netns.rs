//! Network namespaces: moving the calling thread into one, for a
//! workbench that must talk to sockets inside the namespaces it made.

use super::cvt;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Moves the calling thread (only it: the process's other threads stay
/// where they are) into the network namespace `ns` refers to, such as an
/// open `/run/netns/NAME`. Sockets it creates afterwards belong to that
/// namespace, and so do the processes it starts. Needs `CAP_SYS_ADMIN`.
pub fn enter(ns: impl AsFd) -> io::Result<()> {
    // SAFETY: setns(2) only reads the descriptor, which `ns` keeps open
    // for the call, and changes no memory of ours.
    cvt(unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}
