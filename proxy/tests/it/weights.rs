//! Weights and backups from `[[backend]]` tables, through the real proxy
//! to counting echo backends: clients are shared in exact proportion to
//! the weights (smooth round-robin, one worker), and a backup gets no
//! client while a primary is up, then all of them once it is down.

use crate::cli::config_file;
use crate::failover::all_served;
use crate::util::{Backend, Proxy};

/// A `[[backend]]` table for `addr` with the extra `keys`.
fn table(addr: &Backend, keys: &str) -> String {
    format!("[[backend]]\naddress = \"{}\"\n{keys}\n", addr.addr)
}

#[test]
fn weights_3_1_1_share_40_clients_24_8_8() {
    let (a, b, c) = (Backend::echo(), Backend::echo(), Backend::echo());
    // The third takes the default weight, 1.
    let text = [
        table(&a, "weight = 3"),
        table(&b, "weight = 1"),
        table(&c, ""),
    ]
    .concat();
    let (_dir, path) = config_file(&text);
    let mut proxy = Proxy::start(&["-c", &path, "-l", "127.0.0.1", "-p", "0"]);
    all_served(&proxy, 40, "weights");
    let st = proxy.wait_idle();
    assert_eq!(st.get("accepted"), 40, "{st:?}");
    assert_eq!(
        [a.accepted(), b.accepted(), c.accepted()],
        [24, 8, 8],
        "{st:?}"
    );
}

#[test]
fn a_backup_gets_no_client_while_the_primary_is_up_and_all_once_it_is_down() {
    let primary = Backend::echo();
    let backup = Backend::echo();
    let text = [
        table(&primary, "weight = 5"),
        table(&backup, "backup = true"),
    ]
    .concat();
    let (_dir, path) = config_file(&text);
    let mut proxy = Proxy::start(&["-c", &path, "-l", "127.0.0.1", "-p", "0", "--fall", "1"]);
    all_served(&proxy, 10, "primary up");
    assert_eq!((primary.accepted(), backup.accepted()), (10, 0));
    // The primary's port now refuses: the first client fails over to the
    // backup and marks the primary down; the rest go straight there.
    drop(primary);
    all_served(&proxy, 10, "primary down");
    assert_eq!(backup.accepted(), 10);
    let st = proxy.wait_idle();
    assert_eq!(st.get("connect_failures"), 1, "{st:?}");
    assert_eq!(st.get("retries"), 1, "{st:?}");
    assert_eq!(st.get("refused"), 0, "{st:?}");
}

#[test]
fn minus_b_replaces_the_file_s_backend_tables() {
    let (file_backend, cli_backend) = (Backend::echo(), Backend::echo());
    let (_dir, path) = config_file(&table(&file_backend, "weight = 9"));
    let b = cli_backend.addr.to_string();
    let mut proxy = Proxy::start(&["-c", &path, "-l", "127.0.0.1", "-p", "0", "-b", &b]);
    all_served(&proxy, 3, "-b");
    drop(proxy.wait_idle());
    assert_eq!((file_backend.accepted(), cli_backend.accepted()), (0, 3));
}
