//! Bounded subscribers: the capacity, what happens on overflow, and how a
//! subscriber learns what it lost.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::registry::SubId;
use crate::subscriber::Held;
use crate::{Broker, Message, Subscriber};

/// What a bounded subscriber does with a delivery that finds its queue full.
///
/// Set with [`SubscriberBuilder::overflow`]. Whatever the policy, a
/// subscriber is told what it lost: dropped deliveries are reported in its
/// stream as a [`Message::Lagged`] with the exact count, at the place where
/// they are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// The publisher waits until the subscriber makes room.
    ///
    /// **Deadlock hazard:** the waiting publisher holds its channel's lock,
    /// so a subscriber whose own thread publishes to (or changes
    /// subscriptions on) a channel that waits for it never wakes up. Prefer
    /// [`Overflow::BlockFor`], which gives up after a while.
    Block,
    /// Like [`Overflow::Block`], but after waiting this long the delivery is
    /// dropped and reported as lag, as with [`Overflow::DropNewest`].
    BlockFor(Duration),
    /// The new delivery is dropped; the queue keeps the older ones.
    DropNewest,
    /// The oldest queued delivery is dropped to make room (confirmations are
    /// never dropped); the queue keeps the newest ones.
    DropOldest,
    /// Redis's behaviour (`client-output-buffer-limit pubsub`): the
    /// subscriber is unsubscribed from everything, and once it has received
    /// what it had queued, `recv` returns
    /// [`RecvError::Overflowed`](crate::RecvError::Overflowed).
    Disconnect,
}

/// Creates a [`Subscriber`] with a bounded queue; from
/// [`Broker::subscriber_builder`].
///
/// Without [`capacity`](SubscriberBuilder::capacity), the subscriber is
/// unbounded, as [`Broker::subscriber`] makes them.
///
/// ```
/// use channelcast::{Broker, Message, Overflow};
///
/// let broker = Broker::new();
/// let sub = broker
///     .subscriber_builder()
///     .capacity(2)
///     .overflow(Overflow::DropNewest)
///     .build();
/// sub.subscribe(["ticks"]).unwrap();
/// sub.recv().unwrap(); // the confirmation
///
/// for i in 0..5 {
///     broker.publish("ticks", i.to_string());
/// }
/// let got: Vec<_> = sub.try_iter().collect();
/// assert_eq!(got[0].payload_str(), Some("0"));
/// assert_eq!(got[1].payload_str(), Some("1"));
/// assert_eq!(got[2], Message::Lagged { missed: 3 }); // "2", "3", "4" were dropped
/// ```
#[must_use = "call build() to create the subscriber"]
pub struct SubscriberBuilder<'a, P> {
    broker: &'a Broker<P>,
    capacity: Option<usize>,
    max_bytes: Option<(usize, Weigher<P>)>,
    overflow: Overflow,
}

/// `Limiter::state` values.
const OPEN: u8 = 0;
const OVERFLOWED: u8 = 1;
const DROPPED: u8 = 2;

/// Measures the payload bytes a queued item holds.
pub(crate) type Weigher<P> = fn(&Message<P>) -> usize;

fn payload_len<P: AsRef<[u8]>>(message: &Message<P>) -> usize {
    message.payload_bytes().map_or(0, <[u8]>::len)
}

/// The limits a bounded subscriber is created with.
pub(crate) struct Bound<P> {
    pub(crate) messages: usize,
    pub(crate) bytes: Option<(usize, Weigher<P>)>,
    pub(crate) policy: Overflow,
}

impl<'a, P: Clone + Send + 'static> SubscriberBuilder<'a, P> {
    pub(crate) fn new(broker: &'a Broker<P>) -> Self {
        SubscriberBuilder {
            broker,
            capacity: None,
            max_bytes: None,
            overflow: Overflow::DropNewest,
        }
    }

    /// Bounds the queue to `messages` items (deliveries, confirmations and
    /// lag reports alike). Memory stays proportional to what is queued: no
    /// slot is allocated in advance.
    ///
    /// The bound is checked before each delivery, so publishers racing on
    /// different channels may each add one item past it. A capacity of 0
    /// makes every delivery overflow.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = Some(messages);
        self
    }

    /// What to do when a delivery finds the queue full; the default is
    /// [`Overflow::DropNewest`]. Has no effect without a
    /// [`capacity`](SubscriberBuilder::capacity) or
    /// [`max_payload_bytes`](SubscriberBuilder::max_payload_bytes).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// Creates the subscriber.
    pub fn build(self) -> Subscriber<P> {
        let bound = (self.capacity.is_some() || self.max_bytes.is_some()).then(|| Bound {
            messages: self.capacity.unwrap_or(usize::MAX),
            bytes: self.max_bytes,
            policy: self.overflow,
        });
        Subscriber::new(&self.broker.registry, bound)
    }
}

