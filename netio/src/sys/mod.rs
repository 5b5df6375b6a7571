//! The only module of the workspace that speaks `libc`: thin, safe
//! wrappers over the Linux system calls the event loops need, each
//! returning `io::Result`.
//!
//! Every file descriptor is an [`OwnedFd`](std::os::fd::OwnedFd) and is
//! created close-on-exec; functions that merely use one take
//! [`BorrowedFd`](std::os::fd::BorrowedFd) or `impl AsFd`. `-1` becomes
//! `io::Error::last_os_error()` in [`cvt`], and `EINTR` is retried in one
//! place, [`cvt_retry`].

pub mod epoll;
pub mod netns;
pub mod pipe;
pub mod rlimit;
pub mod signal;
pub mod socket;
pub mod stderr;
pub mod thread;
pub mod uring;

use std::io;

/// Turns a C-style `-1` return into the thread's `errno` as an `io::Error`.
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but calls `f` again for as long as it fails with `EINTR`.
pub(crate) fn cvt_retry<T: IsMinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Integer types that system calls return, where `-1` means failure.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(
        impl IsMinusOne for $t {
            fn is_minus_one(self) -> bool {
                self == -1
            }
        }
    )*};
}
impl_is_minus_one! { i32 isize i64 }

/// Wraps a freshly created descriptor.
///
/// # Safety
/// `fd` must be a valid, open descriptor that nothing else owns.
pub(crate) unsafe fn owned(fd: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}
