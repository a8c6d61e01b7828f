//! `SubscriberBuilder`: a subscriber with a bound, an overflow policy, or
//! without confirmations.

use std::fmt;

use crate::mailbox::{payload_len, Bound, BytesBound};
use crate::{Broker, Overflow, Subscriber};

/// Creates a [`Subscriber`] with a bounded queue or other options; from
/// [`Broker::subscriber_builder`].
///
/// Without [`capacity`](SubscriberBuilder::capacity) or
/// [`max_payload_bytes`](SubscriberBuilder::max_payload_bytes), the
/// subscriber is unbounded, as [`Broker::subscriber`] makes them.
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
    max_bytes: BytesBound<P>,
    overflow: Overflow,
    confirmations: bool,
}

impl<P: Clone + Send + Sync + 'static> Broker<P> {
    /// Starts building a subscriber with a bounded queue and an
    /// [`Overflow`] policy, or without confirmations; see
    /// [`SubscriberBuilder`].
    pub fn subscriber_builder(&self) -> SubscriberBuilder<'_, P> {
        SubscriberBuilder::new(self)
    }
}

impl<'a, P: Clone + Send + Sync + 'static> SubscriberBuilder<'a, P> {
    pub(crate) fn new(broker: &'a Broker<P>) -> Self {
        SubscriberBuilder {
            broker,
            capacity: None,
            max_bytes: None,
            overflow: Overflow::DropNewest,
            confirmations: true,
        }
    }

    /// Bounds the queue to `deliveries` published messages at once
    /// (`message`, `pmessage`, `smessage`). Confirmations and lag reports
    /// are not bounded by it: they never displace a delivery and are never
    /// dropped. Memory stays proportional to what is queued: no slot is
    /// allocated in advance.
    ///
    /// A capacity of 0 is taken as 1: a queue always has room for one
    /// delivery once it holds none, so that a `Block` publisher can always
    /// go on once the subscriber has read, and an oversized group is never
    /// stuck. For the same reason the deliveries of one publish to one
    /// subscriber (its `message` and `pmessage`s, which are queued
    /// together) are admitted together into a queue that holds no
    /// delivery, even when there are more of them than the capacity.
    pub fn capacity(mut self, deliveries: usize) -> Self {
        self.capacity = Some(deliveries.max(1));
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

    /// Whether (un)subscribe confirmations are queued (the default) or left
    /// out, like redis-py's `ignore_subscribe_messages`: such a subscriber
    /// receives only deliveries and [`Message::Lagged`](crate::Message::Lagged)
    /// reports, so a loop can call `payload()` on everything it gets.
    /// Subscriptions take effect exactly as with confirmations.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber_builder().confirmations(false).build();
    /// sub.subscribe(["news"]).unwrap();
    /// broker.publish("news", "only this");
    /// assert_eq!(sub.recv().unwrap().payload_str(), Some("only this"));
    /// assert!(sub.try_recv().is_err());
    /// ```
    pub fn confirmations(mut self, queued: bool) -> Self {
        self.confirmations = queued;
        self
    }

    /// Creates the subscriber.
    pub fn build(self) -> Subscriber<P> {
        let bound = (self.capacity.is_some() || self.max_bytes.is_some()).then(|| Bound {
            capacity: self.capacity.unwrap_or(usize::MAX),
            bytes: self.max_bytes,
            policy: self.overflow,
            writable: parking_lot::Condvar::new(),
        });
        Subscriber::new(&self.broker.registry, bound, self.confirmations)
    }
}

impl<P: AsRef<[u8]> + Clone + Send + Sync + 'static> SubscriberBuilder<'_, P> {
    /// Bounds the payload bytes queued at once (alone or with
    /// [`capacity`](SubscriberBuilder::capacity); the queue is full when
    /// either bound is reached). Each delivery counts its payload's length,
    /// and at least 1 byte, so empty payloads are bounded too. A single
    /// payload larger than the bound is still queued when no other delivery
    /// is, so it can never be stuck.
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
            .field("confirmations", &self.confirmations)
            .finish_non_exhaustive()
    }
}
