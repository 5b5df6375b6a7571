//! A fixed pool of equal-sized buffers, allocated once and lent out while
//! data is in flight.
//!
//! The whole pool is one zeroed allocation, so pages that were never lent
//! are never resident: RSS follows the high-water mark of buffers in use,
//! not the capacity. Free buffers form a LIFO stack, so the same few hot
//! buffers are reused under light load. An empty pool is an ordinary
//! outcome ([`Pool::checkout`] returns `None`), never a panic.

use std::io;

/// A buffer on loan from a [`Pool`]: its index and the live byte range
/// `start..end` within it.
#[derive(Debug)]
#[must_use = "a lent buffer must be given back with Pool::checkin"]
pub struct Buf {
    id: u32,
    start: u32,
    end: u32,
    /// Lent by the large-buffer pool (see [`Pool::new_large`]).
    large: bool,
}

impl Buf {
    /// Whether this buffer came from a large-buffer pool.
    #[inline]
    pub fn is_large(&self) -> bool {
        self.large
    }

    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` bytes at the front as written.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n as u32;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Marks `n` more bytes as filled after a read into [`Pool::spare`].
    #[inline]
    pub fn fill(&mut self, n: usize) {
        self.end += n as u32;
    }
}

/// The pool itself.
pub struct Pool {
    mem: Box<[u8]>,
    size: usize,
    /// Buffers in all (kept, not divided out on every checkout).
    capacity: usize,
    free: Vec<u32>,
    high_water: usize,
    large: bool,
    /// Which buffers are lent, to catch a double checkin in debug builds
    /// in O(1).
    #[cfg(debug_assertions)]
    lent_map: Vec<bool>,
}

impl Pool {
    /// A pool of `capacity` buffers of `size` bytes each.
    ///
    /// # Panics
    /// If `size` is zero or larger than `u32::MAX`, or `capacity` does not
    /// fit in `u32` (the configuration layer rejects those values first),
    /// or the memory cannot be had: sizes from the user go through
    /// [`Pool::try_new`].
    pub fn new(capacity: usize, size: usize) -> Pool {
        Self::try_new(capacity, size, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A pool whose buffers say [`Buf::is_large`], so that a caller with
    /// two pools knows where each buffer goes back.
    pub fn new_large(capacity: usize, size: usize) -> Pool {
        Self::try_new(capacity, size, true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Pool::new`] (or, `large`, [`Pool::new_large`]) that reports an
    /// allocation the system refuses as an error instead of aborting.
    ///
    /// # Panics
    /// On the sizes [`Pool::new`] panics on.
    pub fn try_new(capacity: usize, size: usize, large: bool) -> io::Result<Pool> {
        assert!(
            size > 0 && size <= u32::MAX as usize,
            "buffer size out of range"
        );
        assert!(capacity <= u32::MAX as usize, "pool capacity out of range");
        let bytes = capacity.checked_mul(size).ok_or_else(|| {
            io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool size overflows")
        })?;
        // A zeroed allocation of this size comes straight from mmap, so
        // untouched buffers cost address space but no memory.
        let mem = netio::mem::try_zeroed(bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate a buffer pool of {bytes} bytes"),
            )
        })?;
        let mut free = Vec::new();
        free.try_reserve_exact(capacity)
            .map_err(|e| no_memory("the buffer pool's free list", e))?;
        free.extend((0..capacity as u32).rev());
        Ok(Pool {
            mem,
            size,
            capacity,
            free,
            high_water: 0,
            large,
            #[cfg(debug_assertions)]
            lent_map: vec![false; capacity],
        })
    }

    /// How many buffers the pool holds in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a checkout would succeed.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Buffers currently lent out.
    pub fn lent(&self) -> usize {
        self.capacity() - self.free.len()
    }

    /// The most buffers ever lent at once.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Lends an empty buffer, or `None` when all are lent.
    #[inline]
    pub fn checkout(&mut self) -> Option<Buf> {
        let id = self.free.pop()?;
        let lent = self.lent();
        if lent > self.high_water {
            self.high_water = lent;
        }
        debug_assert!(self.free.len() + lent == self.capacity());
        #[cfg(debug_assertions)]
        {
            self.lent_map[id as usize] = true;
        }
        Some(Buf {
            id,
            start: 0,
            end: 0,
            large: self.large,
        })
    }

    /// Takes a buffer back. Any bytes still in it are dropped, so callers
    /// give back only empty buffers unless the connection is being torn down.
    #[inline]
    pub fn checkin(&mut self, buf: Buf) {
        debug_assert_eq!(buf.large, self.large, "buffer given back to the wrong pool");
        #[cfg(debug_assertions)]
        {
            let was_lent = std::mem::replace(&mut self.lent_map[buf.id as usize], false);
            debug_assert!(was_lent, "buffer {} given back twice", buf.id);
        }
        self.free.push(buf.id);
        debug_assert!(self.free.len() <= self.capacity());
    }

    /// The bytes of `buf` waiting to be written.
    #[inline]
    pub fn data(&self, buf: &Buf) -> &[u8] {
        let base = buf.id as usize * self.size;
        &self.mem[base + buf.start as usize..base + buf.end as usize]
    }

    /// The free space after the data of `buf`, to read into.
    #[inline]
    pub fn spare(&mut self, buf: &Buf) -> &mut [u8] {
        let base = buf.id as usize * self.size;
        &mut self.mem[base + buf.end as usize..base + self.size]
    }
}