impl<P: AsRef<[u8]> + Clone + Send + 'static> SubscriberBuilder<'_, P> {
    /// Bounds the payload bytes queued at once (alone or with
    /// [`capacity`](SubscriberBuilder::capacity); the queue is full when
    /// either bound is reached). A single payload larger than the bound is
    /// still queued when nothing else is, so it can never be stuck.
    ///
    /// ```
    /// use channelcast::{Broker, Message, Overflow};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber_builder().max_payload_bytes(10).overflow(Overflow::DropNewest).build();
    /// sub.subscribe(["blobs"]).unwrap();
    /// sub.recv().unwrap();
    /// broker.publish("blobs", "123456"); // 6 bytes queued
    /// broker.publish("blobs", "7890");   // 10: still fits
    /// broker.publish("blobs", "x");      // 11 would not: dropped
    /// assert_eq!(sub.stats().dropped, 1);
    /// assert_eq!(sub.try_iter().last(), Some(Message::Lagged { missed: 1 }));
    /// ```
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some((bytes, payload_len::<P>));
        self
    }
}

impl<P> fmt::Debug for SubscriberBuilder<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberBuilder")
            .field("capacity", &self.capacity)
            .field("max_payload_bytes", &self.max_bytes.map(|(bytes, _)| bytes))
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

/// What became of one delivery offered to a bounded subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued.
    Queued,
    /// Queued, after pushing an older delivery out of the queue
    /// (`DropOldest`).
    Displaced,
    /// Dropped by the overflow policy (and counted as lag).
    Dropped,
    /// This delivery overflowed a `Disconnect` subscriber: the caller must
    /// evict it once it holds no lock.
    Evict,
    /// The subscriber is already being evicted or dropped: not offered.
    Gone,
}

/// The shared state of a bounded subscriber: held by each of its
/// subscriptions (next to its `Sender`) and by the `Subscriber` itself.
pub(crate) struct Limiter<P> {
    pub(crate) id: SubId,
    capacity: usize,
    /// The payload-bytes bound and how to weigh an item, if set.
    bytes: Option<(usize, Weigher<P>)>,
    /// Payload bytes queued now (with a bytes bound only).
    queued_bytes: AtomicUsize,
    pub(crate) policy: Overflow,
    /// The subscriber's queue, read here to measure it and, under
    /// `DropOldest`, to take the oldest delivery out.
    rx: Receiver<Message<P>>,
    /// Deliveries dropped but not yet reported (`DropNewest`, `BlockFor`):
    /// a `Lagged` goes into the queue ahead of the next delivery, or the
    /// subscriber reports it itself when it finds its queue empty.
    unreported: AtomicU64,
    /// `DropOldest`: items taken off the head of the queue that must still
    /// be received, in order (confirmations, and `Lagged` reports standing
    /// for the dropped deliveries). Logically the front of the queue. The
    /// subscriber receives under this lock too, so a pop cannot reorder.
    pub(crate) front: Mutex<VecDeque<Message<P>>>,
    front_len: AtomicUsize,
    dropped: AtomicU64,
    /// `OPEN`, or why publishers stopped offering to this subscriber (and
    /// waiting for room): `OVERFLOWED` by an eviction under `Disconnect`,
    /// `DROPPED` by the subscriber going away. One atomic, so the first
    /// reason set is the only one.
    state: AtomicU8,
    /// `Block`/`BlockFor`: publishers waiting for room, and their wake-up.
    waiting: AtomicUsize,
    room_lock: Mutex<()>,
    room: Condvar,
    /// The subscriber's names, so that an overflow eviction, which runs on a
    /// publisher's thread, can remove them.
    pub(crate) held: Arc<Mutex<Held>>,
}

