//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that
//! tells a backend who the client really is. Written into the first
//! buffer of the client → backend direction, so it goes out before any
//! client byte as soon as the backend connect completes.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// The longest header either version writes (v1 with IPv6 is 104 bytes).
pub const MAX_LEN: usize = 108;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        IpAddr::V4(_) => a,
    }
}

/// Writes the header for a client at `src` that connected to `dst` into
/// `out`, and returns its length. `out` must hold [`MAX_LEN`] bytes.
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr, out: &mut [u8]) -> usize {
    let (src, dst) = (canonical(src), canonical(dst));
    let cap = out.len();
    let mut w = &mut out[..];
    match version {
        Version::V1 => {
            let _ = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    write!(w, "PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    write!(w, "PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port())
                }
                _ => write!(w, "PROXY UNKNOWN\r\n"),
            };
        }
        Version::V2 => {
            let _ = w.write_all(&V2_SIGNATURE);
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    let _ = w.write_all(&[0x21, 0x11, 0, 12]);
                    let _ = w.write_all(&s.octets());
                    let _ = w.write_all(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    let _ = w.write_all(&[0x21, 0x21, 0, 36]);
                    let _ = w.write_all(&s.octets());
                    let _ = w.write_all(&d.octets());
                }
                // LOCAL: the backend uses the connection's own addresses.
                _ => {
                    let _ = w.write_all(&[0x20, 0x00, 0, 0]);
                    return cap - w.len();
                }
            }
            let _ = w.write_all(&src.port().to_be_bytes());
            let _ = w.write_all(&dst.port().to_be_bytes());
        }
    }
    cap - w.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn v1_text_for_both_families() {
        let mut out = [0u8; MAX_LEN];
        let n = encode(Version::V1, a("192.0.2.1:5555"), a("10.0.0.1:80"), &mut out);
        assert_eq!(&out[..n], b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\n");
        let n = encode(
            Version::V1,
            a("[2001:db8::1]:5555"),
            a("[::1]:80"),
            &mut out,
        );
        assert_eq!(&out[..n], b"PROXY TCP6 2001:db8::1 ::1 5555 80\r\n");
        let n = encode(
            Version::V1,
            a("[::ffff:127.0.0.1]:1"),
            a("127.0.0.1:2"),
            &mut out,
        );
        assert_eq!(&out[..n], b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n");
        let longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert!(longest.len() <= MAX_LEN);
    }

    #[test]
    fn v2_binary_layout() {
        let mut out = [0u8; MAX_LEN];
        let n = encode(Version::V2, a("192.0.2.1:5555"), a("10.0.0.1:80"), &mut out);
        assert_eq!(n, 16 + 12);
        assert_eq!(&out[..12], &V2_SIGNATURE);
        assert_eq!(&out[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&out[16..20], &[192, 0, 2, 1]);
        assert_eq!(&out[20..24], &[10, 0, 0, 1]);
        assert_eq!(&out[24..28], &[0x15, 0xb3, 0, 80]);
        let n = encode(Version::V2, a("[::1]:1"), a("[::2]:2"), &mut out);
        assert_eq!(n, 16 + 36);
    }
}