/// Regular buffers plus a few large ones for connections that stream:
/// a direction whose last read filled its buffer asks for a large one,
/// so bulk transfers move more per system call while idle and
/// request/response connections keep the small size.
pub struct Pools {
    pub small: Pool,
    pub large: Pool,
}

impl Pools {
    pub fn new(small: Pool, large: Pool) -> Pools {
        Pools { small, large }
    }

    fn of(&mut self, buf: &Buf) -> &mut Pool {
        if buf.large {
            &mut self.large
        } else {
            &mut self.small
        }
    }

    /// Lends a buffer of the kind asked for, or of the other kind when
    /// that one has none free: any buffer beats a stall.
    #[inline]
    pub fn checkout(&mut self, large: bool) -> Option<Buf> {
        if large {
            self.large.checkout().or_else(|| self.small.checkout())
        } else {
            self.small.checkout().or_else(|| self.large.checkout())
        }
    }

    #[inline]
    pub fn checkin(&mut self, buf: Buf) {
        self.of(&buf).checkin(buf);
    }

    /// Any buffer free at all.
    pub fn has_free(&self) -> bool {
        self.small.has_free() || self.large.has_free()
    }

    #[inline]
    pub fn data(&self, buf: &Buf) -> &[u8] {
        if buf.large {
            self.large.data(buf)
        } else {
            self.small.data(buf)
        }
    }

    #[inline]
    pub fn spare(&mut self, buf: &Buf) -> &mut [u8] {
        self.of(buf).spare(buf)
    }
}

/// The error for an allocation of `what` the system refused.
pub fn no_memory(what: &str, e: std::collections::TryReserveError) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("allocating {what}: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pool_lends_nothing_and_recovers() {
        let mut pool = Pool::new(2, 16);
        let a = pool.checkout().expect("first");
        let b = pool.checkout().expect("second");
        assert!(pool.checkout().is_none());
        assert_eq!(pool.lent(), 2);
        pool.checkin(a);
        let c = pool.checkout().expect("after checkin");
        pool.checkin(b);
        pool.checkin(c);
        assert_eq!(pool.lent(), 0);
        assert_eq!(pool.high_water(), 2);
    }

    #[test]
    fn fill_and_consume_track_the_live_range() {
        let mut pool = Pool::new(1, 8);
        let mut buf = pool.checkout().expect("buffer");
        pool.spare(&buf)[..5].copy_from_slice(b"hello");
        buf.fill(5);
        assert_eq!(pool.data(&buf), b"hello");
        assert_eq!(pool.spare(&buf).len(), 3);
        buf.consume(2);
        assert_eq!(pool.data(&buf), b"llo");
        buf.consume(3);
        assert!(buf.is_empty());
        assert_eq!(pool.spare(&buf).len(), 8, "an emptied buffer rewinds");
        pool.checkin(buf);
    }

    #[test]
    fn pools_route_buffers_home_and_fall_back_to_small() {
        let mut p = Pools::new(Pool::new(2, 8), Pool::new_large(1, 32));
        let big = p.checkout(true).expect("large");
        assert!(big.is_large());
        assert_eq!(p.spare(&big).len(), 32);
        let fallback = p.checkout(true).expect("small when no large is free");
        assert!(!fallback.is_large());
        p.checkin(big);
        p.checkin(fallback);
        assert_eq!((p.small.lent(), p.large.lent()), (0, 0));
    }

    #[test]
    fn buffers_do_not_overlap() {
        let mut pool = Pool::new(3, 4);
        let bufs: Vec<Buf> = (0..3).map(|_| pool.checkout().expect("buffer")).collect();
        for (i, b) in bufs.iter().enumerate() {
            pool.spare(b).fill(i as u8 + 1);
        }
        for (i, mut b) in bufs.into_iter().enumerate() {
            b.fill(4);
            assert_eq!(pool.data(&b), &[i as u8 + 1; 4]);
            pool.checkin(b);
        }
    }
}
