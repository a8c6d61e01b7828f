//! `Mailbox`: the one owner of a subscriber's stream.
//!
//! Everything that touches a subscriber's queue goes through here: the
//! queue itself, the bound (deliveries and payload bytes), the overflow
//! policy, the in-band [`Message::Lagged`] reports, the subscriber's
//! counters, and every wake-up (receivers blocked in `recv`, publishers
//! blocked for room, async tasks, and the readiness handle `select!` waits
//! on). Publishers hand a mailbox the deliveries of one publish as one
//! group, under the mailbox's own mutex; receivers take items out under it
//! on their slow path. Nobody waits while holding it (condition variables
//! release it). While holding it, only the receivers' spin lock (below) and,
//! under that, a channel log's sleepers mutex may be taken.
//!
//! The receivers' side (`Taken`) sits behind that spin lock: the batch (an
//! unbounded subscriber's queue, taken in one go or moved over a chunk at a
//! time when it fills; see `batch.rs`), the cursor of the log of
//! the subscriber's only channel (see `log.rs`), and the `received` count.
//! A receive that finds an item in the batch, or in the log with nothing
//! queued before it, takes one atomic operation and never touches the mutex
//! publishers and waiting threads use.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::batch::{Batch, CHUNK, MAX_CHUNK};
use crate::held::Held;
use crate::log::{Cursor, Entry, Wake};
use crate::spare::{Spare, ROOM};
use crate::stats::SubscriberStats;
use crate::{Message, Name};

/// What a bounded subscriber does with a delivery that finds its queue full.
///
/// Set with [`SubscriberBuilder::overflow`](crate::SubscriberBuilder::overflow).
/// Whatever the policy, a subscriber is told what it lost: dropped
/// deliveries are reported in its stream as a [`Message::Lagged`] with the
/// exact count, at the place where they are missing, and counted in
/// [`SubscriberStats::dropped`] and [`BrokerStats::dropped`](crate::BrokerStats::dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// The publisher waits until the subscriber makes room.
    ///
    /// The waiting publisher holds no lock other work needs, except that
    /// later publishes on the *same channel* (and unsubscribe calls from
    /// that channel) wait behind it, to keep the channel's single order.
    /// Subscribing, dropping a subscriber and an eviction never wait.
    ///
    /// **Deadlock hazard:** a subscriber whose own thread publishes to a
    /// channel that waits for it, or unsubscribes from such a channel, never
    /// wakes up; nor do subscribers whose threads wait for each other in a
    /// cycle (A's thread publishes to a channel waiting for B while B's
    /// thread publishes to one waiting for A). Prefer
    /// [`Overflow::BlockFor`], which gives up after a while.
    Block,
    /// Like [`Overflow::Block`], but waits at most this long per publish
    /// (all of its waits together), then drops and reports as
    /// [`Overflow::DropNewest`] does. A duration too large to add to the
    /// current instant means "forever".
    BlockFor(Duration),
    /// The new delivery is dropped; the queue keeps the older ones.
    DropNewest,
    /// The oldest queued delivery is dropped to make room (confirmations and
    /// lag reports are never dropped); the queue keeps the newest ones.
    DropOldest,
    /// Redis's behaviour (`client-output-buffer-limit pubsub`): the
    /// subscriber is unsubscribed from everything; it receives what it had
    /// queued, then a [`Message::Lagged`] counting every delivery it missed
    /// from the overflow on, then `recv` returns
    /// [`RecvError::Overflowed`](crate::RecvError::Overflowed).
    Disconnect,
}

/// The bytes a byte-like payload counts for against a bytes bound (a
/// subscriber's, or the broker's limit on retained messages).
pub(crate) fn payload_len<P: AsRef<[u8]>>(payload: &P) -> usize {
    payload.as_ref().len()
}

/// A bytes bound and how to weigh a payload.
pub(crate) type BytesBound<P> = Option<(usize, fn(&P) -> usize)>;

/// A bounded subscriber's limits, fixed when it is built.
pub(crate) struct Bound<P> {
    /// Deliveries queued at once (at least 1).
    pub(crate) capacity: usize,
    /// Payload bytes queued at once, and how to weigh a payload.
    pub(crate) bytes: BytesBound<P>,
    pub(crate) policy: Overflow,
    /// Publishers blocked for room (`Block`, `BlockFor`) wait here.
    pub(crate) writable: Condvar,
}

impl<P> Bound<P> {
    /// The bytes one delivery counts for: its payload's length, at least 1
    /// (so a bytes bound also bounds empty payloads); 0 without a bytes
    /// bound.
    fn weigh(&self, message: &Message<P>) -> usize {
        match (&self.bytes, message.payload()) {
            (Some((_, weigh)), Some(payload)) => weigh(payload).max(1),
            _ => 0,
        }
    }

    fn blocks(&self) -> bool {
        matches!(self.policy, Overflow::Block | Overflow::BlockFor(_))
    }
}

/// Why a mailbox accepts no more deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Overflowed under `Disconnect`: being evicted. Deliveries still
    /// offered (by publishes that planned before the eviction removed its
    /// subscriptions) are counted and reported as lost.
    Overflowed,
    /// Evicted: every subscription is gone, nothing more will arrive, and
    /// `Overflowed` is the end of the stream once it is drained.
    Evicted,
    /// Every broker handle is gone.
    BrokerGone,
    /// The subscriber was dropped.
    Dropped,
}

/// Why nothing could be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Empty {
    /// Nothing queued now (or not before the deadline).
    Now,
    /// Nothing will ever be queued again: the broker is gone.
    Disconnected,
    /// Nothing will ever be queued again: evicted for overflow.
    Overflowed,
}

/// How long a publisher may wait for room in this publish.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// Not at all: used when no subscriber of the publish can block.
    None,
    /// Until this instant (`None`: forever). `BlockFor` subscribers cut it
    /// short with the publish's own deadline.
    Until(Option<Instant>),
}

/// What became of a delivery offered through
/// [`offer_single`](Mailbox::offer_single).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Single {
    /// Queued: one delivery counted and queued, nothing else.
    Queued,
    /// The subscriber is gone: nothing counted.
    Gone,
    /// Not taken here (bounded, overflowed, or stamped after this publish's
    /// table version): offer it through the general path.
    Declined,
}

/// What became of a group of deliveries offered to a mailbox.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Deliveries offered (Redis's count: queued or dropped).
    pub(crate) counted: u64,
    /// Deliveries queued.
    pub(crate) queued: u64,
    /// Deliveries of this group dropped by the policy.
    pub(crate) dropped: u64,
    /// Older deliveries pushed out to make room (`DropOldest`).
    pub(crate) pushed_out: u64,
    /// The subscriber overflowed under `Disconnect` with this group: the
    /// caller must evict it once it holds no lock.
    pub(crate) evict: bool,
}

/// The refusal of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The subscriber is gone: nothing offered, nothing counted.
    Gone,
    /// The subscriber's pattern subscriptions changed after the publisher
    /// read the pattern table: the publisher must recompute this
    /// subscriber's pattern deliveries and offer again.
    Stale,
}

