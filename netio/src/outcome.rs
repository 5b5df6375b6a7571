//! What a read, write or splice on a non-blocking socket came to, and the
//! one place that says what an errno means for a connection.
//!
//! The event loops never match on errno values themselves: they turn an
//! `io::Result` into an [`Outcome`] (for data) or ask [`Errno::fault`]
//! (for accept and connect), so that "the peer is gone" or "out of
//! descriptors" is decided here once.

use std::fmt;
use std::io;

/// The result of one non-blocking I/O call on a socket (or pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many bytes moved (never 0: a read of 0 is [`Outcome::Eof`]).
    Data(usize),
    /// The source has ended: a read (or a splice in) returned 0.
    Eof,
    /// Nothing can move now; wait for the next edge.
    WouldBlock,
    /// The peer is gone: reset, aborted, or the pipe broke.
    Reset,
    /// Any other failure.
    Error(Errno),
}

impl Outcome {
    /// Classifies a read's, write's or splice's result. `Ok(0)` is end of
    /// stream (callers never offer an empty buffer to a write).
    #[inline]
    pub fn of(res: io::Result<usize>) -> Outcome {
        match res {
            Ok(0) => Outcome::Eof,
            Ok(n) => Outcome::Data(n),
            Err(e) => Outcome::of_error(&e),
        }
    }

    /// Classifies a failed call. Out of line and cold: on the hot path
    /// (`EAGAIN` aside) errors are rare, and keeping the classifier out of
    /// [`Outcome::of`] lets that inline into every read and write.
    #[cold]
    #[inline(never)]
    pub fn of_error(e: &io::Error) -> Outcome {
        let errno = Errno::of(e);
        match errno.fault() {
            Fault::WouldBlock => Outcome::WouldBlock,
            Fault::Reset => Outcome::Reset,
            _ => Outcome::Error(errno),
        }
    }

    /// Whether the socket failed (a reset or an error).
    #[inline]
    pub fn failed(self) -> bool {
        matches!(self, Outcome::Reset | Outcome::Error(_))
    }
}

/// An errno value, printed as the system's message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// What an error means for the connection (or the listener) it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EAGAIN`: not now.
    WouldBlock,
    /// The peer is gone: `ECONNRESET`, `ECONNABORTED`, `EPIPE`, `ENOTCONN`.
    Reset,
    /// Nobody listens there: `ECONNREFUSED`.
    Refused,
    /// The connection (or connect) timed out: `ETIMEDOUT`.
    TimedOut,
    /// The network on the way to the peer failed: unreachable, down, a
    /// protocol error. For `accept`: this one client is lost, the next
    /// one may be fine.
    Network,
    /// A firewall rule refused the connection: `EPERM`, `EACCES`.
    Denied,
    /// This process or the system is out of descriptors: `EMFILE`, `ENFILE`.
    NoDescriptors,
    /// Out of kernel memory: `ENOBUFS`, `ENOMEM`.
    NoMemory,
    /// No local address or port is free: `EADDRNOTAVAIL`, `EADDRINUSE`.
    NoAddress,
    /// Anything else.
    Other,
}

impl Errno {
    /// `EBADF`: no such descriptor (a socket already closed).
    pub const BAD_DESCRIPTOR: Errno = Errno(libc::EBADF);
    /// `ECONNRESET`: the peer reset the connection.
    pub const CONNECTION_RESET: Errno = Errno(libc::ECONNRESET);

