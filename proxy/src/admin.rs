//! The admin socket (`--admin-socket PATH`): a local unix socket, mode
//! 0600, that changes backends at runtime in a small line protocol after
//! HAProxy's runtime API. Reading is also on the metrics listener
//! (`/backends`); changing is only here, since that listener is often
//! bound to every address.
//!
//! One command line a connection (as HAProxy's non-interactive mode);
//! several commands on one line are separated by `;`. Each command gets
//! one line back (`show backends` and `help` several); every error is one
//! line starting `error:` that names what was wrong.
//!
//! ```text
//! help
//! show backends                             the listing of /backends
//! set backend NAME state ready|drain|maint
//! set backend NAME weight 1..=1000
//! ```
//!
//! The socket is served by the same bounded non-blocking loop as
//! `/metrics` ([`crate::metrics::server`]), on a thread of its own, off
//! the data path. It is made private before anyone can connect: bound in
//! a new directory of mode 0700 beside PATH, set to 0600, then renamed to
//! PATH (which also replaces a stale socket atomically). A socket already
//! at PATH is replaced only when nothing accepts a connect on it; the
//! socket is removed at exit, unless something else has taken PATH since.
//!
//! Admin states live in the backends' shared state and survive a reload
//! (the file says nothing about them); a weight set here is a new
//! generation of the backend set, and a reload brings back the file's
//! weights, as HAProxy's runtime weights last until a reload.

use crate::backends::{Admin, Live};
use crate::config::{Balance, WEIGHTS};
use crate::metrics::backends::listing;
use crate::metrics::server::{Limits, Listener, Protocol, Server};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The longest command line read.
const MAX_LINE: usize = 4096;
/// The longest path a unix socket address holds (`sun_path` less its NUL).
const MAX_PATH: usize = 107;

/// What `help` answers.
const HELP: &str = "\
help                                      this list
show backends                             one line a backend: name, address, state, admin state, weight, connections, last check
set backend NAME state ready|drain|maint  ready takes clients; drain and maint take no new ones (open ones go on); maint also stops health checks
set backend NAME weight N                 its balancing weight, 1..=1000, until the next reload
";

/// Answers one command, a line with its newline.
pub fn command(line: &str, live: &Live) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let answer = match words.as_slice() {
        ["help"] => return HELP.to_string(),
        ["show", "backends"] => return listing(&live.snapshot()),
        ["set", "backend", name, "state", value] => set_state(live, name, value),
        ["set", "backend", name, "weight", value] => set_weight(live, name, value),
        ["set", "backend", _, what, _] => Err(format!(
            "unknown setting \"{what}\" of set backend; expected state or weight"
        )),
        ["set", "backend", ..] => Err(
            "expected set backend NAME state ready|drain|maint, or set backend NAME weight N"
                .to_string(),
        ),
        [] => Err("empty command; try help".to_string()),
        _ => Err(format!("unknown command \"{}\"; try help", words.join(" "))),
    };
    match answer {
        Ok(done) => format!("{done}\n"),
        Err(why) => format!("error: {why}\n"),
    }
}

/// Answers a request: its commands, separated by `;`, in order.
pub fn answer(request: &str, live: &Live) -> String {
    request
        .trim_end_matches(['\n', '\r'])
        .split(';')
        .map(|c| command(c, live))
        .collect()
}

/// The index of the backend `name`, or an error naming the configured
/// ones. A backend a reload removed cannot be changed: it takes no new
/// client whatever its state or weight.
fn find(live: &Live, name: &str) -> Result<u32, String> {
    let set = live.snapshot();
    match set.find(name) {
        Some(i) if set.entry(i).removed => Err(format!(
            "backend {name} was removed by a reload (its open connections are finishing); \
             there is nothing to set"
        )),
        Some(i) => Ok(i),
        None => {
            let known: Vec<&str> = set
                .entries()
                .iter()
                .filter(|e| !e.removed)
                .map(|e| &*e.spec.name)
                .collect();
            Err(format!(
                "unknown backend \"{name}\"; backends: {}",
                known.join(", ")
            ))
        }
    }
}

fn set_state(live: &Live, name: &str, value: &str) -> Result<String, String> {
    let i = find(live, name)?;
    let admin = Admin::parse(value).ok_or_else(|| {
        format!("bad state \"{value}\" for backend {name}: expected ready, drain or maint")
    })?;
    let set = live.snapshot();
    let was = set.set_admin(i, admin);
    let done = format!(
        "backend {name}: state {} (was {}); {} open connections go on",
        admin.name(),
        was.name(),
        set.active(i)
    );
    netio::log!("proxy: admin: {done}");
    Ok(done)
}

