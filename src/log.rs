//! `Log`: one channel's publishes, stored once and read by many.
//!
//! Fan-out to N subscribers through N queues costs the publisher N queue
//! operations per publish. A channel's *log* stores each publish once; a
//! subscriber whose only subscription is that channel (and who asked for
//! nothing a queue must do for it: no bound, no readiness handle) reads it
//! through its own [`Cursor`], so a publish costs the publisher one append
//! whatever N is, and each reader pays one payload clone per message — the
//! cost of a broadcast ring, without a capacity to lag behind.
//!
//! The log is a singly linked list of fixed-size segments. Slots are
//! written once, by the publisher holding the channel's stripe lock, and
//! read without locks (a slot is a `WriteOnce`: see `write_once.rs`). Readers hold their current
//! segment, so a segment is freed as soon as the last reader has moved past
//! it; memory grows only with what the slowest reader has not read, as a
//! queue's would.
//!
//! Readers that find nothing register as *sleepers* before they wait; an
//! append wakes the registered sleepers (one check of a counter when there
//! are none). The appender publishes the slot, then (sequentially
//! consistent) reads the counter; a sleeper raises the counter, then
//! (sequentially consistent) reads the slot again: one of the two always
//! sees the other, so no wake-up is lost.

use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::write_once::WriteOnce;

/// Slots per segment: one allocation per this many publishes.
const SEGMENT: usize = 32;

/// What a slot holds.
#[derive(Debug)]
pub(crate) enum Entry<P> {
    /// A published payload.
    Payload(P),
    /// Publishes lost before they reached this broker (the Redis bridge's
    /// gap detection): readers report them as `Lagged`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Lost(u64),
}

struct Segment<P> {
    slots: Box<[WriteOnce<Entry<P>>]>,
    next: OnceLock<Arc<Segment<P>>>,
}

impl<P> Segment<P> {
    fn new() -> Arc<Self> {
        Arc::new(Segment {
            slots: (0..SEGMENT).map(|_| WriteOnce::new()).collect(),
            next: OnceLock::new(),
        })
    }
}

/// What the writer and every cursor share: the position of the end and the
/// readers waiting for it to move.
pub(crate) struct Shared<W> {
    /// Entries appended so far.
    end: AtomicU64,
    /// How many sleepers are registered.
    sleeping: AtomicUsize,
    sleepers: Mutex<Vec<Weak<W>>>,
}

/// A reader that can be woken when the log grows.
pub(crate) trait Wake {
    fn wake(&self);
}

/// The writing end of a channel's log, kept in the channel's entry and used
/// under its stripe lock.
pub(crate) struct Log<P, W> {
    tail: Arc<Segment<P>>,
    /// The next free slot of `tail`.
    at: usize,
    shared: Arc<Shared<W>>,
}