    /// The errno of an I/O error. An error made from an `io::ErrorKind`
    /// (not by the kernel) gets the errno of its kind, `EIO` if none fits.
    #[inline]
    pub fn of(e: &io::Error) -> Errno {
        use io::ErrorKind as K;
        Errno(e.raw_os_error().unwrap_or(match e.kind() {
            K::WouldBlock => libc::EAGAIN,
            K::ConnectionReset => libc::ECONNRESET,
            K::ConnectionAborted => libc::ECONNABORTED,
            K::BrokenPipe => libc::EPIPE,
            K::NotConnected => libc::ENOTCONN,
            K::ConnectionRefused => libc::ECONNREFUSED,
            K::TimedOut => libc::ETIMEDOUT,
            K::AddrNotAvailable => libc::EADDRNOTAVAIL,
            K::AddrInUse => libc::EADDRINUSE,
            K::PermissionDenied => libc::EACCES,
            _ => libc::EIO,
        }))
    }

    /// The one errno classifier.
    pub fn fault(self) -> Fault {
        match self.0 {
            libc::EAGAIN => Fault::WouldBlock,
            libc::ECONNRESET | libc::ECONNABORTED | libc::EPIPE | libc::ENOTCONN => Fault::Reset,
            libc::ECONNREFUSED => Fault::Refused,
            libc::ETIMEDOUT => Fault::TimedOut,
            libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::EOPNOTSUPP
            | libc::ENETRESET => Fault::Network,
            libc::EPERM | libc::EACCES => Fault::Denied,
            libc::EMFILE | libc::ENFILE => Fault::NoDescriptors,
            libc::ENOBUFS | libc::ENOMEM => Fault::NoMemory,
            libc::EADDRNOTAVAIL | libc::EADDRINUSE => Fault::NoAddress,
            _ => Fault::Other,
        }
    }

    /// As an `io::Error`, for messages.
    pub fn io(self) -> io::Error {
        io::Error::from_raw_os_error(self.0)
    }
}

/// [`Errno::fault`] of an `io::Error`.
#[inline]
pub fn fault(e: &io::Error) -> Fault {
    Errno::of(e).fault()
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.io())
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self.io())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn results_become_outcomes() {
        assert_eq!(Outcome::of(Ok(5)), Outcome::Data(5));
        assert_eq!(Outcome::of(Ok(0)), Outcome::Eof);
        assert_eq!(Outcome::of(Err(err(libc::EAGAIN))), Outcome::WouldBlock);
        for n in [
            libc::ECONNRESET,
            libc::EPIPE,
            libc::ECONNABORTED,
            libc::ENOTCONN,
        ] {
            assert_eq!(Outcome::of(Err(err(n))), Outcome::Reset, "errno {n}");
        }
        let o = Outcome::of(Err(err(libc::ETIMEDOUT)));
        assert_eq!(o, Outcome::Error(Errno(libc::ETIMEDOUT)));
        assert!(o.failed() && Outcome::Reset.failed() && !Outcome::Eof.failed());
    }

    #[test]
    fn errors_made_from_a_kind_classify_like_the_kernel_s() {
        let kind = |k| fault(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), Fault::Refused);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), Fault::Reset);
        assert_eq!(kind(io::ErrorKind::TimedOut), Fault::TimedOut);
        assert_eq!(kind(io::ErrorKind::Other), Fault::Other);
    }

    #[test]
    fn faults_name_what_a_loop_must_do() {
        assert_eq!(Errno(libc::EMFILE).fault(), Fault::NoDescriptors);
        assert_eq!(Errno(libc::ENFILE).fault(), Fault::NoDescriptors);
        assert_eq!(Errno(libc::ECONNREFUSED).fault(), Fault::Refused);
        assert_eq!(Errno(libc::EPROTO).fault(), Fault::Network);
        assert_eq!(Errno(libc::ENETUNREACH).fault(), Fault::Network);
        assert_eq!(Errno(libc::EPERM).fault(), Fault::Denied);
        assert_eq!(Errno(libc::EADDRNOTAVAIL).fault(), Fault::NoAddress);
        assert_eq!(Errno(libc::EINVAL).fault(), Fault::Other);
        assert_eq!(fault(&err(libc::ENOBUFS)), Fault::NoMemory);
        assert!(Errno(libc::ECONNREFUSED).to_string().contains("refused"));
    }
}
