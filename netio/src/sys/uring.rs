//! io_uring for the proxy's uring engine: whether the kernel offers what
//! the engine needs ([`usable`]), and the ring itself.

use std::io;

/// The kernel switch that turns io_uring off (Linux 6.6 and later).
const DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why io_uring cannot be used here, in words for an error line, or
/// `Ok` if a ring with the engine's set-up flags can be made and it
/// supports every operation the engine submits.
pub fn usable() -> Result<(), String> {
    let disabled = std::fs::read_to_string(DISABLED_SYSCTL).ok();
    let probe = probe();
    explain(disabled.as_deref().map(str::trim), probe.as_ref().err())
}

/// What a failed ring set-up means, given the sysctl's value (if the
/// kernel has it).
fn explain(disabled: Option<&str>, setup: Option<&io::Error>) -> Result<(), String> {
    if disabled == Some("2") {
        return Err(format!(
            "io_uring is disabled on this kernel ({DISABLED_SYSCTL} is 2); use --engine epoll"
        ));
    }
    let Some(e) = setup else {
        return Ok(());
    };
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel has no io_uring (io_uring_setup: ENOSYS); use --engine epoll".to_string(),
        Some(libc::EPERM) if disabled == Some("1") => format!(
            "io_uring is limited to privileged users and the io_uring group here ({DISABLED_SYSCTL} is 1); use --engine epoll"
        ),
        Some(libc::EPERM) => "io_uring is not permitted to this process (io_uring_setup: EPERM, e.g. a seccomp filter); use --engine epoll".to_string(),
        Some(libc::EINVAL) => "this kernel's io_uring lacks single-issuer deferred task running (needs Linux 6.1 or later); use --engine epoll".to_string(),
        _ => format!("cannot set up io_uring: {e}; use --engine epoll"),
    })
}

/// Makes (and drops) a small ring set up as the engine sets up its own,
/// and checks that the operations it submits are supported.
fn probe() -> io::Result<()> {
    let ring = builder().build(8)?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p)?;
    use io_uring::opcode;
    let needed = [
        (opcode::Accept::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::Shutdown::CODE, "shutdown"),
        (opcode::AsyncCancel2::CODE, "cancel"),
        (opcode::Close::CODE, "close"),
        (opcode::PollAdd::CODE, "poll"),
        (opcode::Connect::CODE, "connect"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(io::Error::other(format!(
                "this kernel's io_uring lacks the {name} operation"
            )));
        }
    }
    Ok(())
}

/// The set-up every ring of the engine gets: one thread submits
/// (`SINGLE_ISSUER`), completions are run only when that thread asks
/// (`DEFER_TASKRUN`, so no interrupt of a busy worker), and the shared
/// ring says when such work is waiting (`TASKRUN_FLAG`, for busy polling).
fn builder() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_named_with_the_way_out() {
        let e = |n| io::Error::from_raw_os_error(n);
        let two = explain(Some("2"), None).expect_err("disabled");
        assert!(two.contains("io_uring_disabled is 2"), "{two}");
        assert!(explain(Some("0"), None).is_ok());
        assert!(
            explain(None, None).is_ok(),
            "an old kernel without the switch"
        );
        let one = explain(Some("1"), Some(&e(libc::EPERM))).expect_err("group only");
        assert!(one.contains("io_uring group"), "{one}");
        let none = explain(None, Some(&e(libc::ENOSYS))).expect_err("absent");
        assert!(none.contains("no io_uring"), "{none}");
        let old = explain(Some("0"), Some(&e(libc::EINVAL))).expect_err("old");
        assert!(old.contains("6.1"), "{old}");
        for m in [two, one, none, old] {
            assert!(m.ends_with("use --engine epoll"), "{m}");
        }
    }

    #[test]
    fn this_kernel_offers_what_the_engine_needs() {
        // The machines this runs on have io_uring on; if one does not, the
        // line says exactly why.
        if let Err(why) = usable() {
            panic!("io_uring: {why}");
        }
    }
}
