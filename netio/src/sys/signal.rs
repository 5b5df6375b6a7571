//! Signals as a descriptor: block SIGTERM, SIGINT, SIGUSR1, SIGHUP and
//! SIGUSR2 and read them from a `signalfd`, so that no handler ever runs
//! inside the relay (and none of them can end the process by default).

use super::{cvt, cvt_retry, owned};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The signals the proxy acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop accepting, drain, exit.
    Terminate,
    /// SIGUSR1: print the stats and keep going.
    Stats,
    /// SIGHUP: reload the configuration (for a server that can; never
    /// fatal).
    Reload,
    /// SIGUSR2: hand over to a new binary (not supported yet: logged and
    /// ignored).
    Upgrade,
}

/// The signals of [`Signal`], as read from the signalfd.
const SIGNALS: [(i32, Signal); 5] = [
    (libc::SIGTERM, Signal::Terminate),
    (libc::SIGINT, Signal::Terminate),
    (libc::SIGUSR1, Signal::Stats),
    (libc::SIGHUP, Signal::Reload),
    (libc::SIGUSR2, Signal::Upgrade),
];

/// A blocking `signalfd` for the signals of [`SIGNALS`].
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

fn mask() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset takes valid signals.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for (sig, _) in SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// Ignores SIGPIPE for the whole process: a write to a peer that is gone
/// must come back as EPIPE, not kill us.
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: setting the disposition of SIGPIPE to SIG_IGN is always valid.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` (which starts a thread) with every signal blocked in the
/// calling thread, then restores its mask: the new thread starts with all
/// of them blocked, so that no signal meant for the signalfd can ever be
/// delivered to it, even before it could block them itself.
pub fn with_all_blocked<T>(f: impl FnOnce() -> T) -> io::Result<T> {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads `all`
    // and fills `old` with the current mask.
    let rc = unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let out = f();
    // SAFETY: `old` was filled by the successful call above.
    let rc =
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
    // Setting a mask read back from the kernel cannot fail.
    debug_assert_eq!(rc, 0, "restoring the signal mask");
    Ok(out)
}

impl SignalFd {
    /// Blocks the signals in the calling thread (threads spawned afterwards
    /// inherit the mask) and opens a blocking signalfd for them.
    pub fn new() -> io::Result<SignalFd> {
        let set = mask();
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: `set` is initialised; -1 asks for a new descriptor.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { owned(fd) };
        Ok(SignalFd { fd })
    }

    /// Blocks until one of the signals arrives.
    pub fn read(&self) -> io::Result<Signal> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which has that room.
        let n = cvt_retry(|| unsafe {
            libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size)
        })?;
        if n as usize != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short signalfd read",
            ));
        }
        // SAFETY: the kernel filled the whole struct.
        let info = unsafe { info.assume_init() };
        // Only the signals of `mask()` are blocked and read here.
        let signo = info.ssi_signo as i32;
        Ok(SIGNALS
            .iter()
            .find(|&&(sig, _)| sig == signo)
            .map_or(Signal::Terminate, |&(_, s)| s))
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