/// A group of deliveries for one subscriber from one publish.
pub(crate) type Group<P> = SmallVec<[Message<P>; 2]>;

struct Inner<P> {
    items: VecDeque<Message<P>>,
    /// Deliveries in `items` (what `capacity` bounds; counted for bounded
    /// subscribers only).
    deliveries: usize,
    /// Payload bytes of the deliveries in `items` (with a bytes bound).
    bytes: usize,
    state: State,
    /// The pattern-table version of this subscriber's latest pattern
    /// (un)subscription; a publisher that read an older table is stale here.
    stamp: u64,
    dropped: u64,
    recv_waiters: u32,
    send_waiters: u32,
    /// What few subscribers need, made on first use (the others pay a
    /// pointer).
    rare: Option<Box<Rare>>,
    /// Registered with the sleepers of the log this subscriber reads (until
    /// the next append wakes it).
    log_sleeper: bool,
    /// The readiness handle was asked for: ring it on every wake-up (a
    /// flag here, so that a publish does not read the handle's line).
    ring: bool,
}

/// The parts of a mailbox's state that few subscribers use.
#[derive(Default)]
struct Rare {
    /// Patterns held that were joined with history (retained messages),
    /// with the table version of the join.
    history: Vec<(Name, u64)>,
    /// Async receivers waiting.
    tasks: Tasks,
}

/// Async receivers waiting, by the id their future registered with.
#[derive(Default)]
struct Tasks {
    waiting: Vec<(u64, Waker)>,
    /// The last id handed out. Ids are never reused (a future keeps its id
    /// across polls, registered or not), so [`Rare`] stays once an async
    /// receiver has registered.
    next: u64,
}

impl<P> Inner<P> {
    /// Removes the async registration `id`.
    fn unregister(&mut self, id: u64) {
        if let Some(rare) = &mut self.rare {
            rare.tasks.waiting.retain(|(waiting, _)| *waiting != id);
        }
    }
}

/// A subscriber's place in the log of its only channel.
struct LogReader<P> {
    cursor: Cursor<P, Mailbox<P>>,
    channel: Name,
    /// A shard channel (`smessage`) rather than a channel (`message`).
    shard: bool,
}

impl<P: Clone> LogReader<P> {
    /// The next entry as the item the subscriber receives, unless the
    /// mailbox's queue (`queued`, its count) holds anything; counts it in
    /// `received` when it is a delivery.
    ///
    /// The count is read *after* the entry is seen. An item still being
    /// queued for this subscriber comes before a later append to the log
    /// (a publish that queues it finishes before the next publish on the
    /// channel appends), and the acquire load that sees the appended entry
    /// makes that item's count visible: looked at first, the count could
    /// say "empty" just before an older publish queued its item, and a
    /// newer entry then passed it.
    #[inline]
    fn next_unless_queued(&mut self, received: &mut u64, queued: &AtomicU32) -> Option<Message<P>> {
        self.next_if(received, || queued.load(Ordering::Acquire) == 0)
    }

    /// The next entry as an item, whatever is queued (for moving what is
    /// left of the log to the queue); counts it in `received` when it is a
    /// delivery.
    fn next(&mut self, received: &mut u64) -> Option<Message<P>> {
        self.next_if(received, || true)
    }

    /// The next entry as an item if there is one and, asked once it is
    /// seen, `take` agrees.
    #[inline]
    fn next_if(&mut self, received: &mut u64, take: impl FnOnce() -> bool) -> Option<Message<P>> {
        let entry = self.cursor.peek()?;
        if !take() {
            return None;
        }
        // The payload is cloned before the cursor moves past it: a clone
        // that panics leaves the entry unread and uncounted.
        let message = match entry {
            Entry::Payload(payload) => {
                LogReader::message(&self.channel, self.shard, payload.clone())
            }
            Entry::Lost(missed) => Message::Lagged { missed: *missed },
        };
        self.cursor.advance();
        *received += u64::from(message.is_delivery());
        Some(message)
    }

    /// A payload of this log as the item the subscriber receives.
    #[inline]
    fn message(channel: &Name, shard: bool, payload: P) -> Message<P> {
        let channel = channel.clone();
        if shard {
            Message::SMessage { channel, payload }
        } else {
            Message::Message { channel, payload }
        }
    }
}

/// What receivers take items from without the mailbox lock.
struct Taken<P> {
    /// Items moved out of the queue, oldest first, in chunks (unbounded
    /// subscribers only: a bound counts what is queued, so a bounded
    /// subscriber's items stay in the queue until received; see
    /// `batch.rs`). Read before the queue, which holds only newer items.
    /// Made on the first move; once drained it keeps the room of its last
    /// chunk for the next swap, until a receive finds nothing (a pointer the
    /// rest of the time).
    batch: Option<Box<Batch<Message<P>>>>,
    /// The log of the subscriber's only channel, read after the queue.
    log: Option<Box<LogReader<P>>>,
    /// Deliveries received, by any path.
    received: u64,
}

impl<P: Clone> Taken<P> {
    /// The next item of the batch, then of the log unless the queue holds
    /// anything (`queued`, the mailbox's count; `None`: not the log, the
    /// queue may hold items that come before the log's).
    /// [`Mailbox::take`]'s fast path repeats this, written out: change both
    /// together.
    #[inline]
    fn next(&mut self, queued: Option<&AtomicU32>) -> Option<Message<P>> {
        if let Some(batch) = &mut self.batch {
            if let Some(message) = batch.pop_front() {
                self.received += u64::from(message.is_delivery());
                return Some(message);
            }
        }
        self.log
            .as_mut()?
            .next_unless_queued(&mut self.received, queued?)
    }
}

/// How many times a receiver about to sleep yields its thread, looking
/// for an item after each yield, before it takes the mailbox lock to sleep
/// (see [`Mailbox::look_before_sleeping`]).
const LOOKS: usize = 16;

/// The longest a receiver looks before it sleeps (or takes a queue of
/// [`MANY`] items). A yield is about a microsecond on an idle
/// machine, but on a busy one it may give the processor away for a whole
/// time slice: the first look past this ends the looking.
const LOOKING: Duration = Duration::from_micros(50);

/// Items from which a queue counts as *many* for a receiver about to
/// sleep (see [`Mailbox::look_before_sleeping`]).
const MANY: usize = 8;

/// How long a receiver that finds [`MANY`] items queued watches whether a
/// publisher moves them to the batch (a stream is flowing: a chunk fills
/// within a few microseconds) before it takes them.
const WATCH: Duration = Duration::from_micros(4);

/// The receivers' own lock. Receivers take it without the mailbox lock
/// (the receive fast path). It is held while taking one item (including the
/// payload's clone, and freeing a segment of the log that was passed), while
/// registering with the log, and for a look at the counts; never while
/// blocked on a condition variable. A plain spin lock (one atomic operation
/// to take, a store to release) beats a parking mutex here. Lock order:
/// `Mailbox::inner`, then this, then a log's sleepers mutex.
type ReaderLock<P> = spin::mutex::SpinMutex<Taken<P>>;

