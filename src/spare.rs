//! `Spare`: queue room that idle subscribers gave back, for the next queue
//! that needs room.
//!
//! A queue that a receiver drains keeps room for a few items
//! ([`ROOM`]), so that a steady one-in-one-out stream allocates nothing.
//! An *idle* subscriber should keep nothing, though. So a receive that finds
//! nothing (an empty `try_recv`, a receiver about to sleep, an async poll
//! about to return `Pending`) hands its empty queue's room to the broker's
//! spare room, and a delivery to a queue without room takes it from there.
//! A stream whose receiver keeps catching up with it then moves one buffer
//! between its queue and the spare room, and allocates nothing; an idle
//! subscriber keeps no room of its own.
//!
//! The spare room is split into shards (each mailbox uses one, chosen when
//! it is made), so that subscribers that go idle and busy on different
//! threads rarely share a lock, and bounded: at most [`SHARDS`] ×
//! [`PER_SHARD`] buffers of [`ROOM`] items per broker; beyond that, room is
//! freed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Items of room a drained queue keeps, and a spare buffer holds.
pub(crate) const ROOM: usize = 4;

/// Shards of the spare room.
const SHARDS: usize = 8;

/// Buffers a shard keeps.
const PER_SHARD: usize = 4;

/// One shard, on cache lines of its own.
#[repr(align(128))]
struct Shard<T> {
    /// Buffers held (read without the lock, to skip an empty shard).
    held: AtomicUsize,
    buffers: Mutex<Vec<VecDeque<T>>>,
}

/// A broker's spare queue room (see the module docs).
pub(crate) struct Spare<T> {
    shards: Box<[Shard<T>]>,
}

impl<T> Spare<T> {
    pub(crate) fn new() -> Self {
        Spare {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    held: AtomicUsize::new(0),
                    buffers: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    /// The shard a mailbox with this id uses.
    pub(crate) fn shard_of(id: u64) -> u8 {
        (id % SHARDS as u64) as u8
    }

    /// Gives `queue` spare room from `shard` when it has none (before an
    /// item is pushed into it).
    #[inline]
    pub(crate) fn fill(&self, shard: u8, queue: &mut VecDeque<T>) {
        if queue.capacity() != 0 {
            return;
        }
        let shard = &self.shards[usize::from(shard)];
        if shard.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut buffers = shard.buffers.lock();
        if let Some(room) = buffers.pop() {
            shard.held.store(buffers.len(), Ordering::Relaxed);
            *queue = room;
        }
    }

    /// Takes an empty queue's room: into `shard` when it is no more than
    /// [`ROOM`] items and the shard has space, else it is freed.
    pub(crate) fn reclaim(&self, shard: u8, queue: &mut VecDeque<T>) {
        if !queue.is_empty() || queue.capacity() == 0 {
            return;
        }
        let room = std::mem::take(queue);
        if room.capacity() > ROOM {
            return;
        }
        let shard = &self.shards[usize::from(shard)];
        let mut buffers = shard.buffers.lock();
        if buffers.len() < PER_SHARD {
            if buffers.capacity() == 0 {
                buffers.reserve_exact(PER_SHARD);
            }
            buffers.push(room);
            shard.held.store(buffers.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_moves_from_an_idle_queue_to_the_next_that_needs_it() {
        let spare: Spare<u32> = Spare::new();
        let mut idle: VecDeque<u32> = VecDeque::with_capacity(ROOM);
        let room = idle.capacity();
        spare.reclaim(0, &mut idle);
        assert_eq!(idle.capacity(), 0, "the idle queue keeps nothing");

        let mut other_shard = VecDeque::new();
        spare.fill(1, &mut other_shard);
        assert_eq!(other_shard.capacity(), 0, "shards do not share");

        let mut busy = VecDeque::new();
        spare.fill(0, &mut busy);
        assert_eq!(busy.capacity(), room);
        let mut again = VecDeque::new();
        spare.fill(0, &mut again);
        assert_eq!(again.capacity(), 0, "one buffer, given once");
    }

    #[test]
    fn only_small_empty_room_is_kept_and_no_more_than_a_shard_holds() {
        let spare: Spare<u32> = Spare::new();
        let mut queued = VecDeque::with_capacity(ROOM);
        queued.push_back(1);
        spare.reclaim(0, &mut queued);
        assert_eq!(queued.len(), 1, "a queue holding items keeps them");

        let mut large: VecDeque<u32> = VecDeque::with_capacity(8 * ROOM);
        spare.reclaim(0, &mut large);
        assert_eq!(large.capacity(), 0);
        assert_eq!(spare.shards[0].held.load(Ordering::Relaxed), 0, "freed");

        for _ in 0..2 * PER_SHARD {
            let mut idle: VecDeque<u32> = VecDeque::with_capacity(ROOM);
            spare.reclaim(0, &mut idle);
            assert_eq!(idle.capacity(), 0);
        }
        assert_eq!(spare.shards[0].held.load(Ordering::Relaxed), PER_SHARD);
    }
}
