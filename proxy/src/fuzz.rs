//! Fuzz targets as plain functions: each takes any bytes and panics only
//! on a real defect. `fuzz/` (cargo-fuzz, nightly, not a workspace
//! member) calls them from libFuzzer; the unit tests below replay every
//! file of the seed corpus `fuzz/corpus/TARGET/` on stable, in CI.
//!
//! - [`config`]: a config file (and, after a NUL, command-line arguments)
//!   through the real parser and resolver: an error is fine, a panic is
//!   not, and a config that resolves keeps the invariants the proxy
//!   relies on.
//! - [`cidr`]: `--allow`/`--deny` networks: a parsed network contains the
//!   address it was written with; matching any address never panics.
//! - [`proxy_header`]: two socket addresses and a version from the bytes,
//!   encoded; the header must decode back to exactly those addresses and
//!   have exactly its length.
//! - [`relay_model`]: one relay-model schedule, its seed from the bytes
//!   (needs `cfg(test)` or the `fuzzing` feature, as the model does).

use crate::acl::Cidr;
use crate::config::{self, Cli};
use crate::config_file::FileConfig;
use crate::proxy_protocol::{self, Version};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The soft open-files limit the config target resolves against.
const NOFILE: u64 = 65_536;

/// A config file, optionally followed by a NUL and command-line
/// arguments separated by NULs. `--config` always names the file the
/// bytes were written to, and backends that would need a name lookup are
/// left out, so that no input reads another file or asks a resolver.
pub fn config(data: &[u8]) {
    let (file, args) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let args: Vec<String> = args
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut cli = match Cli::try_parse_from(std::iter::once("proxy".to_string()).chain(args)) {
        Ok(cli) => cli,
        // A bad command line is refused by clap: fine.
        Err(_) => return,
    };
    cli.backends.retain(|b| literal(b));
    // The file as the proxy would read it: a parse error is fine.
    let text = String::from_utf8_lossy(file);
    if let Ok(parsed) = toml::from_str::<FileConfig>(&text) {
        let file_backends = parsed.backend.map(|b| b.0).unwrap_or_default();
        if cli.backends.is_empty() && !file_backends.iter().all(|b| literal(&b.address)) {
            // The command line overrides the file's backends.
            cli.backends = vec!["127.0.0.1".into()];
        }
    }
    let path = scratch_file();
    if std::fs::write(&path, file).is_err() {
        return;
    }
    cli.config = Some(path.clone());
    let resolved = config::resolve(cli, NOFILE);
    let _ = std::fs::remove_file(&path);
    let Ok(c) = resolved else { return };
    assert!(!c.backends.is_empty(), "resolved without a backend: {c:?}");
    assert!(
        c.backends.iter().any(|b| !b.backup),
        "resolved without a primary backend: {c:?}"
    );
    let (lo, hi) = crate::config::WEIGHTS;
    assert!(
        c.backends.iter().all(|b| (lo..=hi).contains(&b.weight)),
        "a weight out of range: {c:?}"
    );
    assert!(
        c.workers >= 1 && c.max_connections >= c.workers,
        "a worker without a connection: {c:?}"
    );
    let share = netio::budget::share(c.max_connections, c.workers, 0);
    assert!(
        c.buffers >= 2 * share,
        "fewer than two buffers a connection: {c:?}"
    );
    assert!(
        (64..=16 << 20).contains(&c.buffer_size),
        "buffer size out of range: {c:?}"
    );
    if c.proxy_protocol.is_some() {
        assert!(
            c.buffer_size >= proxy_protocol::MAX_LEN,
            "the PROXY header does not fit the first buffer: {c:?}"
        );
    }
}

/// Whether a backend is an address `parse_backend` takes without a
/// lookup: an address with a port, an address alone (bracketed or not),
/// or an IPv4 address with a port that may be bad.
fn literal(b: &str) -> bool {
    let bare = b
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(b);
    b.parse::<SocketAddr>().is_ok()
        || bare.parse::<IpAddr>().is_ok()
        || b.rsplit_once(':')
            .is_some_and(|(h, _)| h.parse::<Ipv4Addr>().is_ok())
}

/// A file of this process and thread for the config target to read.
fn scratch_file() -> std::path::PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!(
        "proxy-fuzz-config-{}-{thread}.toml",
        std::process::id()
    ))
}