/// One subscriber's stream and everything about it (see the module docs).
///
/// Laid out in three parts, in this order (`repr(C)`), so that the line the
/// receivers write on every receive is never one the publishers read or
/// write on every publish: the receivers' side (`reader`); fields that
/// neither touches per message; then the publishers' side (the mailbox
/// lock and what a publish reads). A mailbox lives in an `Arc` allocation,
/// which starts with 16 bytes of counts and which the system allocator of a
/// 64-bit target aligns to 16 bytes: the receivers' side then ends on any
/// of four places in a 64-byte line, and the 48 bytes of the middle part
/// keep the publishers' side off that line in all four (a unit test holds
/// the offsets). An allocator that aligns less may let the two sides share
/// a line: slower, never wrong. Sharing it cost a
/// two-thread stream of one subscriber about a quarter of its time: 121–130
/// ns per message against 90–102 with the two sides apart.
#[repr(C)]
pub(crate) struct Mailbox<P> {
    // ---- the receivers' side ----
    /// The batch (read before `inner.items`), the cursor of the log this
    /// subscriber reads instead of having deliveries queued (read after
    /// `inner.items`; see `log.rs`), and `received`.
    reader: ReaderLock<P>,

    // ---- touched by neither side per message ----
    /// The subscriber's names. Locked for a whole (un)subscribe call, and by
    /// an overflow eviction (which runs on a publisher's thread) or a drop
    /// while it removes them; always before any registry lock.
    pub(crate) held: Mutex<Held>,
    /// The readiness handle for `select!`, made on first use: holds one
    /// token while something may be waiting. Publishers ring it once
    /// `Inner::ring` says so.
    #[allow(clippy::type_complexity)]
    doorbell: std::sync::OnceLock<Box<(Sender<()>, Receiver<()>)>>,
    /// Receivers blocked in `recv` wait here (publishers notify it only
    /// when `Inner::recv_waiters` says one waits).
    readable: Condvar,
    /// This mailbox's place in the registry's list of live mailboxes
    /// (changed only under that list's lock; 32 bits, so that it shares a
    /// word with the flags).
    pub(crate) slot: AtomicU32,
    /// Set once the readiness handle was asked for: publishers must then
    /// ring it, so this subscriber never reads from a channel log.
    no_log: AtomicBool,
    /// Whether subscribe/unsubscribe confirmations are queued.
    confirmations: bool,

    // ---- the publishers' side ----
    inner: Mutex<Inner<P>>,
    bound: Option<Box<Bound<P>>>,
    /// The broker's spare queue room (see `spare.rs`), and the shard of it
    /// this mailbox uses.
    spare: Arc<Spare<Message<P>>>,
    spare_shard: u8,
    /// How many items `inner.items` holds, counted up to [`MANY`], written
    /// under the mailbox lock when it changes: a receiver that sees 0 after
    /// it has seen the log's next entry may take that entry without the lock
    /// (see [`LogReader::next_unless_queued`]). (Anything queued while the subscriber
    /// reads a log came before its cursor: what was queued before the join.
    /// Later items go to the log, until the subscriber leaves it; see
    /// `Registry::leave_log`.) A receiver about to sleep also looks at it
    /// (see [`Mailbox::look_before_sleeping`]).
    queued: AtomicU32,
}

impl<P> fmt::Debug for Mailbox<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Mailbox")
            .field("queued", &inner.items.len())
            .field("state", &inner.state)
            .field("policy", &self.bound.as_ref().map(|bound| bound.policy))
            .finish_non_exhaustive()
    }
}

/// Wake-ups to run once the mailbox lock is released.
type Wakers = SmallVec<[Waker; 1]>;

