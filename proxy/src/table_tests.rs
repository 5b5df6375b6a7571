//! Unit tests of [`super`].

use super::*;
use crate::config::Balance;
use crate::pool::Pool;

impl Table {
    /// Checks the table's bookkeeping: every buffer and pipe lent is held
    /// by an open pair, free slots hold nothing, the pools add up, the
    /// queue holds exactly the queued pairs, oldest first, and each
    /// backend's count is the pairs counted against it.
    pub(crate) fn check(&self) -> Result<(), String> {
        let queued: Vec<u32> = (0..self.conns.len() as u32)
            .filter(|&i| self.conns[i as usize].stage == Stage::Queued)
            .collect();
        let mut in_queue: Vec<u32> = self.queue.iter().map(|&(s, _)| s).collect();
        let oldest_first = self
            .queue
            .iter()
            .zip(self.queue.iter().skip(1))
            .all(|(a, b)| {
                let t = |&(s, _): &(u32, u32)| self.conns[s as usize].opened_ms;
                reached(t(b), t(a))
            });
        in_queue.sort_unstable();
        if in_queue != queued || !oldest_first {
            return Err(format!(
                "queue {:?} but queued pairs {queued:?}",
                self.queue
            ));
        }
        let backends = self.balancer.backends();
        for b in 0..backends.len() as u32 {
            let counted = self
                .conns
                .iter()
                .filter(|c| c.counted && c.backend == b && c.stage != Stage::Free)
                .count() as u32;
            if backends.active(b) != counted {
                return Err(format!(
                    "backend {b} counts {} pairs, but {counted} are counted against it",
                    backends.active(b)
                ));
            }
        }
        let (mut small, mut large, mut pipes) = (0, 0, 0);
        for (i, c) in self.conns.iter().enumerate() {
            for f in &c.flows {
                match &f.hold {
                    relay::Hold::Idle => {}
                    relay::Hold::Buf(b) if b.is_large() => large += 1,
                    relay::Hold::Buf(_) => small += 1,
                    relay::Hold::Pipe { .. } => pipes += 1,
                }
                if c.stage == Stage::Free && !matches!(f.hold, relay::Hold::Idle) {
                    return Err(format!("free slot {i} holds {:?}", f.hold));
                }
            }
        }
        let lent = (
            self.bufs.small.lent(),
            self.bufs.large.lent(),
            self.pipes.lent(),
        );
        if lent != (small, large, pipes) {
            return Err(format!(
                "pools lent {lent:?} but pairs hold {:?}",
                (small, large, pipes)
            ));
        }
        Ok(())
    }
}

fn table(capacity: usize, buffers: usize, proxy_protocol: Option<Version>) -> io::Result<Table> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    Table::new(
        capacity,
        Pools::new(Pool::new(buffers, 256), Pool::new_large(0, 1024)),
        PipePool::new(0, 4096),
        Balancer::of(vec![addr], Balance::RoundRobin),
        Options {
            log_connections: false,
            proxy_protocol,
            reset_flush_ms: 0,
            connect_retries: 1,
            ..Options::default()
        },
        Arc::new(Stats::default()),
    )
}

#[test]
fn a_table_with_fewer_than_two_buffers_a_pair_is_refused() {
    let e = table(4, 7, None).err().expect("7 buffers for 4 pairs");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("at least two a connection"), "{e}");
    assert!(table(4, 8, None).is_ok());
}

#[test]
fn every_pair_gets_its_proxy_header_even_with_the_table_full() {
    let mut t = table(3, 6, Some(Version::V1)).expect("table");
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    while let Some((slot, _)) = t.take_slot() {
        let o = Opening {
            peer: addr,
            local: addr,
            backend: 0,
            connected: false,
            tried: 1,
            tries: 1,
            queued: false,
        };
        t.open(slot, o).expect("a buffer for the header");
        assert!(
            t.conns[slot].flow(Side::Client).hold.held() > 0,
            "no header"
        );
    }
    assert_eq!(t.active(), 3);
}