/// A `--allow`/`--deny` value. A network that parses contains the address
/// it was written with (also as an IPv4-mapped IPv6 address, as a
/// dual-stack listener sees IPv4 clients), and matching addresses drawn
/// from the input never panics.
pub fn cidr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(c) = Cidr::parse(&text) else { return };
    let written = text.split_once('/').map_or(&*text, |(a, _)| a);
    let ip: IpAddr = written
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} parsed as a network, but not its address"));
    // A wider IPv6 network over the mapped range (`::ffff:0:0/80`) stays
    // IPv6 and so matches no mapped client: not checked (an open choice,
    // like whether `::/0` should admit IPv4 clients).
    let wide_mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
        && text
            .split_once('/')
            .is_some_and(|(_, p)| p.parse::<u8>().is_ok_and(|p| p < 96));
    assert!(
        wide_mapped || c.contains(ip),
        "{text:?} does not contain {ip}"
    );
    if let IpAddr::V4(v4) = ip {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert!(c.contains(mapped), "{text:?} does not contain {mapped}");
    }
    for chunk in data.chunks(16) {
        let _ = c.contains(ip_from(chunk));
    }
}

/// A header for a client and destination drawn from the bytes: the first
/// byte picks the version and the families (IPv4, IPv6, IPv4-mapped,
/// mixed), the rest are the addresses and ports. The header must decode
/// to exactly those addresses (mapped ones as IPv4), or say UNKNOWN
/// (v1) or LOCAL (v2) when the families differ, and have exactly the
/// length its format gives.
pub fn proxy_header(data: &[u8]) {
    let mut bytes = data.iter().copied().chain(std::iter::repeat(0));
    let mut take = |n: usize| -> Vec<u8> { bytes.by_ref().take(n).collect() };
    let head = take(1)[0];
    let version = if head & 1 == 0 {
        Version::V1
    } else {
        Version::V2
    };
    let mut addr = |family: u8| {
        let ip = match family & 3 {
            0 => IpAddr::V4(ip4(&take(4))),
            1 => IpAddr::V6(ip6(&take(16))),
            2 => IpAddr::V6(ip4(&take(4)).to_ipv6_mapped()),
            _ => ip_from(&take(16)),
        };
        let port = u16::from_be_bytes([take(1)[0], take(1)[0]]);
        SocketAddr::new(ip, port)
    };
    let src = addr(head >> 1);
    let dst = addr(head >> 3);
    let mut out = [0u8; proxy_protocol::MAX_LEN];
    let n = proxy_protocol::encode(version, src, dst, &mut out);
    let (src, dst) = (unmapped(src), unmapped(dst));
    let same_family = src.is_ipv4() == dst.is_ipv4();
    let want = same_family.then_some((src, dst));
    let got = match version {
        Version::V1 => decode_v1(&out[..n]),
        Version::V2 => decode_v2(&out[..n]),
    };
    assert_eq!(
        got,
        Ok(want),
        "{version:?} header for {src} -> {dst}: {:?}",
        &out[..n]
    );
}

/// One relay-model schedule, its seed from the first eight bytes.
#[cfg(any(test, feature = "fuzzing"))]
pub fn relay_model(data: &[u8]) {
    let mut seed = [0u8; 8];
    let n = data.len().min(8);
    seed[..n].copy_from_slice(&data[..n]);
    let seed = u64::from_le_bytes(seed);
    if let Err(e) = crate::relay_model::run_case(seed) {
        panic!(
            "relay model: seed {seed} failed: {e}\nreplay: RELAY_MODEL_SEED={seed} \
             RELAY_MODEL_CASES=1 cargo test -p proxy relay_model"
        );
    }
}

