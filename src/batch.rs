//! `Batch`: what the receivers of an unbounded subscriber take items from
//! without the mailbox lock, in chunks.
//!
//! An unbounded subscriber's queue (under the mailbox lock) is one chunk.
//! When it is full, the publisher moves it, whole, to the back of the batch
//! (under the receivers' lock) and starts a new one; and a receiver that has
//! emptied the batch swaps the queue in (see `Mailbox::pop`). A new chunk
//! holds [`CHUNK`] items while the receiver keeps up (the batch is empty
//! when the chunk moves), and twice the last one's room, up to
//! [`MAX_CHUNK`], while a backlog grows: a backlog of `n` items takes about
//! `log2(n / CHUNK)` allocations and is never copied.
//!
//! A queue that doubled one buffer instead copied the whole backlog at each
//! doubling, with the allocator's lock held (glibc's `realloc`): two
//! publishers whose threads shared an allocator arena then waited for each
//! other's copies, and together published less than one alone. Chunks of a
//! fixed size avoided that, but a drained backlog of small chunks came back
//! to the allocator as one large free block, which glibc returned to the
//! system (trimmed), to fault it in again page by page for the next backlog:
//! 163 page faults per backlog of 10,000, and a publish took 73 ns instead
//! of 49 (throwaway driver).
//! Large chunks come from (and go back to) the system directly at first,
//! which raises glibc's thresholds so that later ones stay in the arena.

use std::collections::VecDeque;

/// The items of a chunk while the receiver keeps up: 64 messages of 88 bytes
/// are 5.5 KiB, and a receiver waiting for a stream meets the publisher at
/// the mailbox lock once per 64 items (see `Mailbox::look_before_sleeping`).
pub(crate) const CHUNK: usize = 64;

/// The most items a chunk of a growing backlog holds (720 KiB of 88-byte
/// messages).
pub(crate) const MAX_CHUNK: usize = 8192;

/// Items in chunks, oldest first (see the module docs).
#[derive(Debug)]
pub(crate) struct Batch<T> {
    /// The chunk being taken from.
    front: VecDeque<T>,
    /// Full chunks behind it, oldest first.
    rest: VecDeque<VecDeque<T>>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            front: VecDeque::new(),
            rest: VecDeque::new(),
        }
    }
}

impl<T> Batch<T> {
    /// Takes the oldest item.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        // The front's own result, returned as it is: matching on it and
        // wrapping the item again made the compiler copy the item through
        // the stack, and the receive stall on the copy (store forwarding).
        if self.front.is_empty() {
            return self.next_chunk();
        }
        let item = self.front.pop_front();
        if self.front.is_empty() && self.front.capacity() > CHUNK && self.rest.is_empty() {
            self.give_back();
        }
        item
    }

    /// The batch was emptied of a backlog's chunk: frees its room, which a
    /// receiver that stops here would otherwise keep (up to [`MAX_CHUNK`]
    /// items) until a receive finds nothing.
    #[cold]
    #[inline(never)]
    fn give_back(&mut self) {
        self.front = VecDeque::new();
    }

    /// The front chunk is empty: moves on to the next that holds an item,
    /// dropping the empty ones, and takes that item.
    #[cold]
    fn next_chunk(&mut self) -> Option<T> {
        loop {
            self.front = self.rest.pop_front()?;
            if let Some(item) = self.front.pop_front() {
                return Some(item);
            }
        }
    }

    /// Whether no item is left.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.front.is_empty() && self.rest.is_empty()
    }

    /// Items left.
    pub(crate) fn len(&self) -> usize {
        self.front.len() + self.rest.iter().map(VecDeque::len).sum::<usize>()
    }

    /// Appends a chunk of newer items.
    pub(crate) fn push_chunk(&mut self, chunk: VecDeque<T>) {
        self.rest.push_back(chunk);
    }

    /// Takes every item of `queue`, leaving it the emptied front chunk's
    /// room, up to [`CHUNK`] items (a stream whose receiver keeps up moves
    /// two buffers round).
    ///
    /// # Panics
    ///
    /// If items are left (they come before `queue`'s).
    pub(crate) fn take_all(&mut self, queue: &mut VecDeque<T>) {
        assert!(self.is_empty(), "a batch takes a queue once emptied");
        std::mem::swap(&mut self.front, queue);
        if queue.capacity() > CHUNK {
            // A backlog's room: the queue starts small again.
            *queue = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_oldest_first_across_chunks() {
        let mut batch = Batch::default();
        assert_eq!(batch.pop_front(), None::<u32>);
        let mut queue: VecDeque<u32> = (0..3).collect();
        batch.take_all(&mut queue);
        assert!(queue.is_empty());
        batch.push_chunk((3..5).collect());
        batch.push_chunk(VecDeque::new());
        batch.push_chunk((5..6).collect());
        assert_eq!(batch.len(), 6);
        let taken: Vec<u32> = std::iter::from_fn(|| batch.pop_front()).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4, 5]);
        assert!(batch.is_empty());
        assert_eq!(batch.len(), 0);
    }

    #[test]
    fn an_emptied_batch_gives_its_room_to_the_queue_it_takes() {
        let mut batch = Batch::default();
        let mut queue: VecDeque<u32> = VecDeque::with_capacity(CHUNK);
        queue.extend(0..2);
        batch.take_all(&mut queue);
        while batch.pop_front().is_some() {}
        queue.push_back(9);
        batch.take_all(&mut queue);
        assert!(queue.capacity() >= CHUNK, "the queue got the emptied room");
        assert_eq!(batch.pop_front(), Some(9));
    }

    #[test]
    #[should_panic(expected = "once emptied")]
    fn taking_a_queue_over_items_left_would_reorder_them() {
        let mut batch = Batch::default();
        batch.push_chunk(VecDeque::from([1]));
        batch.take_all(&mut VecDeque::from([2]));
    }
}
