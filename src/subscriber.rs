//! `Subscriber`: one consumer's subscriptions and its queue of messages.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError};
use crate::limits::{Bound, Limiter, Overflow, SubscriberStats};
use crate::registry::{shrink_when_sparse, Endpoint, FastSet, Registry, Space, SubId};
use crate::{Message, Name};

/// One consumer of messages: the in-process twin of a Redis connection in
/// subscribe mode.
///
/// Create one with [`Broker::subscriber`](crate::Broker::subscriber), give it
/// channels ([`subscribe`](Subscriber::subscribe)), patterns
/// ([`psubscribe`](Subscriber::psubscribe)) and shard channels
/// ([`ssubscribe`](Subscriber::ssubscribe)), then drain it with
/// [`recv`](Subscriber::recv) and friends in a worker loop.
///
/// Every (un)subscribe call puts its Redis confirmations, one per name, into
/// this subscriber's own stream, in order with the messages; the call also
/// returns the resulting count for convenience.
///
/// A `Subscriber` is `Send + Sync`: one thread may block in `recv` while
/// another changes its subscriptions. Dropping it removes every subscription
/// silently (no confirmations), like a Redis client disconnecting.
///
/// ```
/// use channelcast::{Broker, Message};
///
/// let broker = Broker::new();
/// let sub = broker.subscriber();
/// assert_eq!(sub.subscribe(["a", "b"]).unwrap(), 2);
/// assert_eq!(sub.recv().unwrap(), Message::Subscribe { channel: "a".into(), count: 1 });
/// assert_eq!(sub.recv().unwrap(), Message::Subscribe { channel: "b".into(), count: 2 });
///
/// broker.publish("b", "hi");
/// for msg in sub.try_iter() {
///     assert_eq!(msg.payload().unwrap(), "hi");
/// }
/// ```
pub struct Subscriber<P = bytes::Bytes> {
    id: SubId,
    rx: Receiver<Message<P>>,
    /// Weak, so that subscribers do not keep the broker alive: when the last
    /// `Broker` goes, the senders go with it and `recv` reports
    /// disconnection instead of blocking forever.
    registry: Weak<Registry<P>>,
    /// What this subscriber holds. Locked for the whole of a (un)subscribe
    /// call so that the counts in its confirmations are consecutive even
    /// when several threads change the subscriptions at once. Shared with
    /// the limiter, so that an overflow eviction can remove the names.
    held: Arc<Mutex<Held>>,
    /// The capacity and overflow policy; `None` when unbounded.
    limiter: Option<Arc<Limiter<P>>>,
    /// Items taken out of the queue, for `stats`.
    received: AtomicU64,
}

/// The three namespaces a subscriber can hold names in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Channel,
    Pattern,
    Shard,
}

impl Family {
    fn subscribed<P>(self, name: Name, count: usize) -> Message<P> {
        match self {
            Family::Channel => Message::Subscribe {
                channel: name,
                count,
            },
            Family::Pattern => Message::PSubscribe {
                pattern: name,
                count,
            },
            Family::Shard => Message::SSubscribe {
                channel: name,
                count,
            },
        }
    }

    fn unsubscribed<P>(self, name: Option<Name>, count: usize) -> Message<P> {
        match self {
            Family::Channel => Message::Unsubscribe {
                channel: name,
                count,
            },
            Family::Pattern => Message::PUnsubscribe {
                pattern: name,
                count,
            },
            Family::Shard => Message::SUnsubscribe {
                channel: name,
                count,
            },
        }
    }
}

/// A subscriber's names in each namespace.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) channels: FastSet<Name>,
    pub(crate) patterns: FastSet<Name>,
    pub(crate) shards: FastSet<Name>,
}

impl Held {
    fn set(&mut self, family: Family) -> &mut FastSet<Name> {
        match family {
            Family::Channel => &mut self.channels,
            Family::Pattern => &mut self.patterns,
            Family::Shard => &mut self.shards,
        }
    }

    /// The count Redis reports for `family`: channels + patterns share one
    /// count, shard channels have their own.
    fn count(&self, family: Family) -> usize {
        match family {
            Family::Channel | Family::Pattern => self.channels.len() + self.patterns.len(),
            Family::Shard => self.shards.len(),
        }
    }

    /// Every name held in `family`, in byte order (the documented order of
    /// an unsubscribe-all).
    fn in_order(&mut self, family: Family) -> Vec<Name> {
        let mut names: Vec<Name> = self.set(family).iter().cloned().collect();
        names.sort_unstable();
        names
    }
}

