//! The "run again" queue: slots that stopped only to let others have a
//! turn (fairness), to be resumed after this batch of events without
//! waiting for a new edge (edge-triggered epoll would never send one).
//!
//! A slot is queued at most once per generation: pushing it twice in one
//! turn is a no-op. Entries carry the generation, so a slot closed (and
//! perhaps reused) since it was queued is recognised by its owner as
//! stale. While the queue is not empty the loop must not sleep: poll with
//! a zero timeout.

/// One queued slot: index and generation.
pub type Entry = (u32, u32);

/// The queue.
#[derive(Debug, Default)]
pub struct AgainQueue {
    next: Vec<Entry>,
    /// Per slot, the generation queued in `next`, if any.
    queued: Vec<Option<u32>>,
    /// The list handed out by the last [`AgainQueue::take`], kept for its
    /// allocation.
    spare: Vec<Entry>,
}

impl AgainQueue {
    /// A queue for a table of `slots` slots (it grows if a larger slot is
    /// pushed).
    pub fn with_slots(slots: usize) -> AgainQueue {
        AgainQueue {
            next: Vec::with_capacity(slots),
            queued: vec![None; slots],
            spare: Vec::with_capacity(slots),
        }
    }

    /// Whether anything waits for the next turn.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Queues `slot` at generation `gen` for the next turn, unless it is
    /// queued already.
    #[inline]
    pub fn push(&mut self, slot: u32, gen: u32) {
        let i = slot as usize;
        if i >= self.queued.len() {
            self.queued.resize(i + 1, None);
        }
        if self.queued[i] != Some(gen) {
            self.queued[i] = Some(gen);
            self.next.push((slot, gen));
        }
    }

    /// Takes this turn's entries. What is pushed while the caller works
    /// through them goes to the next turn. Hand the list back with
    /// [`AgainQueue::recycle`] to keep its allocation.
    pub fn take(&mut self) -> Vec<Entry> {
        let list = std::mem::replace(&mut self.next, std::mem::take(&mut self.spare));
        for &(slot, gen) in &list {
            let q = &mut self.queued[slot as usize];
            if *q == Some(gen) {
                *q = None;
            }
        }
        list
    }

    /// Gives back a list from [`AgainQueue::take`].
    pub fn recycle(&mut self, mut list: Vec<Entry>) {
        list.clear();
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_queued_once_a_turn() {
        let mut q = AgainQueue::with_slots(4);
        assert!(q.is_empty());
        q.push(1, 0);
        q.push(1, 0);
        q.push(2, 5);
        let list = q.take();
        assert_eq!(list, vec![(1, 0), (2, 5)]);
        assert!(q.is_empty());
        // Pushed while working through the list: the next turn.
        q.push(1, 0);
        q.recycle(list);
        assert_eq!(q.take(), vec![(1, 0)]);
    }

    #[test]
    fn a_reused_slot_is_queued_afresh_and_the_old_entry_stays_stale() {
        let mut q = AgainQueue::with_slots(1);
        q.push(0, 1);
        q.push(0, 2);
        assert_eq!(q.take(), vec![(0, 1), (0, 2)]);
        q.push(9, 0);
        assert_eq!(q.take(), vec![(9, 0)], "the table grew");
    }
}