impl<P, W: Wake> Log<P, W> {
    pub(crate) fn new() -> Self {
        Log {
            tail: Segment::new(),
            at: 0,
            shared: Arc::new(Shared {
                end: AtomicU64::new(0),
                sleeping: AtomicUsize::new(0),
                sleepers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A cursor at the end: it reads what is appended from now on.
    pub(crate) fn cursor(&self) -> Cursor<P, W> {
        Cursor {
            segment: Arc::clone(&self.tail),
            at: self.at,
            position: self.shared.end.load(Ordering::Relaxed),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Appends an entry and wakes the readers waiting for one.
    pub(crate) fn append(&mut self, entry: Entry<P>) {
        if self.at == SEGMENT {
            let next = Segment::new();
            let _ = self.tail.next.set(Arc::clone(&next));
            self.tail = next;
            self.at = 0;
        }
        // SAFETY: this is the log's one writing end (`Log` is neither
        // `Clone` nor shared: it is used through `&mut`, under the channel's
        // lock), and it writes slot `at` of its tail once, then moves past
        // it for good; nothing else writes slots.
        #[allow(unsafe_code)]
        unsafe {
            self.tail.slots[self.at].write(entry);
        }
        self.at += 1;
        // Only this writer (under the channel's lock) moves the end: a
        // plain store, no read-modify-write.
        let end = self.shared.end.load(Ordering::Relaxed);
        self.shared.end.store(end + 1, Ordering::Release);
        // Pairs with the fence in `Cursor::sleep`: either the sleeper sees
        // this entry, or this sees the sleeper.
        fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::Relaxed) > 0 {
            let sleepers = {
                let mut sleepers = self.shared.sleepers.lock();
                self.shared.sleeping.store(0, Ordering::Relaxed);
                std::mem::take(&mut *sleepers)
            };
            for sleeper in sleepers {
                if let Some(sleeper) = sleeper.upgrade() {
                    sleeper.wake();
                }
            }
        }
    }
}

/// One reader's place in a log.
pub(crate) struct Cursor<P, W> {
    segment: Arc<Segment<P>>,
    at: usize,
    /// Entries read so far (counted from the log's start).
    position: u64,
    shared: Arc<Shared<W>>,
}

impl<P, W> Cursor<P, W> {
    /// The next entry, if one was appended, moving past it (the tests'
    /// shorthand for [`peek`](Cursor::peek) then [`advance`](Cursor::advance)).
    #[cfg(test)]
    pub(crate) fn next(&mut self) -> Option<&Entry<P>> {
        self.peek()?;
        self.advance();
        self.segment.slots[self.at - 1].get()
    }

    /// The next entry, without moving past it (see
    /// [`advance`](Cursor::advance)).
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<&Entry<P>> {
        if self.at == SEGMENT && !self.step() {
            return None;
        }
        self.segment.slots[self.at].get()
    }

    /// Moves past the entry [`peek`](Cursor::peek) returned; call only
    /// after it returned one.
    #[inline]
    pub(crate) fn advance(&mut self) {
        debug_assert!(self.at < SEGMENT && self.segment.slots[self.at].is_written());
        self.at += 1;
        self.position += 1;
    }

    /// Moves onto the next segment, once it exists; returns whether it did.
    #[cold]
    #[inline(never)]
    fn step(&mut self) -> bool {
        let Some(next) = self.segment.next.get() else {
            return false;
        };
        self.segment = Arc::clone(next);
        self.at = 0;
        true
    }

    /// Whether an entry is waiting (without taking it).
    pub(crate) fn has_next(&self) -> bool {
        if self.at == SEGMENT {
            return self
                .segment
                .next
                .get()
                .is_some_and(|next| next.slots[0].is_written());
        }
        self.segment.slots[self.at].is_written()
    }

    /// Entries appended and not read yet.
    pub(crate) fn pending(&self) -> usize {
        let end = self.shared.end.load(Ordering::Acquire);
        usize::try_from(end.saturating_sub(self.position)).unwrap_or(usize::MAX)
    }

    /// Registers `reader` to be woken by the next append (the caller
    /// registers each reader once until it is woken); returns whether an
    /// entry arrived meanwhile (then there is no need to wait).
    pub(crate) fn sleep(&self, reader: &Arc<W>) -> bool {
        {
            let mut sleepers = self.shared.sleepers.lock();
            sleepers.push(Arc::downgrade(reader));
            self.shared
                .sleeping
                .store(sleepers.len(), Ordering::Relaxed);
        }
        // Pairs with the fence in `Log::append`.
        fence(Ordering::SeqCst);
        self.has_next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn payload(entry: Option<&Entry<u32>>) -> Option<u32> {
        match entry {
            Some(Entry::Payload(p)) => Some(*p),
            _ => None,
        }
    }

    #[test]
    fn readers_see_what_was_appended_after_they_joined_in_order() {
        let mut log: Log<u32, Flag> = Log::new();
        log.append(Entry::Payload(0));
        let mut early = log.cursor();
        for i in 1..100 {
            log.append(Entry::Payload(i));
        }
        let mut late = log.cursor();
        log.append(Entry::Payload(100));
        assert_eq!(early.pending(), 100);
        let seen: Vec<u32> = std::iter::from_fn(|| payload(early.next())).collect();
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        assert_eq!(payload(late.next()), Some(100));
        assert_eq!(payload(late.next()), None);
        assert_eq!(late.pending(), 0);
    }

    #[test]
    fn segments_are_freed_once_every_reader_passed_them() {
        let mut log: Log<Arc<u32>, Flag> = Log::new();
        let mut reader = log.cursor();
        let first = Arc::new(7);
        log.append(Entry::Payload(Arc::clone(&first)));
        for i in 0..(3 * SEGMENT as u32) {
            log.append(Entry::Payload(Arc::new(i)));
        }
        assert_eq!(Arc::strong_count(&first), 2);
        for _ in 0..(2 * SEGMENT) {
            reader.next();
        }
        assert_eq!(Arc::strong_count(&first), 1, "the first segment is gone");
    }

    #[test]
    fn a_sleeper_is_woken_by_the_next_append() {
        let mut log: Log<u32, Flag> = Log::new();
        let reader = log.cursor();
        let flag = Arc::new(Flag::default());
        assert!(!reader.sleep(&flag));
        log.append(Entry::Payload(1));
        assert!(flag.0.load(Ordering::SeqCst));
        // Woken once: the next append wakes nobody.
        flag.0.store(false, Ordering::SeqCst);
        log.append(Entry::Payload(2));
        assert!(!flag.0.load(Ordering::SeqCst));
        assert!(reader.sleep(&flag), "entries are waiting");
    }

    #[test]
    fn concurrent_appends_and_sleeps_lose_no_wake_up() {
        use std::sync::mpsc;
        struct Thread(std::thread::Thread, AtomicBool);
        impl Wake for Thread {
            fn wake(&self) {
                self.1.store(true, Ordering::SeqCst);
                self.0.unpark();
            }
        }
        let log = Arc::new(Mutex::new(Log::<u32, Thread>::new()));
        let mut cursor = log.lock().cursor();
        let (done_tx, done_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let me = Arc::new(Thread(std::thread::current(), AtomicBool::new(false)));
            let mut seen = 0u32;
            while seen < 20_000 {
                if let Some(Entry::Payload(p)) = cursor.next() {
                    assert_eq!(*p, seen);
                    seen += 1;
                    continue;
                }
                me.1.store(false, Ordering::SeqCst);
                if cursor.sleep(&me) {
                    continue;
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while !me.1.load(Ordering::SeqCst) {
                    assert!(std::time::Instant::now() < deadline, "lost wake-up");
                    std::thread::park_timeout(std::time::Duration::from_millis(100));
                }
            }
            done_tx.send(()).unwrap();
        });
        for i in 0..20_000 {
            log.lock().append(Entry::Payload(i));
        }
        done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the reader finished");
        reader.join().unwrap();
    }
}