impl<P> Limiter<P> {
    pub(crate) fn new(
        id: SubId,
        Bound {
            messages,
            bytes,
            policy,
        }: Bound<P>,
        rx: Receiver<Message<P>>,
        held: Arc<Mutex<Held>>,
    ) -> Self {
        Limiter {
            id,
            capacity: messages,
            bytes,
            queued_bytes: AtomicUsize::new(0),
            policy,
            rx,
            unreported: AtomicU64::new(0),
            front: Mutex::new(VecDeque::new()),
            front_len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            state: AtomicU8::new(OPEN),
            waiting: AtomicUsize::new(0),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            held,
        }
    }

    /// Deliveries dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Offers one delivery, applying the overflow policy when the queue is
    /// full. Called with the channel's shard lock held.
    pub(crate) fn offer(&self, tx: &Sender<Message<P>>, message: Message<P>) -> Offer {
        if self.is_closed() {
            return self.offer_closed();
        }
        let size = self.weigh(&message);
        if self.is_full(tx, size) {
            match self.policy {
                Overflow::DropNewest => return self.drop_newest(tx),
                Overflow::Block => {
                    if !self.wait_for_room(tx, size, None) {
                        return Offer::Gone;
                    }
                }
                Overflow::BlockFor(patience) => {
                    if !self.wait_for_room(tx, size, Some(Instant::now() + patience)) {
                        return if self.is_closed() {
                            self.offer_closed()
                        } else {
                            self.drop_newest(tx)
                        };
                    }
                }
                Overflow::DropOldest => {
                    let mut displaced = false;
                    while self.is_full(tx, size) && self.drop_oldest() {
                        displaced = true;
                    }
                    if displaced {
                        self.enqueue(tx, message, size);
                        return Offer::Displaced;
                    }
                }
                Overflow::Disconnect => {
                    if self.close_as(OVERFLOWED) {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return Offer::Evict;
                    }
                    return self.offer_closed();
                }
            }
        }
        self.enqueue(tx, message, size);
        Offer::Queued
    }

    fn enqueue(&self, tx: &Sender<Message<P>>, message: Message<P>, size: usize) {
        self.report_lag(tx);
        if size > 0 {
            self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        }
        let _ = tx.send(message);
    }

    /// The payload bytes `message` counts for (0 without a bytes bound).
    fn weigh(&self, message: &Message<P>) -> usize {
        self.bytes.map_or(0, |(_, weigh)| weigh(message))
    }

    /// Whether an item of `size` payload bytes must overflow. A payload
    /// larger than the bytes bound still fits into a queue holding none.
    fn is_full(&self, tx: &Sender<Message<P>>, size: usize) -> bool {
        if tx.len() >= self.capacity {
            return true;
        }
        self.bytes.is_some_and(|(max, _)| {
            let queued = self.queued_bytes.load(Ordering::Acquire);
            queued > 0 && queued + size > max
        })
    }