impl<P> Registry<P> {
    fn add(&self, family: Family, name: &Name, endpoint: &Endpoint<P>, confirm: Message<P>) {
        match family {
            Family::Channel => self.add_channel(Space::Channel, name, endpoint, confirm),
            Family::Shard => self.add_channel(Space::Shard, name, endpoint, confirm),
            Family::Pattern => self.add_pattern(name, endpoint, confirm),
        }
    }

    fn remove(
        &self,
        family: Family,
        name: &Name,
        tx: &Sender<Message<P>>,
        confirm: Option<Message<P>>,
    ) {
        match family {
            Family::Channel => self.remove_channel(Space::Channel, name, tx, confirm),
            Family::Shard => self.remove_channel(Space::Shard, name, tx, confirm),
            Family::Pattern => self.remove_pattern(name, tx, confirm),
        }
    }
}

impl<P: Clone + Send + 'static> Subscriber<P> {
    pub(crate) fn new(registry: &Arc<Registry<P>>, bound: Option<Bound<P>>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = registry.next_id();
        let held = Arc::new(Mutex::new(Held::default()));
        let limiter =
            bound.map(|bound| Arc::new(Limiter::new(id, bound, rx.clone(), Arc::clone(&held))));
        registry.register(
            id,
            Endpoint {
                tx,
                limiter: limiter.clone(),
            },
        );
        Subscriber {
            id,
            rx,
            registry: Arc::downgrade(registry),
            held,
            limiter,
            received: AtomicU64::new(0),
        }
    }

    /// Subscribes to each channel in `channels` (Redis `SUBSCRIBE`) and
    /// returns the number of channels + patterns now held.
    ///
    /// Queues one [`Message::Subscribe`] per name, in argument order, each
    /// with the running count; a name already held is confirmed again with
    /// the count unchanged. Messages published on a channel after its
    /// confirmation was queued are delivered; none arrive before it.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::NoNames`] when `channels` is empty (Redis: wrong
    /// number of arguments); [`SubscribeError::BrokerClosed`] when every
    /// broker handle is gone; [`SubscribeError::Overflowed`] after this
    /// subscriber was evicted by [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    /// In every case nothing is queued.
    ///
    /// ```
    /// # use channelcast::{Broker, Message, SubscribeError};
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// assert_eq!(sub.subscribe(["foo", "foo"]).unwrap(), 1);
    /// let confirmations: Vec<_> = sub.try_iter().collect();
    /// assert_eq!(confirmations, [
    ///     Message::Subscribe { channel: "foo".into(), count: 1 },
    ///     Message::Subscribe { channel: "foo".into(), count: 1 },
    /// ]);
    /// assert_eq!(sub.subscribe(Vec::<&str>::new()), Err(SubscribeError::NoNames));
    /// ```
    pub fn subscribe<I>(&self, channels: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Channel, channels)
    }

    /// Subscribes to each glob pattern in `patterns` (Redis `PSUBSCRIBE`)
    /// and returns the number of channels + patterns now held.
    ///
    /// Confirmations ([`Message::PSubscribe`]) work as for
    /// [`subscribe`](Subscriber::subscribe). A publish on any matching
    /// channel then arrives as a [`Message::PMessage`] carrying the pattern.
    /// See [`Glob`](crate::Glob) for the syntax; every byte string is a valid
    /// pattern.
    ///
    /// # Errors
    ///
    /// As for [`subscribe`](Subscriber::subscribe).
    pub fn psubscribe<I>(&self, patterns: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Pattern, patterns)
    }

    /// Subscribes to each shard channel in `channels` (Redis `SSUBSCRIBE`)
    /// and returns the number of shard channels now held (shard counts never
    /// include channels or patterns).
    ///
    /// # Errors
    ///
    /// As for [`subscribe`](Subscriber::subscribe).
    pub fn ssubscribe<I>(&self, channels: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Shard, channels)
    }

    /// Unsubscribes from each channel in `channels` (Redis `UNSUBSCRIBE`)
    /// and returns the number of channels + patterns still held.
    ///
    /// Queues one [`Message::Unsubscribe`] per name, also for names never
    /// held (count unchanged). No message on a channel arrives after its
    /// unsubscribe confirmation.
    ///
    /// **An empty `channels` means "all"**, as Redis's argument-less
    /// `UNSUBSCRIBE`: every held channel is released, oldest subscription
    /// first, one confirmation each; when none is held, a single
    /// confirmation with `channel: None` is queued. Prefer
    /// [`unsubscribe_all`](Subscriber::unsubscribe_all) to say so plainly.
    ///
    /// # Errors
    ///
    /// [`UnsubscribeError::BrokerClosed`] when every broker handle is gone,
    /// [`UnsubscribeError::Overflowed`] after an overflow eviction (the
    /// subscriptions are gone either way).
    pub fn unsubscribe<I>(&self, channels: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.unsubscribe_in(Family::Channel, channels)
    }

    /// Releases every channel: [`unsubscribe`](Subscriber::unsubscribe)
    /// with no names.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    ///
    /// ```
    /// # use channelcast::{Broker, Message};
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.psubscribe(["p*"]).unwrap();
    /// sub.recv().unwrap();
    /// assert_eq!(sub.unsubscribe_all().unwrap(), 1);
    /// // Nothing was held: one confirmation with no name, counting the pattern.
    /// assert_eq!(sub.recv().unwrap(), Message::Unsubscribe { channel: None, count: 1 });
    /// ```
    pub fn unsubscribe_all(&self) -> Result<usize, UnsubscribeError> {
        self.unsubscribe_in(Family::Channel, std::iter::empty::<Name>())
    }

    /// Unsubscribes from each pattern in `patterns` (Redis `PUNSUBSCRIBE`);
    /// an empty `patterns` means all of them. Works as
    /// [`unsubscribe`](Subscriber::unsubscribe) does for channels.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn punsubscribe<I>(&self, patterns: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.unsubscribe_in(Family::Pattern, patterns)
    }

    /// Releases every pattern: [`punsubscribe`](Subscriber::punsubscribe)
    /// with no names.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn punsubscribe_all(&self) -> Result<usize, UnsubscribeError> {
        self.unsubscribe_in(Family::Pattern, std::iter::empty::<Name>())
    }

    /// Unsubscribes from each shard channel in `channels` (Redis
    /// `SUNSUBSCRIBE`); an empty `channels` means all of them. Counts are
    /// shard channels only.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn sunsubscribe<I>(&self, channels: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.unsubscribe_in(Family::Shard, channels)
    }

    /// Releases every shard channel: [`sunsubscribe`](Subscriber::sunsubscribe)
    /// with no names.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn sunsubscribe_all(&self) -> Result<usize, UnsubscribeError> {
        self.unsubscribe_in(Family::Shard, std::iter::empty::<Name>())
    }

    fn subscribe_in<I>(&self, family: Family, names: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        let names: SmallVec<[Name; 4]> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(SubscribeError::NoNames);
        }
        let (registry, mut held, endpoint) = self.open()?;
        for name in names {
            let newly = held.set(family).insert(name.clone());
            let confirmation = family.subscribed(name.clone(), held.count(family));
            if newly {
                registry.add(family, &name, &endpoint, confirmation);
            } else {
                let _ = endpoint.tx.send(confirmation);
            }
        }
        Ok(held.count(family))
    }

    fn unsubscribe_in<I>(&self, family: Family, names: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        let (registry, mut held, endpoint) = self.open()?;
        let tx = &endpoint.tx;
        let mut names: Vec<Name> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            names = held.in_order(family);
            if names.is_empty() {
                let _ = tx.send(family.unsubscribed(None, held.count(family)));
                return Ok(held.count(family));
            }
        }
        for name in names {
            let was_held = held.set(family).remove(&name);
            let confirmation = family.unsubscribed(Some(name.clone()), held.count(family));
            if was_held {
                registry.remove(family, &name, tx, Some(confirmation));
            } else {
                let _ = tx.send(confirmation);
            }
        }
        shrink_when_sparse(held.set(family));
        Ok(held.count(family))
    }

    /// The broker, this subscriber's names (locked) and its endpoint, for a
    /// (un)subscribe call.
    #[allow(clippy::type_complexity)]
    fn open(
        &self,
    ) -> Result<
        (
            Arc<Registry<P>>,
            parking_lot::MutexGuard<'_, Held>,
            Endpoint<P>,
        ),
        UnsubscribeError,
    > {
        let registry = self
            .registry
            .upgrade()
            .ok_or(UnsubscribeError::BrokerClosed)?;
        let held = self.held.lock();
        // Looked up under `held`: an eviction unregisters the endpoint while
        // holding it, so a missing endpoint here means evicted.
        let endpoint = registry
            .endpoint(self.id)
            .ok_or(UnsubscribeError::Overflowed)?;
        Ok((registry, held, endpoint))
    }
}

