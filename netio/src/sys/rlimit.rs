//! Resource limits: `RLIMIT_NOFILE` (how many descriptors this process may
//! hold) and `RLIMIT_AS` (how much address space it may map).

use super::cvt;
use std::io;

/// The soft and hard limit on open descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// Reads the current `RLIMIT_NOFILE`.
pub fn nofile() -> io::Result<NoFile> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(NoFile {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the result.
pub fn raise_nofile() -> io::Result<NoFile> {
    let cur = nofile()?;
    if cur.soft < cur.hard {
        let lim = libc::rlimit {
            rlim_cur: cur.hard,
            rlim_max: cur.hard,
        };
        // SAFETY: `lim` is a valid rlimit; raising soft up to hard is allowed.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    nofile()
}

/// The soft `RLIMIT_AS` (the most address space this process may map),
/// or `None` when unlimited: start-up checks compare planned allocations
/// with it, so that an oversized setting is refused rather than aborting.
pub fn address_space() -> io::Result<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) })?;
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
}
