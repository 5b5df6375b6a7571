//! The pipe pool's bookkeeping: which pipes are free and which are lent
//! to a streaming direction, by id. The pipes themselves (two descriptors
//! each) belong to the I/O driver, which looks them up by [`PipeId`]; the
//! relay only borrows and returns ids, like buffers from the
//! [`crate::pool::Pool`]. An empty pool is an ordinary outcome: the
//! direction moves its bytes through a buffer instead.
//!
//! [`Pipes`] is the drivers' side: the pipes themselves, made at start-up
//! and renewed when one is closed with bytes in it.

use crate::stats::Stats;
use netio::sys::pipe::Pipe;

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

/// A worker's pipes, by [`PipeId`], as an engine holds them.
#[derive(Debug)]
pub struct Pipes {
    pipes: Vec<Option<Pipe>>,
    /// The capacity asked for each pipe.
    size: usize,
    /// The capacity the kernel granted.
    granted: usize,
}

impl Pipes {
    /// Makes up to `n` pipes of `size` bytes. Splicing is an
    /// optimisation: if the descriptors run out, the worker runs with
    /// fewer and says so.
    pub fn new(n: usize, size: usize) -> Pipes {
        let mut pipes = Vec::with_capacity(n);
        let mut granted = size;
        for _ in 0..n {
            let made = Pipe::new().and_then(|p| {
                // A refused size keeps the default capacity.
                let got = p.set_size(size).or_else(|_| p.size())?;
                Ok((p, got))
            });
            match made {
                Ok((p, got)) => {
                    granted = got;
                    pipes.push(Some(p));
                }
                Err(e) => {
                    netio::log!(
                        "proxy: warning: only {} of {n} pipes for splicing: {e}",
                        pipes.len()
                    );
                    break;
                }
            }
        }
        Pipes {
            pipes,
            size,
            granted,
        }
    }

    /// How many pipes there are, and the capacity of each (for the pool).
    pub fn counts(&self) -> (usize, usize) {
        (self.pipes.len(), self.granted)
    }

    /// The pipe lent as `id`, unless it could not be renewed.
    #[inline]
    pub fn get(&self, id: &PipeId) -> Option<&Pipe> {
        self.pipes.get(id.index()).and_then(Option::as_ref)
    }

    /// Closes the pipe lent as `id` (bytes nobody will read are in it) and
    /// makes a new one in its place; false if none could be made.
    pub fn renew(&mut self, id: &PipeId, stats: &Stats) -> bool {
        let Some(slot) = self.pipes.get_mut(id.index()) else {
            return false;
        };
        if slot.take().is_some() {
            stats.sys_close.add(2);
        }
        stats.sys_pipe.inc();
        let Ok(p) = Pipe::new() else {
            return false;
        };
        // A refused size keeps the default capacity: splices then move
        // less at a time, which is all.
        stats.sys_pipe.inc();
        let _ = p.set_size(self.size);
        *slot = Some(p);
        true
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