fn set_weight(live: &Live, name: &str, value: &str) -> Result<String, String> {
    let i = find(live, name)?;
    let (lo, hi) = WEIGHTS;
    let weight = netio::cli::number(value, lo, hi).map_err(|why| {
        format!(
            "bad weight \"{value}\" for backend {name}: {why} \
             (to stop new clients: set backend {name} state drain)"
        )
    })?;
    let mut was = 0;
    let set = live.publish(|cur| {
        was = cur.entry(i).spec.weight;
        cur.with_weight(i, weight)
    });
    let mut done = format!("backend {name}: weight {weight} (was {was})");
    if set.method() == Balance::SourceHash {
        done.push_str("; source-hash balancing does not use weights");
    }
    netio::log!("proxy: admin: {done}");
    Ok(done)
}

/// The line protocol, for [`Server`].
struct Lines(Arc<Live>);

impl Protocol for Lines {
    fn end(&self, buf: &[u8], from: usize) -> Option<usize> {
        buf[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|n| from + n + 1)
    }

    fn answer(&self, request: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(request) {
            Ok(text) => answer(text, &self.0).into_bytes(),
            Err(_) => b"error: the command is not UTF-8 text\n".to_vec(),
        }
    }

    fn too_large(&self, limit: usize) -> Vec<u8> {
        format!("error: command longer than {limit} bytes\n").into_bytes()
    }

    /// A last command without its newline is answered too (`printf`).
    fn at_eof(&self, partial: &[u8]) -> Option<Vec<u8>> {
        (!partial.trim_ascii().is_empty()).then(|| self.answer(partial))
    }
}

/// The admin socket's listener.
struct Unix(UnixListener);

impl AsFd for Unix {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Listener for Unix {
    fn accept(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.0.accept()?;
        stream.set_nonblocking(true)?;
        Ok(stream.into())
    }
}

/// The socket file while the proxy runs: removed when dropped, if it is
/// still the one bound here.
#[derive(Debug)]
pub struct Socket {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for Socket {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `PATH` of `--admin-socket`, checked before anything is bound: it must
/// fit a unix socket address and its directory must exist.
pub fn check_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    if s.len() > MAX_PATH {
        return Err(format!(
            "longer than the {MAX_PATH} bytes a unix socket path may have"
        ));
    }
    let path = PathBuf::from(s);
    let dir = dir_of(&path);
    if !dir.is_dir() {
        return Err(format!(
            "no directory \"{}\" to create it in",
            dir.display()
        ));
    }
    if path.file_name().is_none() {
        return Err("names a directory, not a socket file".into());
    }
    Ok(path)
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Binds the admin socket at `path`, mode 0600, and starts serving it on
/// a thread of its own, changing the backends of `live`. Fails with the
/// line to print: another process listening at `path`, something not a
/// socket there, or a system error.
pub fn start(path: &Path, live: Arc<Live>) -> Result<Socket, String> {
    let bad = |why: String| format!("--admin-socket \"{}\": {why}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(bad("exists and is not a socket; not replacing it".into()))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(bad(
                    "another process (another proxy?) is listening there; stop it or choose another path"
                        .into(),
                ))
            }
            // Nothing listens: a stale socket, replaced below.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(bad(format!("cannot tell whether it is in use: {e}"))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    let (listener, socket) = bind_private(path).map_err(|e| bad(e.to_string()))?;
    let limits = Limits {
        connections: 4,
        head: MAX_LINE,
        deadline: Duration::from_secs(10),
    };
    let server = Server::new(Unix(listener), Lines(live), limits)
        .map_err(|e| bad(format!("cannot serve it: {e}")))?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            if let Err(e) = server.run() {
                netio::log!("proxy: the admin socket stopped: {e}");
            }
        })
        .map_err(|e| bad(format!("cannot start its thread: {e}")))?;
    Ok(socket)
}

