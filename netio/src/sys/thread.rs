//! Per-thread scheduling attributes.

use super::cvt;
use std::io;

/// Sets the calling thread's timer slack: how much later than asked the
/// kernel may end a timed sleep (such as an `epoll_pwait2` timeout) so
/// that it can batch wake-ups. The default is 50 µs. A thread that keeps a
/// schedule of microseconds (a load generator's open loop) sets it to a
/// nanosecond, so that it wakes when a send is due.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument; the
    // unused ones are zero as prctl(2) asks.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            ns as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    Ok(())
}
