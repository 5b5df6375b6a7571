//! Choosing a backend for a new client: round-robin, least connections
//! (counted per worker), or a hash of the client's address.

use crate::config::Balance;
use std::net::{IpAddr, SocketAddr};

/// The backends and what balancing needs to know about them.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<SocketAddr>,
    method: Balance,
    /// Open pairs per backend, in this worker.
    active: Vec<u32>,
    next: usize,
}

impl Balancer {
    /// # Panics
    /// If `backends` is empty (the configuration refuses that first).
    pub fn new(backends: Vec<SocketAddr>, method: Balance) -> Balancer {
        assert!(!backends.is_empty(), "no backend");
        Balancer {
            active: vec![0; backends.len()],
            backends,
            method,
            next: 0,
        }
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.backends[i as usize]
    }

    /// The backend for a client at `peer`.
    pub fn pick(&mut self, peer: &SocketAddr) -> u32 {
        let n = self.backends.len();
        let i = match self.method {
            Balance::RoundRobin => self.turn() % n,
            Balance::LeastConnections => {
                let start = self.turn() % n;
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| self.active[i])
                    .unwrap_or(0)
            }
            Balance::SourceHash => (fnv1a(&peer.ip()) % n as u64) as usize,
        };
        i as u32
    }

    fn turn(&mut self) -> usize {
        let t = self.next;
        self.next = self.next.wrapping_add(1);
        t
    }

    /// A pair to backend `i` opened.
    pub fn opened(&mut self, i: u32) {
        self.active[i as usize] += 1;
    }

    /// A pair to backend `i` closed.
    pub fn closed(&mut self, i: u32) {
        self.active[i as usize] -= 1;
    }
}

/// FNV-1a over the address bytes.
fn fnv1a(ip: &IpAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    match ip {
        IpAddr::V4(ip) => mix(&ip.octets()),
        IpAddr::V6(ip) => mix(&ip.octets()),
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 9000 + p)))
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let mut b = Balancer::new(addrs(3), Balance::RoundRobin);
        let peer = SocketAddr::from(([10, 0, 0, 1], 1));
        let picks: Vec<u32> = (0..6).map(|_| b.pick(&peer)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_avoids_the_busy_backend() {
        let mut b = Balancer::new(addrs(2), Balance::LeastConnections);
        let peer = SocketAddr::from(([10, 0, 0, 1], 1));
        b.opened(0);
        b.opened(0);
        assert_eq!(b.pick(&peer), 1);
        assert_eq!(b.pick(&peer), 1);
        b.closed(0);
        b.closed(0);
        b.opened(1);
        assert_eq!(b.pick(&peer), 0);
    }

    #[test]
    fn source_hash_keeps_a_client_on_one_backend() {
        let mut b = Balancer::new(addrs(4), Balance::SourceHash);
        let one = SocketAddr::from(([10, 0, 0, 7], 1));
        let again = SocketAddr::from(([10, 0, 0, 7], 2));
        assert_eq!(b.pick(&one), b.pick(&again), "the port does not matter");
    }
}