impl<P> Subscriber<P> {
    /// Blocks until the next message or confirmation arrives.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once every [`Broker`](crate::Broker)
    /// handle is gone *and* everything queued before that has been received;
    /// [`RecvError::Overflowed`] likewise after an eviction by
    /// [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    pub fn recv(&self) -> Result<Message<P>, RecvError> {
        if self.limiter.is_none() {
            // The unbounded fast path: the queue is all there is.
            let message = self.rx.recv().map_err(|_| RecvError::Disconnected)?;
            self.received.fetch_add(1, Ordering::Relaxed);
            return Ok(message);
        }
        self.take(Wait::Forever).map_err(|failure| match failure {
            Failure::Overflowed => RecvError::Overflowed,
            _ => RecvError::Disconnected,
        })
    }

    /// Returns the next message if one is queued, without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is queued,
    /// [`TryRecvError::Disconnected`] or [`TryRecvError::Overflowed`] when
    /// nothing ever will be.
    pub fn try_recv(&self) -> Result<Message<P>, TryRecvError> {
        self.take(Wait::No).map_err(|failure| match failure {
            Failure::Empty | Failure::Timeout => TryRecvError::Empty,
            Failure::Disconnected => TryRecvError::Disconnected,
            Failure::Overflowed => TryRecvError::Overflowed,
        })
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] or [`RecvTimeoutError::Overflowed`]
    /// when nothing ever will.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<P>, RecvTimeoutError> {
        self.recv_deadline(Instant::now() + timeout)
    }

    /// Waits until `deadline` for the next message.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Subscriber::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message<P>, RecvTimeoutError> {
        self.take(Wait::Until(deadline))
            .map_err(|failure| match failure {
                Failure::Empty | Failure::Timeout => RecvTimeoutError::Timeout,
                Failure::Disconnected => RecvTimeoutError::Disconnected,
                Failure::Overflowed => RecvTimeoutError::Overflowed,
            })
    }

    /// The subscriber's counters: queued now, received so far, dropped by
    /// its overflow policy.
    ///
    /// ```
    /// use channelcast::{Broker, Overflow};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber_builder().capacity(1).overflow(Overflow::DropNewest).build();
    /// sub.subscribe(["c"]).unwrap();
    /// sub.recv().unwrap();
    /// broker.publish("c", "kept");
    /// broker.publish("c", "dropped");
    /// let stats = sub.stats();
    /// assert_eq!((stats.queued, stats.received, stats.dropped), (1, 1, 1));
    /// ```
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            queued: self.len(),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.limiter.as_ref().map_or(0, |limiter| limiter.dropped()),
        }
    }

    /// Takes the next item: from the front `DropOldest` set aside, the
    /// queue, or a pending lag report, in that order.
    fn take(&self, wait: Wait) -> Result<Message<P>, Failure> {
        loop {
            match self.poll() {
                Ok(message) => {
                    self.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(limiter) = &self.limiter {
                        limiter.took(&message);
                    }
                    return Ok(message);
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    let overflowed = self
                        .limiter
                        .as_ref()
                        .is_some_and(|limiter| limiter.overflowed());
                    return Err(if overflowed {
                        Failure::Overflowed
                    } else {
                        Failure::Disconnected
                    });
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            // Wait until the queue has something (or disconnects), without
            // taking it: the next `poll` takes it in the right order.
            let mut select = Select::new();
            select.recv(&self.rx);
            match wait {
                Wait::No => return Err(Failure::Empty),
                Wait::Forever => {
                    select.ready();
                }
                Wait::Until(deadline) => {
                    if select.ready_deadline(deadline).is_err() {
                        return Err(Failure::Timeout);
                    }
                }
            }
        }
    }

    fn poll(&self) -> Result<Message<P>, crossbeam_channel::TryRecvError> {
        let Some(limiter) = &self.limiter else {
            return self.rx.try_recv();
        };
        let item = if limiter.policy == Overflow::DropOldest {
            // Under the front lock, so a publisher dropping the oldest item
            // cannot take it from under us and reorder the stream.
            let mut front = limiter.front.lock();
            match limiter.pop_front(&mut front) {
                Some(item) => Ok(item),
                None => self.rx.try_recv(),
            }
        } else {
            self.rx.try_recv()
        };
        match item {
            Err(empty_or_gone) => limiter
                .take_unreported()
                .map(|missed| Message::Lagged { missed })
                .ok_or(empty_or_gone),
            item => item,
        }
    }

    /// A blocking iterator over messages; it ends when the broker is gone
    /// and the queue is drained.
    pub fn iter(&self) -> Iter<'_, P> {
        Iter { subscriber: self }
    }

    /// A non-blocking iterator over the messages queued right now.
    pub fn try_iter(&self) -> TryIter<'_, P> {
        TryIter { subscriber: self }
    }

    /// The number of messages, confirmations and lag reports waiting.
    pub fn len(&self) -> usize {
        let front = self.limiter.as_ref().map_or(0, |limiter| {
            if limiter.has_front() {
                limiter.front.lock().len()
            } else {
                0
            }
        });
        self.rx.len() + front
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying crossbeam receiver, for waiting on this subscriber
    /// next to other channels with [`crossbeam_channel::select!`] or
    /// [`crossbeam_channel::Select`]. Receiving from it is the same as
    /// calling [`recv`](Subscriber::recv) for an unbounded subscriber; it
    /// disconnects when the broker is gone. Keep the `Subscriber` alive while
    /// you use it: dropping the subscriber removes its subscriptions.
    ///
    /// A *bounded* subscriber may hold lag reports and (under
    /// [`Overflow::DropOldest`]) confirmations outside this queue: use
    /// [`Select::ready`](crossbeam_channel::Select::ready) on the receiver,
    /// then this subscriber's [`try_recv`](Subscriber::try_recv), so that
    /// nothing is skipped.
    ///
    /// ```
    /// use crossbeam_channel::{select, unbounded};
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["jobs"]).unwrap();
    /// sub.recv().unwrap(); // the confirmation
    /// let (timer_tx, timer_rx) = unbounded();
    ///
    /// broker.publish("jobs", "one");
    /// timer_tx.send("tick").unwrap();
    /// let mut seen = Vec::new();
    /// while seen.len() < 2 {
    ///     select! {
    ///         recv(sub.receiver()) -> msg => seen.push(format!("job {:?}", msg.unwrap().payload())),
    ///         recv(timer_rx) -> tick => seen.push(tick.unwrap().to_string()),
    ///     }
    /// }
    /// seen.sort();
    /// assert_eq!(seen, ["job Some(b\"one\")", "tick"]);
    /// ```
    pub fn receiver(&self) -> &Receiver<Message<P>> {
        &self.rx
    }
}

