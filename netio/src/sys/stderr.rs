//! Writing to file descriptor 2 as it is: blocking `write(2)` calls, no
//! lock shared with `std::io::stderr`, and no `O_NONBLOCK` (the file
//! description is shared with whoever else holds it, such as the shell).

use super::cvt_retry;
use std::io;

/// The standard error descriptor.
const STDERR: i32 = 2;

/// Writes all of `buf` to fd 2, blocking while the reader is slow;
/// `EINTR` is retried. Any other failure (`EPIPE` once the reader has
/// gone, `EIO`, `EBADF`) comes back as the error, perhaps after part of
/// `buf` went out.
pub fn write_all(mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes at most `buf.len()` bytes from `buf`, which is
        // valid for reads of that length; fd 2 is open for the life of the
        // process (std opens /dev/null there when it starts without one).
        let n = cvt_retry(|| unsafe { libc::write(STDERR, buf.as_ptr().cast(), buf.len()) })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}