/// Binds a non-blocking unix socket that only this user can connect to,
/// then moves it to `path`: it is bound inside a new directory of mode
/// 0700 and set to 0600 before the rename makes it reachable.
fn bind_private(path: &Path) -> io::Result<(UnixListener, Socket)> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir_of(path).join(format!(".{name}.{}.tmp", std::process::id()));
    // A directory left by an earlier run of this pid that crashed.
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let inner = tmp.join("s");
    let bound = (|| -> io::Result<UnixListener> {
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        std::fs::rename(&inner, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&tmp);
    let listener = bound?;
    let m = std::fs::symlink_metadata(path)?;
    let socket = Socket {
        path: path.to_path_buf(),
        id: (m.dev(), m.ino()),
    };
    Ok((listener, socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{BackendSpec, Backends, Health};

    fn live() -> Arc<Live> {
        let spec = |name: &str, port: u16| BackendSpec {
            name: name.into(),
            ..BackendSpec::plain(([127, 0, 0, 1], port).into())
        };
        let specs = vec![spec("a", 9001), spec("b", 9002)];
        Live::new(Backends::new(specs, Health::default(), Balance::RoundRobin))
    }

    #[test]
    fn commands_change_the_shared_backends_and_say_what_they_did() {
        let live = live();
        let got = command("set backend b state drain", &live);
        assert_eq!(
            got,
            "backend b: state drain (was ready); 0 open connections go on\n"
        );
        assert_eq!(live.snapshot().admin(1), Admin::Drain);
        let generation = live.generation();
        assert_eq!(
            command("set backend a weight 7", &live),
            "backend a: weight 7 (was 1)\n"
        );
        assert_eq!(live.generation(), generation + 1, "a new generation");
        assert_eq!(live.snapshot().entry(0).spec.weight, 7);
        let both = answer("set backend b state ready ; show backends\n", &live);
        assert!(
            both.starts_with("backend b: state ready (was drain)"),
            "{both}"
        );
        assert!(
            both.contains("\na 127.0.0.1:9001 state=up admin=ready weight=7 "),
            "{both}"
        );
        assert!(command("help", &live).contains("set backend NAME weight N"));
    }

    #[test]
    fn a_backend_a_reload_removed_cannot_be_set_and_is_not_offered() {
        let live = live();
        let cur = live.snapshot();
        let a = cur.entry(0).spec.clone();
        live.publish(|cur| cur.next(vec![a], Health::default(), Balance::RoundRobin));
        assert_eq!(
            command("set backend b weight 3", &live),
            "error: backend b was removed by a reload (its open connections are finishing); \
             there is nothing to set\n"
        );
        assert_eq!(
            command("set backend c state drain", &live),
            "error: unknown backend \"c\"; backends: a\n"
        );
        assert_eq!(live.snapshot().entry(1).spec.weight, 1, "unchanged");
    }

    #[test]
    fn every_bad_command_is_one_error_line_naming_it() {
        let live = live();
        for (cmd, want) in [
            ("bogus", "error: unknown command \"bogus\"; try help\n"),
            ("", "error: empty command; try help\n"),
            (
                "set backend c state drain",
                "error: unknown backend \"c\"; backends: a, b\n",
            ),
            (
                "set backend a state down",
                "error: bad state \"down\" for backend a: expected ready, drain or maint\n",
            ),
            (
                "set backend a weight 0",
                "error: bad weight \"0\" for backend a: must be 1..=1000 \
                 (to stop new clients: set backend a state drain)\n",
            ),
            (
                "set backend a weight x",
                "error: bad weight \"x\" for backend a: not a whole number; must be 1..=1000 \
                 (to stop new clients: set backend a state drain)\n",
            ),
            (
                "set backend a speed 3",
                "error: unknown setting \"speed\" of set backend; expected state or weight\n",
            ),
        ] {
            assert_eq!(command(cmd, &live), want, "{cmd:?}");
        }
        assert_eq!(live.generation(), 0, "nothing was published");
        let lines = Lines(live);
        assert_eq!(lines.end(b"help\nmore", 0), Some(5));
        assert_eq!(lines.end(b"he", 0), None);
        assert_eq!(lines.at_eof(b" \n"), None);
        assert_eq!(
            lines.answer(b"\xff\n"),
            b"error: the command is not UTF-8 text\n"
        );
    }

    #[test]
    fn paths_that_cannot_be_a_socket_are_refused_before_binding() {
        assert!(check_path("").is_err());
        let long = format!("/tmp/{}", "x".repeat(120));
        assert!(check_path(&long)
            .expect_err("too long")
            .contains("107 bytes"));
        let missing = check_path("/nonexistent-dir/admin.sock").expect_err("no dir");
        assert!(missing.contains("/nonexistent-dir"), "{missing}");
        assert!(check_path("/tmp/admin.sock").is_ok());
    }
}