impl<P> Drop for Subscriber<P> {
    /// Removes every subscription without confirmations, like a Redis client
    /// disconnecting; names left with no subscriber disappear.
    fn drop(&mut self) {
        if let Some(limiter) = &self.limiter {
            // First release any publisher waiting for room: it holds a shard
            // lock the removals below need.
            limiter.close();
        }
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut held = self.held.lock();
        if let Some(endpoint) = registry.endpoint(self.id) {
            registry.forget(self.id, &endpoint.tx, &mut held);
        }
    }
}

/// How long `Subscriber::take` may wait.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Forever,
    Until(Instant),
}

/// Why `Subscriber::take` returned nothing.
enum Failure {
    Empty,
    Timeout,
    Disconnected,
    Overflowed,
}

impl<P> fmt::Debug for Subscriber<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

/// A blocking iterator over a subscriber's messages, from
/// [`Subscriber::iter`]. Ends when the broker is gone and the queue drained.
#[derive(Debug)]
pub struct Iter<'a, P> {
    subscriber: &'a Subscriber<P>,
}

impl<P> Iterator for Iter<'_, P> {
    type Item = Message<P>;

    fn next(&mut self) -> Option<Message<P>> {
        self.subscriber.recv().ok()
    }
}

/// A non-blocking iterator over the messages queued now, from
/// [`Subscriber::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, P> {
    subscriber: &'a Subscriber<P>,
}

impl<P> Iterator for TryIter<'_, P> {
    type Item = Message<P>;

    fn next(&mut self) -> Option<Message<P>> {
        self.subscriber.try_recv().ok()
    }
}

impl<'a, P> IntoIterator for &'a Subscriber<P> {
    type Item = Message<P>;
    type IntoIter = Iter<'a, P>;

    fn into_iter(self) -> Iter<'a, P> {
        self.iter()
    }
}
