//! TCP sockets: non-blocking listen, accept, connect, I/O and shutdown over
//! IPv4 and IPv6, with `std::net::SocketAddr` at the boundary.

use super::{cvt, cvt_retry, owned};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A socket address in the kernel's layout.
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl RawAddr {
    pub(crate) fn new(addr: &SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub(crate) fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
}

/// Converts a kernel-filled address back to `SocketAddr`.
pub(crate) fn from_raw(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected address family {other}"),
        )),
    }
}

fn family(addr: &SocketAddr) -> i32 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// A non-blocking, close-on-exec TCP socket for a connect to `addr`
/// (of its family), not yet connected.
pub fn stream_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall with valid constants; the result is checked.
    let fd = cvt(unsafe { libc::socket(family(addr), ty, 0) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { owned(fd) })
}

fn setsockopt_int(fd: impl AsFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Options for a listening socket.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    pub backlog: i32,
    /// `SO_REUSEPORT`, so that several workers can share the port.
    pub reuse_port: bool,
}

/// A non-blocking listening socket bound to `addr` with `SO_REUSEADDR`.
pub fn listen(addr: &SocketAddr, opts: ListenOptions) -> io::Result<OwnedFd> {
    let fd = stream_socket(addr)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if opts.reuse_port {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let raw = RawAddr::new(addr);
    // SAFETY: `raw` holds a valid address of `raw.len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), raw.ptr(), raw.len) })?;
    // SAFETY: plain syscall on an open socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), opts.backlog) })?;
    Ok(fd)
}

/// The address a socket is bound to (the real port after binding port 0).
pub fn local_addr(fd: impl AsFd) -> io::Result<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `storage`.
    cvt(unsafe {
        libc::getsockname(
            fd.as_fd().as_raw_fd(),
            storage.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zero-initialised and then filled by the kernel.
    from_raw(unsafe { storage.assume_init_ref() })
}

/// Accepts one connection as a non-blocking, close-on-exec socket.
/// `WouldBlock` means the backlog is empty.
pub fn accept(listener: impl AsFd) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let lfd = listener.as_fd().as_raw_fd();
    // SAFETY: the kernel writes at most `len` bytes into `storage`.
    let fd = cvt_retry(|| unsafe {
        libc::accept4(
            lfd,
            storage.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by accept4 and is owned by nobody else.
    let fd = unsafe { owned(fd) };
    // SAFETY: zero-initialised and then filled by the kernel.
    let peer = from_raw(unsafe { storage.assume_init_ref() })?;
    Ok((fd, peer))
}

/// Starts a non-blocking connect. Returns the socket and whether the
/// connection completed at once (otherwise it is in progress: wait for
/// writability, then check [`take_error`]).
pub fn connect(addr: &SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let fd = stream_socket(addr)?;
    let raw = RawAddr::new(addr);
    // SAFETY: `raw` holds a valid address of `raw.len` bytes.
    match cvt(unsafe { libc::connect(fd.as_raw_fd(), raw.ptr(), raw.len) }) {
        Ok(_) => Ok((fd, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((fd, false)),
        Err(e) => Err(e),
    }
}

/// Reads and clears the socket's pending error (`SO_ERROR`).
pub fn take_error(fd: impl AsFd) -> io::Result<Option<io::Error>> {
    let err = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// Whether Nagle's algorithm is off (`TCP_NODELAY`).
pub fn nodelay(fd: impl AsFd) -> io::Result<bool> {
    Ok(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
}

fn getsockopt_int(fd: impl AsFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live i32 and its exact size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Disables Nagle's algorithm: the proxy forwards what it has at once.
pub fn set_nodelay(fd: impl AsFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Sets `SO_LINGER` to zero so that closing sends RST: used to pass an
/// abort from one side on to the other.
pub fn set_linger_zero(fd: impl AsFd) -> io::Result<()> {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a pointer to a live linger struct and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Bytes written to a TCP socket that its peer has not acknowledged yet,
/// sent or not (`SIOCOUTQ`): zero once everything written has reached the
/// peer's kernel, after which a reset can no longer discard any of it.
pub fn unacked(fd: impl AsFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which
    // points at a live local of that type.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sets `SO_RCVBUF` (the kernel doubles it for its bookkeeping) and with
/// it turns off receive-buffer autotuning: a test's slow reader then
/// holds little in its kernel, and the bytes it has not read wait with
/// the sender.
pub fn set_recv_buffer(fd: impl AsFd, bytes: usize) -> io::Result<()> {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
}

/// One `read(2)`. `Ok(0)` is end of stream.
#[inline]
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = cvt_retry(|| unsafe { libc::read(raw, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// One `send(2)` with `MSG_NOSIGNAL`: a vanished peer is `EPIPE`, not a signal.
#[inline]
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    let n = cvt_retry(|| unsafe {
        libc::send(raw, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
    })?;
    Ok(n as usize)
}

/// `shutdown(SHUT_WR)`: sends FIN after everything already written.
pub fn shutdown_write(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: plain syscall on an open socket.
    cvt(unsafe { libc::shutdown(fd.as_fd().as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// Opens `/dev/null`: a spare descriptor held in reserve so that the
/// listener can still accept-and-close when the process is out of fds.
pub fn reserve_fd() -> io::Result<OwnedFd> {
    let path = c"/dev/null";
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { owned(fd) })
}

/// Starts a non-blocking connect to `addr` from the local address `local`
/// (port 0: the kernel picks the port at connect time). This is how a
/// client spreads many connections over several source addresses (e.g.
/// 127.0.0.x) when one address would run out of ephemeral ports. For IPv4,
/// `IP_BIND_ADDRESS_NO_PORT` defers the port choice to `connect`, so that a
/// port is only unique per (source, destination) pair. Returns like
/// [`connect`].
pub fn connect_from(addr: &SocketAddr, local: &SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let fd = stream_socket(addr)?;
    if local.is_ipv4() && local.port() == 0 {
        setsockopt_int(&fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    }
    bind(&fd, local)?;
    let raw = RawAddr::new(addr);
    // SAFETY: `raw` holds a valid address of `raw.len` bytes.
    match cvt(unsafe { libc::connect(fd.as_raw_fd(), raw.ptr(), raw.len) }) {
        Ok(_) => Ok((fd, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((fd, false)),
        Err(e) => Err(e),
    }
}

/// `bind(2)`: gives an unconnected socket its local address.
pub fn bind(fd: impl AsFd, local: &SocketAddr) -> io::Result<()> {
    let raw = RawAddr::new(local);
    // SAFETY: `raw` holds a valid address of `raw.len` bytes; the socket is open.
    cvt(unsafe { libc::bind(fd.as_fd().as_raw_fd(), raw.ptr(), raw.len) })?;
    Ok(())
}
