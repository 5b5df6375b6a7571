//! Pipes and `splice(2)`: moving socket bytes through a pipe without
//! copying them through user space.

use super::{cvt, cvt_retry, owned};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A non-blocking, close-on-exec pipe.
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

impl Pipe {
    /// Creates a pipe (`pipe2`) with the kernel's default capacity.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
        // SAFETY: pipe2 succeeded, so both are open and owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: owned(fds[0]),
                write: owned(fds[1]),
            }
        };
        Ok(pipe)
    }

    /// Asks for `size` bytes of capacity (`F_SETPIPE_SZ`) and returns what
    /// the kernel granted: it rounds up to pages and refuses more than
    /// `/proc/sys/fs/pipe-max-size`.
    pub fn set_size(&self, size: usize) -> io::Result<usize> {
        let want = i32::try_from(size).unwrap_or(i32::MAX);
        // SAFETY: fcntl on a descriptor we own; the argument is an int.
        let got = cvt(unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, want) })?;
        Ok(got as usize)
    }

    /// The pipe's capacity (`F_GETPIPE_SZ`).
    pub fn size(&self) -> io::Result<usize> {
        // SAFETY: fcntl on a descriptor we own; F_GETPIPE_SZ takes no argument.
        let got = cvt(unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
        Ok(got as usize)
    }
}

/// One non-blocking `splice(2)` of up to `len` bytes from `from` to `to`
/// (one of them must be a pipe). `Ok(0)` is end of stream on `from`.
#[inline]
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let (a, b) = (from.as_fd().as_raw_fd(), to.as_fd().as_raw_fd());
    // SAFETY: null offsets mean "current position"; no memory is passed.
    let n = cvt_retry(|| unsafe {
        libc::splice(
            a,
            std::ptr::null_mut(),
            b,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    })?;
    Ok(n as usize)
}

/// One non-blocking `write(2)` of `buf` into a pipe's write end.
#[inline]
pub fn write(pipe: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    let raw = pipe.as_fd().as_raw_fd();
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    let n = cvt_retry(|| unsafe { libc::write(raw, buf.as_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_through_a_pipe_between_sockets() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("test io");
        let mut a =
            std::net::TcpStream::connect(l.local_addr().expect("test io")).expect("test io");
        let (b, _) = l.accept().expect("test io");
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").expect("test io");
        let c = std::net::TcpStream::connect(l2.local_addr().expect("test io")).expect("test io");
        let (mut d, _) = l2.accept().expect("test io");
        let p = Pipe::new().expect("test io");
        let cap = p.set_size(1 << 18).expect("test io");
        assert_eq!(p.size().expect("test io"), cap);
        assert!(cap >= 1 << 16, "capacity {cap}");
        a.write_all(b"hello pipe").expect("test io");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(splice(&b, &p.write, cap).expect("test io"), 10);
        assert_eq!(splice(&p.read, &c, 10).expect("test io"), 10);
        let mut got = [0u8; 10];
        d.read_exact(&mut got).expect("test io");
        assert_eq!(&got, b"hello pipe");
        b.set_nonblocking(true).expect("test io");
        let e = splice(&b, &p.write, cap).expect_err("no data yet");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(splice(&b, &p.write, cap).expect("test io"), 0, "EOF");
    }
}