impl<P> Mailbox<P> {
    pub(crate) fn new(
        bound: Option<Bound<P>>,
        confirmations: bool,
        spare: (Arc<Spare<Message<P>>>, u8),
    ) -> Self {
        Mailbox {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                deliveries: 0,
                bytes: 0,
                state: State::Open,
                stamp: 0,
                dropped: 0,
                recv_waiters: 0,
                send_waiters: 0,
                rare: None,
                log_sleeper: false,
                ring: false,
            }),
            queued: AtomicU32::new(0),
            reader: ReaderLock::new(Taken {
                batch: None,
                log: None,
                received: 0,
            }),
            slot: AtomicU32::new(0),
            spare: spare.0,
            spare_shard: spare.1,
            readable: Condvar::new(),
            bound: bound.map(Box::new),
            confirmations,
            held: Mutex::new(Held::default()),
            doorbell: std::sync::OnceLock::new(),
            no_log: AtomicBool::new(false),
        }
    }

    // ---- channel logs -------------------------------------------------------

    /// Whether this subscriber may read a channel's log: unbounded (a bound
    /// must see every delivery) and without a readiness handle.
    pub(crate) fn may_read_log(&self) -> bool {
        self.bound.is_none() && !self.no_log.load(Ordering::Acquire)
    }

    /// From now on, never read a channel log (the readiness handle is in use).
    pub(crate) fn forbid_log(&self) {
        // Under the mailbox lock, as `join_log` checks it: a join either
        // comes first (and the caller then leaves the log again) or is
        // refused.
        let _inner = self.inner.lock();
        self.no_log.store(true, Ordering::Release);
    }

    /// Starts reading `channel` from its log at `cursor`. Called under the
    /// channel's stripe lock, right after the subscribe confirmation, or
    /// when another subscriber's join moves this one onto the log.
    /// Returns false, changing nothing, when the readiness handle was asked
    /// for since the caller looked (`may_read_log`).
    pub(crate) fn join_log(
        &self,
        cursor: Cursor<P, Mailbox<P>>,
        channel: Name,
        shard: bool,
    ) -> bool {
        let inner = self.inner.lock();
        if self.no_log.load(Ordering::Acquire) {
            return false;
        }
        self.lock_reader().log = Some(Box::new(LogReader {
            cursor,
            channel,
            shard,
        }));
        // Receivers already waiting are registered with this mailbox only,
        // and appends wake the log's sleepers only: wake them all, so that
        // they look again and register with the log before they wait.
        self.readable.notify_all();
        self.wake_and_unlock(inner);
        true
    }

    /// Takes the receivers' lock (held briefly by whoever has it: spin,
    /// then yield).
    fn lock_reader(&self) -> spin::mutex::SpinMutexGuard<'_, Taken<P>> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if let Some(reader) = self.reader.try_lock() {
                return reader;
            }
            backoff.snooze();
        }
    }

    /// Gives an empty queue without room the broker's spare room, if any
    /// (before an item is pushed; see `spare.rs`).
    #[inline]
    fn room(&self, inner: &mut Inner<P>) {
        self.spare.fill(self.spare_shard, &mut inner.items);
    }

    /// Queues one item at the back (counting nothing: the caller counts
    /// deliveries). An unbounded subscriber's full queue first moves to the
    /// receivers' batch, whole (see `batch.rs`).
    #[inline]
    fn queue_item(&self, inner: &mut Inner<P>, message: Message<P>) {
        self.queue_made(inner, || message);
    }

    /// [`queue_item`](Mailbox::queue_item) of the item `make` builds, in
    /// place in the queue: built first and then pushed, the 88-byte item
    /// was copied through the stack, and the copy stalled on the narrow
    /// stores that built it (store forwarding).
    #[allow(clippy::inline_always)] // the point: see above
    #[inline(always)]
    fn queue_made(&self, inner: &mut Inner<P>, make: impl FnOnce() -> Message<P>) {
        if inner.items.len() >= CHUNK
            && inner.items.len() == inner.items.capacity()
            && self.bound.is_none()
        {
            self.move_chunk(inner);
        }
        inner.items.push_back(make());
    }

    /// Moves the full queue to the back of the receivers' batch (everything
    /// in the batch is older) and starts a new chunk.
    #[cold]
    #[inline(never)]
    fn move_chunk(&self, inner: &mut Inner<P>) {
        let mut taken = self.lock_reader();
        let batch = taken.batch.get_or_insert_with(Box::default);
        if batch.is_empty() {
            // The receivers keep up: the queue takes the emptied batch's
            // room, as a receiver's swap does.
            batch.take_all(&mut inner.items);
            return;
        }
        // A backlog grows by chunks twice the last one's size, up to
        // MAX_CHUNK.
        let room = (inner.items.capacity() * 2).clamp(CHUNK, MAX_CHUNK);
        let full = std::mem::replace(&mut inner.items, VecDeque::with_capacity(room));
        batch.push_chunk(full);
    }

    /// Republishes how much the queue holds, for receivers that do not take
    /// the mailbox lock; called under the mailbox lock after every change to
    /// `items`.
    fn sync_queued(&self, inner: &Inner<P>) {
        // Counted up to MANY and written only when it changes: a publisher
        // adding to a longer queue writes nothing here.
        #[allow(clippy::cast_possible_truncation)] // at most MANY
        let len = inner.items.len().min(MANY) as u32;
        if self.queued.load(Ordering::Relaxed) != len {
            self.queued.store(len, Ordering::Release);
        }
    }

    /// How many items are queued, up to [`MANY`] (looked at without the
    /// mailbox lock).
    #[inline]
    fn queued_len(&self) -> usize {
        self.queued.load(Ordering::Acquire) as usize
    }

    /// The channel whose log this subscriber reads (its name, and whether it
    /// is a shard channel).
    pub(crate) fn log_channel(&self) -> Option<(Name, bool)> {
        self.lock_reader()
            .log
            .as_ref()
            .map(|reader| (reader.channel.clone(), reader.shard))
    }

    /// Whether a publisher may have to wait for this subscriber.
    pub(crate) fn blocks(&self) -> bool {
        self.bound.as_ref().is_some_and(|bound| bound.blocks())
    }

    /// The `BlockFor` patience, if that is the policy.
    pub(crate) fn patience(&self) -> Option<Duration> {
        match self.bound.as_ref().map(|bound| bound.policy) {
            Some(Overflow::BlockFor(patience)) => Some(patience),
            _ => None,
        }
    }

    // ---- publishers ---------------------------------------------------------

    /// Offers one publish's deliveries to this subscriber, as one group:
    /// they are queued next to each other, with nothing between them.
    /// `stamp` is the pattern-table version the publisher computed them
    /// from. On success the group is emptied.
    #[allow(clippy::too_many_lines)] // one lock scope, every policy side by side
    pub(crate) fn offer(
        &self,
        group: &mut Group<P>,
        stamp: u64,
        patience: Patience,
    ) -> Result<Offered, Refused> {
        let mut inner = self.inner.lock();
        let mut offered = Offered {
            counted: group.len() as u64,
            ..Offered::default()
        };
        loop {
            if matches!(
                inner.state,
                State::Evicted | State::BrokerGone | State::Dropped
            ) {
                return Err(Refused::Gone);
            }
            if stamp < inner.stamp {
                return Err(Refused::Stale);
            }
            if group.is_empty() {
                // Recomputed to nothing (its subscriptions went meanwhile).
                return Ok(offered);
            }
            self.room(&mut inner);
            if inner.state == State::Overflowed {
                // Marked for eviction: counted, as Redis counts a client it
                // is about to close, and reported as lost.
                offered.dropped = group.len() as u64;
                group.clear();
                Self::lose(&mut inner, offered.dropped);
                break;
            }
            let Some(bound) = &self.bound else {
                offered.queued = group.len() as u64;
                for message in group.drain(..) {
                    self.queue_item(&mut inner, message);
                }
                break;
            };
            if bound.blocks() && !Self::fits_all(&inner, bound, group) {
                let deadline = match patience {
                    Patience::Until(deadline) => deadline,
                    Patience::None => {
                        debug_assert!(false, "a blocking subscriber offered without patience");
                        Some(Instant::now())
                    }
                };
                if !deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    inner.send_waiters += 1;
                    let timed_out = match deadline {
                        None => {
                            bound.writable.wait(&mut inner);
                            false
                        }
                        Some(deadline) => {
                            bound.writable.wait_until(&mut inner, deadline).timed_out()
                        }
                    };
                    inner.send_waiters -= 1;
                    if !timed_out {
                        // Room, a state change or a spurious wake-up: look
                        // again from the top (the stamp may have moved).
                        continue;
                    }
                    if inner.state != State::Open {
                        continue;
                    }
                    if stamp < inner.stamp {
                        return Err(Refused::Stale);
                    }
                }
                // Out of patience: drop what does not fit, as DropNewest.
            }
            if Self::fits_all(&inner, bound, group) {
                Self::push_all(&mut inner, bound, group, &mut offered);
            } else {
                match bound.policy {
                    Overflow::Disconnect => {
                        inner.state = State::Overflowed;
                        offered.dropped = group.len() as u64;
                        offered.evict = true;
                        group.clear();
                        Self::lose(&mut inner, offered.dropped);
                        self.notify_writers();
                    }
                    Overflow::DropOldest => {
                        while !Self::fits_all(&inner, bound, group)
                            && Self::push_out_oldest(&mut inner, bound)
                        {
                            offered.pushed_out += 1;
                        }
                        Self::push_all(&mut inner, bound, group, &mut offered);
                    }
                    Overflow::DropNewest | Overflow::Block | Overflow::BlockFor(_) => {
                        for message in group.drain(..) {
                            Self::push_or_lose(&mut inner, bound, message, &mut offered);
                        }
                    }
                }
            }
            inner.dropped += offered.pushed_out;
            break;
        }
        self.sync_queued(&inner);
        self.wake_and_unlock(inner);
        Ok(offered)
    }

    /// Offers a publish's one delivery to an unbounded subscriber, built by
    /// `make` in place in its queue (no group, no copy between frames).
    /// [`Single::Declined`], with `make` not called, where
    /// [`offer`](Mailbox::offer) must decide: a bounded or overflowed
    /// subscriber, or a stale `stamp`.
    #[inline]
    pub(crate) fn offer_single(&self, stamp: u64, make: impl FnOnce() -> Message<P>) -> Single {
        if self.bound.is_some() {
            return Single::Declined;
        }
        let mut inner = self.inner.lock();
        match inner.state {
            State::Evicted | State::BrokerGone | State::Dropped => {
                return Single::Gone;
            }
            // Only a bounded subscriber overflows.
            State::Overflowed => return Single::Declined,
            State::Open => {}
        }
        if stamp < inner.stamp {
            return Single::Declined;
        }
        self.room(&mut inner);
        self.queue_made(&mut inner, make);
        self.sync_queued(&inner);
        self.wake_and_unlock(inner);
        Single::Queued
    }

    fn push_all(
        inner: &mut Inner<P>,
        bound: &Bound<P>,
        group: &mut Group<P>,
        offered: &mut Offered,
    ) {
        for message in group.drain(..) {
            let weight = bound.weigh(&message);
            Self::push_delivery(inner, message, weight);
            offered.queued += 1;
        }
    }

    /// Queues one delivery if it fits, or drops it and reports the loss.
    fn push_or_lose(
        inner: &mut Inner<P>,
        bound: &Bound<P>,
        message: Message<P>,
        offered: &mut Offered,
    ) {
        let weight = bound.weigh(&message);
        if Self::fits(inner, bound, weight) {
            Self::push_delivery(inner, message, weight);
            offered.queued += 1;
        } else {
            offered.dropped += 1;
            Self::lose(inner, 1);
        }
    }

    fn push_delivery(inner: &mut Inner<P>, message: Message<P>, weight: usize) {
        inner.items.push_back(message);
        inner.deliveries += 1;
        inner.bytes += weight;
    }

    /// Whether one more delivery of `weight` bytes fits. Anything fits into
    /// a queue holding no delivery, so nothing can be stuck forever.
    fn fits(inner: &Inner<P>, bound: &Bound<P>, weight: usize) -> bool {
        inner.deliveries == 0
            || (inner.deliveries < bound.capacity
                && bound
                    .bytes
                    .map_or(true, |(max, _)| inner.bytes + weight <= max))
    }

    /// Whether the whole group fits at once.
    fn fits_all(inner: &Inner<P>, bound: &Bound<P>, group: &Group<P>) -> bool {
        if inner.deliveries == 0 {
            return true;
        }
        let weight: usize = group.iter().map(|message| bound.weigh(message)).sum();
        inner.deliveries + group.len() <= bound.capacity
            && bound
                .bytes
                .map_or(true, |(max, _)| inner.bytes + weight <= max)
    }

    /// Records `missed` lost deliveries at the back of the stream.
    fn lose(inner: &mut Inner<P>, missed: u64) {
        if missed == 0 {
            return;
        }
        inner.dropped += missed;
        if let Some(Message::Lagged { missed: reported }) = inner.items.back_mut() {
            *reported += missed;
        } else {
            inner.items.push_back(Message::Lagged { missed });
        }
    }

    /// `DropOldest`: removes the oldest queued delivery, leaving a lag
    /// report in its place; returns false when no delivery is queued.
    fn push_out_oldest(inner: &mut Inner<P>, bound: &Bound<P>) -> bool {
        let Some(at) = inner.items.iter().position(Message::is_delivery) else {
            return false;
        };
        let oldest = inner.items.remove(at).expect("found above");
        inner.deliveries -= 1;
        inner.bytes -= bound.weigh(&oldest);
        drop(oldest);
        if at > 0 {
            if let Some(Message::Lagged { missed }) = inner.items.get_mut(at - 1) {
                *missed += 1;
                return true;
            }
        }
        if let Some(Message::Lagged { missed }) = inner.items.get_mut(at) {
            *missed += 1;
        } else {
            inner.items.insert(at, Message::Lagged { missed: 1 });
        }
        true
    }

    /// Queues a confirmation (never bounded, never dropped). `stamp`, for a
    /// pattern (un)subscription, is the pattern-table version that holds
    /// the change.
    pub(crate) fn confirm(&self, message: Message<P>, stamp: Option<u64>) {
        let mut inner = self.inner.lock();
        if let Some(stamp) = stamp {
            self.restamp(&mut inner, stamp);
        }
        if !self.confirmations {
            return;
        }
        self.room(&mut inner);
        self.queue_item(&mut inner, message);
        self.sync_queued(&inner);
        self.wake_and_unlock(inner);
    }

    /// Reports `missed` deliveries lost before they reached this broker (the
    /// Redis bridge's gap detection) at the back of the stream. Not counted
    /// in `dropped`, which is this subscriber's own overflow policy's.
    #[cfg(feature = "redis")]
    pub(crate) fn report_lagged(&self, missed: u64) {
        let mut inner = self.inner.lock();
        if missed == 0 || matches!(inner.state, State::Dropped | State::BrokerGone) {
            return;
        }
        self.room(&mut inner);
        if let Some(Message::Lagged { missed: reported }) = inner.items.back_mut() {
            *reported += missed;
        } else {
            self.queue_item(&mut inner, Message::Lagged { missed });
        }
        self.sync_queued(&inner);
        self.wake_and_unlock(inner);
    }

    /// Queues a subscribe confirmation and, right behind it under the same
    /// lock, the retained messages of a late joiner (see `retained`). They
    /// are deliveries: they count against the bound and go through the
    /// policy, except that nothing waits and nobody is evicted (the caller
    /// is the subscriber's own subscribe call, holding registry locks): a
    /// retained message that does not fit is pushed out of the way under
    /// `DropOldest` and dropped under every other policy, and reported as
    /// [`Message::Lagged`] either way.
    /// `pattern`: a pattern joined with history, and the table version
    /// that holds the join.
    pub(crate) fn confirm_retained(
        &self,
        confirmation: Message<P>,
        retained: Vec<Message<P>>,
        pattern: Option<(&Name, u64)>,
    ) -> Offered {
        let mut inner = self.inner.lock();
        self.room(&mut inner);
        if let Some((pattern, stamp)) = pattern {
            self.restamp(&mut inner, stamp);
            let history = &mut inner.rare.get_or_insert_with(Box::default).history;
            history.retain(|(held, _)| held != pattern);
            history.push((pattern.clone(), stamp));
        }
        if self.confirmations {
            self.queue_item(&mut inner, confirmation);
        }
        let mut offered = Offered::default();
        if inner.state == State::Open {
            offered.counted = retained.len() as u64;
            for message in retained {
                let Some(bound) = &self.bound else {
                    self.queue_item(&mut inner, message);
                    offered.queued += 1;
                    continue;
                };
                let weight = bound.weigh(&message);
                if bound.policy == Overflow::DropOldest {
                    while !Self::fits(&inner, bound, weight)
                        && Self::push_out_oldest(&mut inner, bound)
                    {
                        offered.pushed_out += 1;
                    }
                }
                Self::push_or_lose(&mut inner, bound, message, &mut offered);
            }
            inner.dropped += offered.pushed_out;
        }
        self.sync_queued(&inner);
        self.wake_and_unlock(inner);
        offered
    }

    /// Whether `pattern` was joined with history at a table version later
    /// than `version`.
    pub(crate) fn joined_with_history_after(&self, pattern: &Name, version: u64) -> bool {
        let inner = self.inner.lock();
        inner.rare.as_ref().is_some_and(|rare| {
            rare.history
                .iter()
                .any(|(held, at)| held == pattern && *at > version)
        })
    }

    /// Forgets that `pattern` was joined with history (it was released).
    pub(crate) fn forget_history(&self, pattern: &[u8]) {
        let mut inner = self.inner.lock();
        if let Some(rare) = &mut inner.rare {
            rare.history.retain(|(held, _)| held.as_bytes() != pattern);
            if rare.history.is_empty() && rare.tasks.next == 0 {
                inner.rare = None;
            }
        }
    }

    /// Records a pattern (un)subscription made without a confirmation (a
    /// drop or an eviction), so that stale publishers recompute.
    pub(crate) fn stamp(&self, stamp: u64) {
        let mut inner = self.inner.lock();
        self.restamp(&mut inner, stamp);
    }

    /// Moves the stamp on; a publisher waiting for room with a group from an
    /// older table must wake up to recompute it (it may have shrunk, even
    /// to nothing).
    fn restamp(&self, inner: &mut Inner<P>, stamp: u64) {
        if stamp > inner.stamp {
            inner.stamp = stamp;
            if inner.send_waiters > 0 {
                self.notify_writers();
            }
        }
    }

    /// Wakes the publishers waiting for room (only bounded subscribers have
    /// any).
    fn notify_writers(&self) {
        if let Some(bound) = &self.bound {
            bound.writable.notify_all();
        }
    }

    /// The eviction is complete: nothing more will arrive.
    pub(crate) fn evicted(&self) {
        let mut inner = self.inner.lock();
        inner.state = State::Evicted;
        self.notify_writers();
        self.readable.notify_all();
        self.wake_and_unlock(inner);
    }

    /// [`wake_receivers`](Mailbox::wake_receivers), then releases the
    /// mailbox lock and wakes the async tasks (never under the lock).
    #[inline]
    fn wake_and_unlock(&self, mut inner: MutexGuard<'_, Inner<P>>) {
        let wakers = self.wake_receivers(&mut inner);
        drop(inner);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes whoever waits to receive: one blocked thread (it passes the
    /// wake-up on if more is left), every async task, the readiness handle.
    fn wake_receivers(&self, inner: &mut Inner<P>) -> Wakers {
        if inner.recv_waiters > 0 {
            self.readable.notify_one();
        }
        if inner.ring {
            if let Some(doorbell) = self.doorbell.get() {
                let _ = doorbell.0.try_send(());
            }
        }
        match &mut inner.rare {
            Some(rare) if !rare.tasks.waiting.is_empty() => rare
                .tasks
                .waiting
                .drain(..)
                .map(|(_, waker)| waker)
                .collect(),
            _ => Wakers::new(),
        }
    }

    /// Every broker handle is gone: wake every receiver so it can see the
    /// end once it has drained the queue.
    pub(crate) fn broker_gone(&self) {
        self.close(State::BrokerGone);
    }

    /// The subscriber is going away: release every publisher waiting for it.
    pub(crate) fn subscriber_dropped(&self) {
        self.close(State::Dropped);
    }

    fn close(&self, state: State) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open || state == State::Dropped {
            inner.state = state;
        }
        // Dropped: nobody can receive any more, so what was waiting goes
        // now, not when the last reference to the mailbox does (a stripe's
        // memo of pattern matches may hold one until its next publish). A
        // log cursor goes when the registry takes the subscriber off the
        // channel, which counts its readers.
        let unread = (state == State::Dropped).then(|| {
            inner.deliveries = 0;
            inner.bytes = 0;
            let items = std::mem::take(&mut inner.items);
            self.sync_queued(&inner);
            (items, self.lock_reader().batch.take())
        });
        self.readable.notify_all();
        self.notify_writers();
        let wakers = self.wake_receivers(&mut inner);
        drop(inner);
        drop(unread);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Whether this subscriber was evicted for overflow.
    pub(crate) fn overflowed(&self) -> bool {
        matches!(self.inner.lock().state, State::Overflowed | State::Evicted)
    }
}

impl<P> Mailbox<P> {
    /// Stops reading a channel log, dropping what was not read (the
    /// subscriber is going away).
    pub(crate) fn drop_log(&self) {
        let mut inner = self.inner.lock();
        self.lock_reader().log = None;
        inner.log_sleeper = false;
    }

    /// Before waiting: makes sure the log this subscriber reads (if any)
    /// will wake it; returns whether an entry arrived meanwhile.
    fn sleep_on_log(self: &Arc<Self>, inner: &mut Inner<P>) -> bool {
        let taken = self.lock_reader();
        let Some(reader) = taken.log.as_ref() else {
            return false;
        };
        if inner.log_sleeper {
            return reader.cursor.has_next();
        }
        inner.log_sleeper = true;
        reader.cursor.sleep(self)
    }

    /// Removes an async registration (its future was dropped).
    pub(crate) fn cancel(&self, slot: &mut Option<u64>) {
        if let Some(id) = slot.take() {
            self.inner.lock().unregister(id);
        }
    }
}

impl<P> Wake for Mailbox<P> {
    /// A log this subscriber reads grew.
    fn wake(&self) {
        let mut inner = self.inner.lock();
        inner.log_sleeper = false;
        self.wake_and_unlock(inner);
    }
}

impl<P: Clone> Mailbox<P> {
    /// Stops reading a channel log: what the log holds beyond the cursor is
    /// queued here, in order. Called under the channel's stripe lock.
    pub(crate) fn leave_log(&self) {
        let mut inner = self.inner.lock();
        let Some(mut reader) = self.lock_reader().log.take() else {
            return;
        };
        inner.log_sleeper = false;
        self.room(&mut inner);
        // Behind whatever the batch and the queue hold: it is newer.
        // Moved, not received: counted when taken from the queue.
        let mut moved = 0;
        while let Some(message) = reader.next(&mut moved) {
            self.queue_item(&mut inner, message);
        }
        self.sync_queued(&inner);
    }

    // ---- receivers ----------------------------------------------------------

    /// Takes the next item, waiting until `deadline` (`None`: forever) when
    /// `wait` is set; `empty` says what nothing to take becomes. Inlined
    /// into each receive method, so that the fast path builds the message
    /// in the caller's result (an 88-byte message copied between frames
    /// costs as much as the rest of a receive). The fast path repeats
    /// [`Taken::next`] written out: calling it, even inlined, and passing
    /// its result on measured 1.5–2 ns more per delivery (29.5–30 against
    /// 27.7–28.4 ns, one thread, fan-out to 100).
    #[allow(clippy::inline_always)] // measured: see above
    #[inline(always)]
    pub(crate) fn take<E>(
        self: &Arc<Self>,
        wait: bool,
        deadline: Option<Instant>,
        empty: impl FnOnce(Empty) -> E,
    ) -> Result<Message<P>, E> {
        if let Some(mut taken) = self.reader.try_lock() {
            let Taken {
                batch,
                log,
                received,
            } = &mut *taken;
            if let Some(batch) = batch {
                if let Some(message) = batch.pop_front() {
                    *received += u64::from(message.is_delivery());
                    return Ok(message);
                }
            }
            if let Some(message) = log
                .as_mut()
                .and_then(|reader| reader.next_unless_queued(received, &self.queued))
            {
                return Ok(message);
            }
        }
        match self.take_slow(wait, deadline) {
            Ok(message) => Ok(message),
            Err(end) => Err(empty(end)),
        }
    }

    /// [`take`](Mailbox::take) past the fast path.
    #[inline(never)]
    fn take_slow(
        self: &Arc<Self>,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<Message<P>, Empty> {
        // A bounded subscriber's queue never moves to the batch, so its
        // receivers' looks could find nothing; and items already queued are
        // taken now, unless they are many and still coming (a stream).
        if wait && self.bound.is_none() {
            let queued = self.queued_len();
            if queued == 0 || (queued >= MANY && self.still_coming(queued)) {
                if let Some(message) = self.look_before_sleeping(deadline) {
                    return Ok(message);
                }
            }
        }
        let mut inner = self.inner.lock();
        loop {
            if let Some(message) = self.pop(&mut inner) {
                self.hand_over(&mut inner);
                return Ok(message);
            }
            Self::ended(&inner)?;
            if !wait {
                self.release_room(&mut inner);
                return Err(Empty::Now);
            }
            if self.sleep_on_log(&mut inner) {
                continue; // it grew meanwhile
            }
            self.release_room(&mut inner);
            inner.recv_waiters += 1;
            let timed_out = match deadline {
                None => {
                    self.readable.wait(&mut inner);
                    false
                }
                Some(deadline) => self.readable.wait_until(&mut inner, deadline).timed_out(),
            };
            inner.recv_waiters -= 1;
            if timed_out {
                let taken = self.pop(&mut inner);
                self.hand_over(&mut inner);
                return taken.ok_or(Empty::Now).or_else(|empty| {
                    Self::ended(&inner)?;
                    Err(empty)
                });
            }
        }
    }

    /// Before an unbounded subscriber's receiver goes to sleep: yields its
    /// thread up to [`LOOKS`] times, and after each yield looks, without the
    /// mailbox lock, for what it can take. A chunk the publisher moved to
    /// the batch (or a log entry) is taken there and then. A queue of fewer
    /// than [`MANY`] items ends the looks: the caller takes the mailbox lock
    /// and takes them. A queue of more means a stream is flowing: the
    /// receiver keeps yielding until the publisher moves a full chunk over,
    /// so that the two threads meet at the mailbox lock about once per
    /// chunk, not once per item or two. The looks end when they run out,
    /// after [`LOOKING`], or when `deadline` passes.
    ///
    /// Called by a receiver that found nothing at all, or [`MANY`] items or
    /// more that a publisher moved to the batch within [`WATCH`]
    /// ([`Mailbox::still_coming`]). A receiver that finds fewer, or many
    /// that stay where they are, takes them at once (looking then cost a
    /// first receive after a burst of 40 6.7 µs, 3.5 ms on a busy machine;
    /// watching costs it 4 µs). A bounded subscriber's queue never moves to
    /// the batch: its receivers do not look (looking made a bounded drain
    /// 5.9 µs per message instead of 0.1).
    ///
    /// Measured on one subscriber fed from another thread (the `one_to_one`
    /// bench against a bare crossbeam channel, interleaved runs), and on a
    /// round trip between two threads through two channels (throwaway
    /// driver; crossbeam 0.9–1.05 µs):
    ///
    /// | before sleeping | `one_to_one` | round trip |
    /// |---|---|---|
    /// | nothing: sleeps at once | 1.08–1.25x | 27–44 µs |
    /// | spins (crossbeam's backoff) | 2.3x | — |
    /// | 2 looks, any item ends them | 4.0–4.7x | — |
    /// | 16 looks, any item ends them | 1.06–1.16x | 1.0–2.0 µs |
    /// | 16 looks, only a chunk ends them | 0.92–0.99x | 8.7–9.5 µs |
    /// | 16 looks, as above (a few items, or a chunk) | 0.95–0.99x | 1.1–2.1 µs |
    fn look_before_sleeping(&self, deadline: Option<Instant>) -> Option<Message<P>> {
        let until = Instant::now() + LOOKING;
        for _ in 0..LOOKS {
            std::thread::yield_now();
            if let Some(message) = self.take_fast() {
                return Some(message);
            }
            let now = Instant::now();
            let queued = self.queued_len();
            if (queued > 0 && queued < MANY)
                || now >= until
                || deadline.is_some_and(|deadline| now >= deadline)
            {
                return None;
            }
        }
        None
    }

    /// Whether the queue, which held `queued` items, changes within
    /// [`WATCH`] (a publisher moved it to the batch): a stream is flowing.
    /// Spins, reading the count without the lock.
    fn still_coming(&self, queued: usize) -> bool {
        let until = Instant::now() + WATCH;
        loop {
            std::hint::spin_loop();
            if self.queued_len() != queued {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// Before a receiver leaves while others still wait (blocked threads
    /// share one registration with the log, and an append wakes one of
    /// them): wakes one if something is waiting, and makes sure the log
    /// this subscriber reads will wake them when it grows.
    fn hand_over(self: &Arc<Self>, inner: &mut MutexGuard<'_, Inner<P>>) {
        if inner.recv_waiters > 0 && (self.waiting(inner) > 0 || self.sleep_on_log(inner)) {
            self.readable.notify_one();
        }
    }

    /// Moves up to `limit` waiting items into `out` in one call; returns
    /// how many. Waits for the first one like [`take`](Mailbox::take).
    pub(crate) fn take_many(
        self: &Arc<Self>,
        out: &mut Vec<Message<P>>,
        limit: usize,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<usize, Empty> {
        if limit == 0 {
            return Ok(0);
        }
        let first = self.take(wait, deadline, |empty| empty)?;
        out.push(first);
        let mut inner = self.inner.lock();
        let mut taken = 1;
        while taken < limit {
            match self.pop(&mut inner) {
                Some(message) => out.push(message),
                None => break,
            }
            taken += 1;
        }
        Ok(taken)
    }

    /// Polls for the next item from an async task. `slot` is the future's
    /// waker registration, kept across polls and removed by
    /// [`cancel`](Mailbox::cancel) when the future is dropped.
    pub(crate) fn poll_take(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        slot: &mut Option<u64>,
    ) -> Poll<Result<Message<P>, Empty>> {
        if let Some(message) = self.take_fast() {
            if let Some(id) = slot.take() {
                self.inner.lock().unregister(id);
            }
            return Poll::Ready(Ok(message));
        }
        let mut inner = self.inner.lock();
        if let Some(message) = self.pop(&mut inner) {
            if let Some(id) = slot.take() {
                inner.unregister(id);
            }
            return Poll::Ready(Ok(message));
        }
        if let Err(end) = Self::ended(&inner) {
            if let Some(id) = slot.take() {
                inner.unregister(id);
            }
            return Poll::Ready(Err(end));
        }
        self.release_room(&mut inner);
        let tasks = &mut inner.rare.get_or_insert_with(Box::default).tasks;
        let id = *slot.get_or_insert_with(|| {
            tasks.next += 1;
            tasks.next
        });
        match tasks.waiting.iter_mut().find(|(waiting, _)| *waiting == id) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => tasks.waiting.push((id, cx.waker().clone())),
        }
        if self.sleep_on_log(&mut inner) {
            // It grew meanwhile: take it now (the registration stays until
            // this future resolves or is dropped).
            if let Some(message) = self.pop(&mut inner) {
                inner.unregister(id);
                *slot = None;
                return Poll::Ready(Ok(message));
            }
        }
        Poll::Pending
    }

    /// Frees the room a drained batch kept (see [`Taken::batch`]), and hands
    /// an empty queue's room to the broker's spare room (see `spare.rs`):
    /// called, under the mailbox lock, when a receive found nothing and
    /// returns empty or goes to sleep, so that an idle subscriber keeps no
    /// room of its own.
    fn release_room(&self, inner: &mut Inner<P>) {
        let batch = {
            let mut taken = self.lock_reader();
            if taken.batch.as_ref().is_some_and(|batch| batch.is_empty()) {
                taken.batch.take()
            } else {
                None
            }
        };
        drop(batch);
        self.spare.reclaim(self.spare_shard, &mut inner.items);
    }

    /// The receive fast path, without the mailbox lock: the next item of
    /// the batch taken from the queue, or else (when nothing is queued
    /// before it) of the log this subscriber reads. `None` sends the caller
    /// to the slow path (which looks again).
    #[inline]
    fn take_fast(&self) -> Option<Message<P>> {
        let mut taken = self.reader.try_lock()?;
        taken.next(Some(&self.queued))
    }

    fn pop(&self, inner: &mut MutexGuard<'_, Inner<P>>) -> Option<Message<P>> {
        let mut taken = self.lock_reader();
        if let Some(message) = taken.next(None) {
            return Some(message);
        }
        if self.bound.is_none() && inner.items.len() > 1 {
            // Unbounded: take the whole queue in one go (the receivers then
            // serve themselves from the batch without this lock, and the
            // publishers find it free).
            let batch = taken.batch.get_or_insert_with(Box::default);
            batch.take_all(&mut inner.items);
            self.sync_queued(inner);
            return taken.next(None);
        }
        let Some(message) = inner.items.pop_front() else {
            return taken.next(Some(&self.queued));
        };
        taken.received += u64::from(message.is_delivery());
        let taken_log = taken.log.is_some();
        drop(taken);
        self.sync_queued(inner);
        let (len, capacity) = (inner.items.len(), inner.items.capacity());
        // Drained: keep room for a steady stream, no more (a log reader
        // queues nothing after its confirmation: it keeps nothing).
        let keep = if taken_log { 0 } else { ROOM };
        if len == 0 && capacity > keep {
            inner.items = VecDeque::new();
        } else if capacity > 32 && len * 4 < capacity {
            // Give a drained burst's memory back (amortized: the queue grew
            // by at least as many pushes).
            inner.items.shrink_to(len * 2);
        }
        if message.is_delivery() {
            // Counted for a bound only: an unbounded subscriber's items
            // also leave in chunks (see `move_chunk`), uncounted.
            if let Some(bound) = &self.bound {
                inner.deliveries -= 1;
                inner.bytes -= bound.weigh(&message);
            }
            if inner.send_waiters > 0 {
                self.notify_writers();
            }
        }
        Some(message)
    }

    /// `Err` when nothing will ever be queued again.
    fn ended(inner: &Inner<P>) -> Result<(), Empty> {
        match inner.state {
            // Overflowed but not evicted yet: more lost deliveries may
            // still be reported before the end.
            State::Open | State::Dropped | State::Overflowed => Ok(()),
            State::BrokerGone => Err(Empty::Disconnected),
            State::Evicted => Err(Empty::Overflowed),
        }
    }

    /// Items waiting: deliveries, confirmations and lag reports.
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock();
        self.waiting(&inner)
    }

    fn waiting(&self, inner: &Inner<P>) -> usize {
        Self::waiting_in(inner, &self.lock_reader())
    }

    /// Items waiting, with the receivers' lock held by the caller.
    fn waiting_in(inner: &Inner<P>, taken: &Taken<P>) -> usize {
        inner.items.len()
            + taken.batch.as_ref().map_or(0, |batch| batch.len())
            + taken
                .log
                .as_ref()
                .map_or(0, |reader| reader.cursor.pending())
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        let inner = self.inner.lock();
        // One look at the receivers' side: a receive in between would count
        // an item both as queued and as received.
        let taken = self.lock_reader();
        SubscriberStats {
            queued: Self::waiting_in(&inner, &taken),
            received: taken.received,
            dropped: inner.dropped,
        }
    }

    /// The readiness handle: a channel that holds a token whenever an item
    /// may be waiting (or the stream has ended).
    pub(crate) fn doorbell(&self) -> &Receiver<()> {
        let (ring, ready) = &**self
            .doorbell
            .get_or_init(|| Box::new(crossbeam_channel::bounded(1)));
        // Publishers ring it from now on; ring it for what came before (a
        // spare token only costs the waiter one empty `try_recv`).
        let mut inner = self.inner.lock();
        inner.ring = true;
        if self.waiting(&inner) > 0 || inner.state != State::Open {
            let _ = ring.try_send(());
        }
        ready
    }
}

/// `now + timeout`, or `None` ("forever") when that instant cannot be
/// represented.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    type Probe = Mailbox<bytes::Bytes>;

    /// The receivers' side and the publishers' side never share a 64-byte
    /// line, wherever a 16-byte aligned allocation with 16 bytes of counts
    /// in front puts the mailbox (see [`Mailbox`]).
    #[test]
    fn the_two_sides_of_a_mailbox_never_share_a_cache_line() {
        let reader = (
            offset_of!(Probe, reader),
            size_of::<ReaderLock<bytes::Bytes>>(),
        );
        let publishers = [
            offset_of!(Probe, inner),
            offset_of!(Probe, bound),
            offset_of!(Probe, spare),
            offset_of!(Probe, spare_shard),
            offset_of!(Probe, queued),
        ];
        assert_eq!(reader.0, 0, "the receivers' side comes first");
        let first_publisher = *publishers.iter().min().expect("listed");
        for start in (0..64).step_by(16) {
            let line = |offset: usize| (start + 16 + offset) / 64;
            assert!(
                line(reader.0 + reader.1 - 1) < line(first_publisher),
                "an allocation at {start} mod 64 puts both sides on one line"
            );
        }
        // The memory target: at most 256 B per idle subscriber, handle
        // included (the memory test measures it; this keeps the layout's
        // padding from growing it unnoticed).
        assert!(size_of::<Probe>() <= 200, "{} B", size_of::<Probe>());
    }
}
