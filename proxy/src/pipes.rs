//! The pipe pool's bookkeeping: which pipes are free and which are lent
//! to a streaming direction, by id. The pipes themselves (two descriptors
//! each) belong to the I/O driver, which looks them up by [`PipeId`]; the
//! relay only borrows and returns ids, like buffers from the
//! [`crate::pool::Pool`]. An empty pool is an ordinary outcome: the
//! direction moves its bytes through a buffer instead.

/// A pipe on loan, by index.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lent pipe must be given back with PipePool::checkin"]
pub struct PipeId(u32);

impl PipeId {
    /// Which pipe, for the driver's table of descriptors.
    #[inline]
    pub fn index(&self) -> usize {
        self.0 as usize
    }
}

/// The free list and the lent count of `capacity` pipes.
#[derive(Debug)]
pub struct PipePool {
    free: Vec<u32>,
    capacity: usize,
    /// Bytes each pipe holds (what the kernel granted).
    size: usize,
    /// Which pipes are lent, to catch a double checkin in debug builds.
    #[cfg(debug_assertions)]
    lent_map: Vec<bool>,
}

impl PipePool {
    /// A pool of `capacity` pipes of `size` bytes, all free.
    pub fn new(capacity: usize, size: usize) -> PipePool {
        PipePool {
            free: (0..capacity as u32).rev().collect(),
            capacity,
            size,
            #[cfg(debug_assertions)]
            lent_map: vec![false; capacity],
        }
    }

    /// Bytes a pipe holds: the most one splice into it may move.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pipes in the pool, lent or free.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Pipes lent out now.
    pub fn lent(&self) -> usize {
        self.capacity - self.free.len()
    }

    /// Lends a free pipe, or `None` when all are lent.
    #[inline]
    pub fn checkout(&mut self) -> Option<PipeId> {
        let id = self.free.pop()?;
        #[cfg(debug_assertions)]
        {
            self.lent_map[id as usize] = true;
        }
        debug_assert!(self.free.len() + self.lent() == self.capacity);
        Some(PipeId(id))
    }

    /// Takes an empty pipe back.
    #[inline]
    pub fn checkin(&mut self, pipe: PipeId) {
        self.unlend(&pipe);
        self.free.push(pipe.0);
        debug_assert!(self.free.len() <= self.capacity);
    }

    /// Takes back a pipe that could not be renewed after it was closed
    /// with bytes in it: the pool is one pipe smaller from now on.
    pub fn retire(&mut self, pipe: PipeId) {
        self.unlend(&pipe);
        self.capacity -= 1;
    }

    #[inline]
    fn unlend(&mut self, _pipe: &PipeId) {
        #[cfg(debug_assertions)]
        {
            let was = std::mem::replace(&mut self.lent_map[_pipe.index()], false);
            debug_assert!(was, "pipe {} given back twice", _pipe.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_lent_once_and_a_retired_one_shrinks_the_pool() {
        let mut p = PipePool::new(2, 4096);
        let a = p.checkout().expect("first");
        let b = p.checkout().expect("second");
        assert!(p.checkout().is_none());
        assert_eq!(p.lent(), 2);
        p.checkin(a);
        p.retire(b);
        assert_eq!((p.capacity(), p.lent()), (1, 0));
        let c = p.checkout().expect("the one left");
        assert!(p.checkout().is_none());
        p.checkin(c);
    }
}