    /// Called by the subscriber for every item it takes out: frees its
    /// bytes and wakes a publisher waiting for room.
    pub(crate) fn took(&self, message: &Message<P>) {
        let size = self.weigh(message);
        if size > 0 {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        self.made_room();
    }

    fn drop_newest(&self, tx: &Sender<Message<P>>) -> Offer {
        self.unreported.fetch_add(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if tx.is_empty() {
            // Only with capacity 0: nothing queued will carry the report, and
            // the subscriber may be asleep on an empty queue.
            self.report_lag(tx);
        }
        Offer::Dropped
    }

    /// Queues a `Lagged` for every unreported drop, ahead of what follows.
    fn report_lag(&self, tx: &Sender<Message<P>>) {
        if self.unreported.load(Ordering::Acquire) > 0 {
            let missed = self.unreported.swap(0, Ordering::AcqRel);
            if missed > 0 {
                let _ = tx.send(Message::Lagged { missed });
            }
        }
    }

    /// Takes unreported drops for the subscriber to report itself.
    pub(crate) fn take_unreported(&self) -> Option<u64> {
        if self.unreported.load(Ordering::Acquire) == 0 {
            return None;
        }
        match self.unreported.swap(0, Ordering::AcqRel) {
            0 => None,
            missed => Some(missed),
        }
    }

    /// Takes items off the head of the queue until one delivery is gone,
    /// keeping everything else (in order) at the front.
    /// Returns whether a delivery was dropped (the queue may hold only
    /// confirmations).
    fn drop_oldest(&self) -> bool {
        let mut dropped = false;
        let mut front = self.front.lock();
        while let Ok(item) = self.rx.try_recv() {
            if item.is_delivery() {
                let size = self.weigh(&item);
                if size > 0 {
                    self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                }
                if let Some(Message::Lagged { missed }) = front.back_mut() {
                    *missed += 1;
                } else {
                    front.push_back(Message::Lagged { missed: 1 });
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
                dropped = true;
                break;
            }
            front.push_back(item);
        }
        self.front_len.store(front.len(), Ordering::Release);
        dropped
    }

    /// `DropOldest`: the next item from the front, if any.
    pub(crate) fn pop_front(&self, front: &mut VecDeque<Message<P>>) -> Option<Message<P>> {
        let item = front.pop_front();
        self.front_len.store(front.len(), Ordering::Release);
        item
    }

    /// Whether `DropOldest` left items at the front.
    pub(crate) fn has_front(&self) -> bool {
        self.front_len.load(Ordering::Acquire) > 0
    }

    /// Waits until the queue has room, the subscriber goes away or
    /// `deadline` passes; returns whether there is room.
    fn wait_for_room(
        &self,
        tx: &Sender<Message<P>>,
        size: usize,
        deadline: Option<Instant>,
    ) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.room_lock.lock();
        let room = loop {
            if self.is_closed() {
                break false;
            }
            if !self.is_full(tx, size) {
                break true;
            }
            match deadline {
                None => self.room.wait(&mut guard),
                Some(deadline) => {
                    if self.room.wait_until(&mut guard, deadline).timed_out() {
                        break !self.is_full(tx, size);
                    }
                }
            }
        };
        drop(guard);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        room
    }

    /// Wakes a publisher waiting for room.
    fn made_room(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _guard = self.room_lock.lock();
            self.room.notify_all();
        }
    }

    /// Stops publishers from offering to this subscriber (being dropped) or
    /// waiting for it.
    pub(crate) fn close(&self) {
        self.close_as(DROPPED);
        let _guard = self.room_lock.lock();
        self.room.notify_all();
    }

    /// Closes for `reason` unless already closed; returns whether it did.
    fn close_as(&self, reason: u8) -> bool {
        self.state
            .compare_exchange(OPEN, reason, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) != OPEN
    }

    /// Whether an overflow eviction closed it (`Disconnect`).
    pub(crate) fn overflowed(&self) -> bool {
        self.state.load(Ordering::Acquire) == OVERFLOWED
    }

    /// A delivery to a closed subscriber: one that overflowed but is not
    /// evicted yet still counts, like a Redis client marked to be closed,
    /// and what it misses is lost; a dropped one is not offered at all.
    fn offer_closed(&self) -> Offer {
        if self.overflowed() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Offer::Dropped
        } else {
            Offer::Gone
        }
    }
}

/// Counters of a whole broker, from [`Broker::stats`]. Each is a running
/// total since the broker was created, read without stopping publishers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BrokerStats {
    /// `publish` and `spublish` calls.
    pub published: u64,
    /// Deliveries queued for subscribers and not pushed out again by
    /// [`Overflow::DropOldest`].
    pub delivered: u64,
    /// Deliveries lost to bounded subscribers' overflow policies: never
    /// queued (`DropNewest`, `BlockFor`, the one that overflowed a
    /// `Disconnect` subscriber) or pushed out of a queue (`DropOldest`).
    /// `delivered + dropped` is the sum of what `publish` returned.
    pub dropped: u64,
    /// Subscribers evicted by [`Overflow::Disconnect`].
    pub disconnected: u64,
}

/// Counters of one subscriber, from [`Subscriber::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Items waiting in the queue now.
    pub queued: usize,
    /// Items taken out of the queue so far (messages, confirmations and
    /// lag reports).
    pub received: u64,
    /// Deliveries its overflow policy dropped (always 0 when unbounded).
    pub dropped: u64,
}
