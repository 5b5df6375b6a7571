//! Edge-triggered epoll: the instance, its event buffer, and an eventfd
//! waker for cross-thread commands.

use super::{cvt, cvt_retry, owned};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Readiness bits as epoll reports them.
pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const ET: u32 = libc::EPOLLET as u32;
/// What the workspace's event loops register every connection socket for,
/// once: both directions and the peer's FIN, edge-triggered. Readiness is
/// then remembered by the loop, so the registration never changes.
pub const SOCKET: u32 = IN | OUT | RDHUP | ET;

/// What one edge-triggered event says about a socket. An error or a
/// hang-up makes it both readable and writable (the next call reports
/// it) and sets `hangup`: a short read then no longer proves the socket
/// drained, only a read of 0 or an error does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
}

impl Readiness {
    #[inline]
    pub fn of(bits: u32) -> Readiness {
        let hangup = bits & (RDHUP | HUP | ERR) != 0;
        Readiness {
            readable: bits & IN != 0 || hangup,
            writable: bits & (OUT | HUP | ERR) != 0,
            hangup,
        }
    }
}

/// The timeout for [`Epoll::wait`] that sleeps until `deadline` (`None`:
/// forever, -1). Rounded up to the next whole millisecond: rounding down
/// would wake the loop early and make it spin through the last
/// millisecond with zero timeouts.
pub fn timeout_ms(now: std::time::Instant, deadline: Option<std::time::Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(t) => {
            let left = t.saturating_duration_since(now);
            left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
        }
    }
}

/// The timeout for [`Epoll::wait`] of a loop turn: none (0) while some
/// slot waits to run again; until `deadline`, rounded up as
/// [`timeout_ms`] does; forever (-1) with no deadline. `now` is only
/// asked when there is a deadline, so an idle loop does not read the clock.
pub fn sleep_ms(
    run_again: bool,
    deadline: Option<std::time::Instant>,
    now: impl FnOnce() -> std::time::Instant,
) -> i32 {
    if run_again {
        0
    } else if deadline.is_some() {
        timeout_ms(now(), deadline)
    } else {
        -1
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall with a valid flag; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { owned(fd) };
        Ok(Epoll { fd })
    }

    /// Registers `fd` for `events`, tagging its events with `token`.
    pub fn add(&self, fd: impl AsFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_fd(), events, token)
    }

    fn ctl(&self, op: i32, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open for the duration of the call and
        // `ev` is a valid epoll_event.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) })?;
        Ok(())
    }

    /// Waits for events, up to `timeout_ms` (-1: forever). EINTR counts as
    /// zero events so that the caller re-checks its deadlines.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        let cap = events.buf.capacity();
        // SAFETY: the buffer has room for `cap` events; the kernel writes at
        // most that many and we set the length to what it reports.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                cap as i32,
                timeout_ms,
            )
        };
        events.filled(n)
    }
}

/// A reusable buffer of events filled by [`Epoll::wait`].
pub struct Events {
    buf: Vec<libc::epoll_event>,
}

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events {
            buf: Vec::with_capacity(n.max(1)),
        }
    }

    /// Takes a wait call's return value: `n` events written by the kernel,
    /// or -1. EINTR counts as zero events, so that the caller re-checks its
    /// deadlines.
    fn filled(&mut self, n: i32) -> io::Result<usize> {
        match cvt(n) {
            Ok(n) => {
                debug_assert!(n as usize <= self.buf.capacity());
                // SAFETY: the kernel initialised the first `n` entries, and
                // it writes at most the capacity it was given.
                unsafe { self.buf.set_len(n as usize) };
                Ok(n as usize)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.buf.clear();
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// `(token, readiness bits)` of each event from the last wait.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buf.iter().map(|ev| {
            let (token, bits) = (ev.u64, ev.events);
            (token, bits)
        })
    }
}

/// An eventfd: a counter another thread can bump to wake an epoll loop.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; the result is checked.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { owned(fd) };
        Ok(Waker { fd })
    }

    /// Adds one to the counter, waking whoever polls it.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an open eventfd.
        cvt_retry(|| unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) })?;
        Ok(())
    }

    /// Resets the counter, so that the next wake is a new edge.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from an open eventfd. A
        // failure (EAGAIN: nothing pending) leaves nothing to reset.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsFd for Epoll {
    /// The epoll instance itself, to poll it from another loop (it is
    /// readable while it has events).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Epoll {
    /// Like [`Epoll::wait`], with a timeout of nanosecond precision
    /// (`None`: forever) through `epoll_pwait2`, so that a caller keeping a
    /// schedule (a load generator's next send) wakes when it is due rather
    /// than at the next whole millisecond. Kernels without `epoll_pwait2`
    /// (before 5.11) get [`Epoll::wait`] with the timeout rounded up to a
    /// millisecond.
    pub fn wait_for(
        &self,
        events: &mut Events,
        timeout: Option<std::time::Duration>,
    ) -> io::Result<usize> {
        let Some(t) = timeout else {
            return self.wait(events, -1);
        };
        let ts = libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        };
        let cap = events.buf.capacity();
        // SAFETY: the buffer has room for `cap` events; `ts` is a valid
        // timespec; a null sigmask means the mask is left unchanged.
        let n = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                cap as i32,
                &ts,
                std::ptr::null(),
            )
        };
        match events.filled(n) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                self.wait(events, ms)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_so_that_a_loop_never_wakes_early() {
        use std::time::{Duration, Instant};
        let now = Instant::now();
        assert_eq!(timeout_ms(now, None), -1);
        assert_eq!(timeout_ms(now, Some(now)), 0);
        assert_eq!(timeout_ms(now, Some(now + Duration::from_micros(300))), 1);
        assert_eq!(timeout_ms(now, Some(now + Duration::from_millis(2))), 2);
        assert_eq!(timeout_ms(now + Duration::from_secs(1), Some(now)), 0);
    }

    #[test]
    fn a_paused_accept_sleeps_until_its_retry_is_due_never_less() {
        use std::time::{Duration, Instant};
        const ACCEPT_RETRY: Duration = Duration::from_millis(100);
        let now = Instant::now();
        let retry = |left| sleep_ms(false, Some(now + left), || now);
        assert_eq!(retry(Duration::from_micros(300)), 1, "not 0: that spins");
        assert_eq!(retry(Duration::from_micros(1)), 1);
        assert_eq!(retry(Duration::from_micros(99_001)), 100);
        assert_eq!(retry(Duration::ZERO), 0, "due now");
        assert_eq!(
            sleep_ms(false, Some(now), || now + ACCEPT_RETRY),
            0,
            "overdue"
        );
    }

    #[test]
    fn a_turn_waiting_never_sleeps_and_nothing_to_do_sleeps_until_an_event() {
        use std::time::{Duration, Instant};
        let now = Instant::now();
        let later = now + Duration::from_millis(100);
        assert_eq!(sleep_ms(true, Some(later), || now), 0);
        assert_eq!(sleep_ms(true, None, || now), 0);
        assert_eq!(
            sleep_ms(false, None, || unreachable!("no clock needed")),
            -1
        );
    }

    #[test]
    fn hangups_and_errors_read_as_readable_and_writable() {
        let r = |readable, writable, hangup| Readiness {
            readable,
            writable,
            hangup,
        };
        assert_eq!(Readiness::of(IN), r(true, false, false));
        assert_eq!(Readiness::of(OUT), r(false, true, false));
        assert_eq!(Readiness::of(IN | RDHUP), r(true, false, true));
        assert_eq!(Readiness::of(HUP), r(true, true, true));
        assert_eq!(Readiness::of(ERR), r(true, true, true));
    }
}
