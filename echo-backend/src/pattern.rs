//! A seeded, endless byte stream that both ends can produce and check
//! without storing a copy: `source` mode writes it, loadgen's `bulk` mode
//! sends and verifies it.
//!
//! The stream is a block of pseudo-random bytes (xorshift64*, from the
//! seed) repeated forever. The period is a prime number of bytes, so it
//! never lines up with buffer sizes: a dropped, repeated or reordered
//! chunk shows up as a mismatch. Checking is a `memcmp` against the block,
//! so verification runs at memory speed and never limits a measurement.

/// Length of the repeating block: a prime a little over 1 MiB.
pub const PERIOD: usize = 1_048_583;

/// The stream for one seed.
pub struct Pattern {
    block: Vec<u8>,
}

impl Pattern {
    /// Builds the block for `seed` (about 1 MiB, a few milliseconds).
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
        if x == 0 {
            x = 1;
        }
        let mut block = Vec::with_capacity(PERIOD + 8);
        while block.len() < PERIOD {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            block.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        block.truncate(PERIOD);
        Pattern { block }
    }

    /// Fills `out` with the stream's bytes starting at stream offset `pos`.
    pub fn fill(&self, pos: u64, out: &mut [u8]) {
        let mut at = (pos % PERIOD as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (PERIOD - at).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[at..at + n]);
            done += n;
            at = 0;
        }
    }

    /// The longest slice of the stream starting at `pos`, without copying
    /// (up to the end of the block).
    pub fn slice_at(&self, pos: u64) -> &[u8] {
        &self.block[(pos % PERIOD as u64) as usize..]
    }

    /// Checks that `data` equals the stream at offset `pos`. On a mismatch
    /// returns the stream offset of the first wrong byte.
    pub fn verify(&self, pos: u64, data: &[u8]) -> Result<(), u64> {
        let mut at = (pos % PERIOD as u64) as usize;
        let mut done = 0;
        while done < data.len() {
            let n = (PERIOD - at).min(data.len() - done);
            let (want, got) = (&self.block[at..at + n], &data[done..done + n]);
            if want != got {
                let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
                return Err(pos + (done + i) as u64);
            }
            done += n;
            at = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_verify_agree_across_the_period() {
        let p = Pattern::new(42);
        let start = PERIOD as u64 - 100;
        let mut buf = vec![0u8; 300];
        p.fill(start, &mut buf);
        assert_eq!(p.verify(start, &buf), Ok(()));
        assert_eq!(&buf[100..], &p.slice_at(0)[..200]);
    }

    #[test]
    fn a_flipped_byte_is_found_where_it_is() {
        let p = Pattern::new(7);
        let mut buf = vec![0u8; 5000];
        p.fill(1234, &mut buf);
        buf[4321] ^= 1;
        assert_eq!(p.verify(1234, &buf), Err(1234 + 4321));
    }

    #[test]
    fn a_dropped_chunk_is_found() {
        let p = Pattern::new(7);
        let mut buf = vec![0u8; 10_000];
        p.fill(0, &mut buf);
        buf.drain(4096..8192);
        assert!(p.verify(0, &buf).is_err());
    }

    #[test]
    fn seeds_differ() {
        let (a, b) = (Pattern::new(1), Pattern::new(2));
        assert_ne!(&a.slice_at(0)[..64], &b.slice_at(0)[..64]);
    }
}