fn ip4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn ip6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// An address of either family from up to 16 bytes (zero-padded).
fn ip_from(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 16];
    o[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
    if o[0] & 1 == 0 {
        IpAddr::V4(ip4(&o[1..5]))
    } else {
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

/// An IPv4-mapped address as the IPv4 address it is (std's reading).
fn unmapped(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The addresses a header carries: `None` for v1's UNKNOWN or v2's LOCAL.
type Carried = Option<(SocketAddr, SocketAddr)>;

/// Decodes a whole v1 header (the spec: at most 107 bytes, one line).
fn decode_v1(h: &[u8]) -> Result<Carried, String> {
    if h.len() > 107 {
        return Err(format!("{} bytes, the spec allows 107", h.len()));
    }
    let line = std::str::from_utf8(h).map_err(|e| e.to_string())?;
    let line = line
        .strip_suffix("\r\n")
        .filter(|l| !l.contains(['\r', '\n']))
        .ok_or("not one CRLF-terminated line")?;
    if line == "PROXY UNKNOWN" {
        return Ok(None);
    }
    let f: Vec<&str> = line.split(' ').collect();
    let [proxy, family, s, d, sp, dp] = f[..] else {
        return Err(format!("{} fields in {line:?}", f.len()));
    };
    let ip = |v: &str| v.parse::<IpAddr>().map_err(|_| format!("address {v:?}"));
    let (s, d) = (ip(s)?, ip(d)?);
    let want_family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    if proxy != "PROXY" || family != want_family || s.is_ipv4() != d.is_ipv4() {
        return Err(format!("bad prefix or family in {line:?}"));
    }
    let port = |v: &str| {
        // The spec: decimal without leading zeros.
        let ok = v == "0" || !v.starts_with('0');
        v.parse::<u16>()
            .ok()
            .filter(|_| ok)
            .ok_or(format!("port {v:?}"))
    };
    Ok(Some((
        SocketAddr::new(s, port(sp)?),
        SocketAddr::new(d, port(dp)?),
    )))
}

/// Decodes a whole v2 header: signature, version and command, family,
/// length (which must be the rest of the header exactly), addresses.
fn decode_v2(h: &[u8]) -> Result<Carried, String> {
    const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    if h.len() < 16 || &h[..12] != SIGNATURE {
        return Err("no v2 signature".into());
    }
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    if h.len() != 16 + len {
        return Err(format!("length field {len}, {} bytes follow", h.len() - 16));
    }
    let body = &h[16..];
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match (h[12], h[13], len) {
        (0x20, 0x00, 0) => Ok(None),
        (0x21, 0x11, 12) => Ok(Some((
            SocketAddr::new(IpAddr::V4(ip4(&body[0..4])), port(&body[8..10])),
            SocketAddr::new(IpAddr::V4(ip4(&body[4..8])), port(&body[10..12])),
        ))),
        (0x21, 0x21, 36) => Ok(Some((
            SocketAddr::new(IpAddr::V6(ip6(&body[0..16])), port(&body[32..34])),
            SocketAddr::new(IpAddr::V6(ip6(&body[16..32])), port(&body[34..36])),
        ))),
        (v, f, l) => Err(format!(
            "version/command {v:#04x}, family {f:#04x}, length {l}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/TARGET/`, sorted; there must be some.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{}: a thin corpus", dir.display());
        files
            .into_iter()
            .map(|p| {
                let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (p, data)
            })
            .collect()
    }

    /// Runs `f` over the corpus, naming the file that panicked.
    fn replay(target: &str, f: fn(&[u8])) {
        for (path, data) in corpus(target) {
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                panic!("fuzz target {target} panicked on {}", path.display());
            }
        }
    }

    #[test]
    fn the_config_corpus_replays_without_a_defect() {
        replay("config", config);
    }

    #[test]
    fn the_cidr_corpus_replays_without_a_defect() {
        replay("cidr", cidr);
    }

    #[test]
    fn the_proxy_header_corpus_replays_without_a_defect() {
        replay("proxy_header", proxy_header);
    }

    #[test]
    fn the_relay_model_corpus_replays_without_a_defect() {
        replay("relay_model", relay_model);
    }

    #[test]
    fn the_decoders_refuse_what_the_spec_refuses() {
        assert!(decode_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").is_err());
        assert!(decode_v1(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n").is_err());
        assert!(decode_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").is_err());
        assert_eq!(decode_v1(b"PROXY UNKNOWN\r\n"), Ok(None));
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend([1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        let want = (
            "1.2.3.4:1".parse().expect("a"),
            "5.6.7.8:2".parse().expect("a"),
        );
        assert_eq!(decode_v2(&v2), Ok(Some(want)));
        v2.push(0);
        assert!(decode_v2(&v2).is_err(), "the length field is exact");
    }

    #[test]
    fn names_needing_a_lookup_are_not_literals() {
        assert!(
            literal("10.0.0.1") && literal("[::1]:9") && literal("::1") && literal("1.2.3.4:5")
        );
        assert!(!literal("localhost:9") && !literal("example.invalid") && !literal(""));
        assert!(
            !literal("::1:xyz") && !literal("[::1]x"),
            "these would be looked up"
        );
    }
}
