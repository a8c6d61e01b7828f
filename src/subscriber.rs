//! `Subscriber`: one consumer's subscriptions and its stream of messages.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use smallvec::SmallVec;

use crate::error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError};
use crate::held::{Family, Held};
use crate::mailbox::{deadline_after, Bound, Empty, Mailbox};
use crate::registry::{Registry, Space};
use crate::stats::SubscriberStats;
use crate::{Message, Name};

/// One consumer of messages: the in-process twin of a Redis connection in
/// subscribe mode.
///
/// Create one with [`Broker::subscriber`](crate::Broker::subscriber), give it
/// channels ([`subscribe`](Subscriber::subscribe)), patterns
/// ([`psubscribe`](Subscriber::psubscribe)) and shard channels
/// ([`ssubscribe`](Subscriber::ssubscribe)), then drain it with
/// [`recv`](Subscriber::recv) and friends in a worker loop, with
/// [`recv_async`](Subscriber::recv_async) or [`stream`](Subscriber::stream)
/// in async code, or next to other channels in `select!` with
/// [`ready`](Subscriber::ready).
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
    id: u64,
    mailbox: Arc<Mailbox<P>>,
    /// Weak, so that subscribers do not keep the broker alive: when the last
    /// `Broker` goes, every mailbox is told, and `recv` reports
    /// disconnection instead of blocking forever.
    registry: Weak<Registry<P>>,
}

impl<P> Registry<P> {
    fn add(
        &self,
        family: Family,
        name: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirm: Message<P>,
        sole: bool,
        history: bool,
    ) where
        P: Clone,
    {
        match family {
            Family::Channel => {
                self.add_channel(Space::Channel, name, mailbox, confirm, sole, history);
            }
            Family::Shard => self.add_channel(Space::Shard, name, mailbox, confirm, sole, history),
            Family::Pattern => self.add_pattern(name, mailbox, confirm, history),
        }
    }

    fn remove(&self, family: Family, name: &Name, mailbox: &Arc<Mailbox<P>>, confirm: Message<P>) {
        match family {
            Family::Channel => self.remove_channel(Space::Channel, name, mailbox, Some(confirm)),
            Family::Shard => self.remove_channel(Space::Shard, name, mailbox, Some(confirm)),
            Family::Pattern => self.remove_pattern(name, mailbox, Some(confirm)),
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Subscriber<P> {
    pub(crate) fn new(
        registry: &Arc<Registry<P>>,
        bound: Option<Bound<P>>,
        confirmations: bool,
    ) -> Self {
        let mailbox = Arc::new(Mailbox::new(bound, confirmations, registry.spare()));
        let id = registry.register(&mailbox);
        Subscriber {
            id,
            mailbox,
            registry: Arc::downgrade(registry),
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
        self.subscribe_in(Family::Channel, channels, false)
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
        self.subscribe_in(Family::Pattern, patterns, false)
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
        self.subscribe_in(Family::Shard, channels, false)
    }

    /// Unsubscribes from each channel in `channels` (Redis `UNSUBSCRIBE`)
    /// and returns the number of channels + patterns still held.
    ///
    /// Queues one [`Message::Unsubscribe`] per name, also for names never
    /// held (count unchanged). No message on a channel arrives after its
    /// unsubscribe confirmation.
    ///
    /// An empty `channels` is an error ([`UnsubscribeError::NoNames`]), so
    /// that a computed list that happens to be empty never releases
    /// everything by accident. Redis's argument-less `UNSUBSCRIBE` ("all")
    /// is [`unsubscribe_all`](Subscriber::unsubscribe_all).
    ///
    /// # Errors
    ///
    /// [`UnsubscribeError::NoNames`] when `channels` is empty,
    /// [`UnsubscribeError::BrokerClosed`] when every broker handle is gone,
    /// [`UnsubscribeError::Overflowed`] after an overflow eviction (the
    /// subscriptions are gone either way). Nothing is queued on error.
    pub fn unsubscribe<I>(&self, channels: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.unsubscribe_in(Family::Channel, channels)
    }

    /// Releases every channel (Redis's argument-less `UNSUBSCRIBE`): one
    /// confirmation per held channel, in byte order; when none is held, a
    /// single confirmation with `channel: None` and the current count.
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
        self.unsubscribe_every(Family::Channel)
    }

    /// Unsubscribes from each pattern in `patterns` (Redis `PUNSUBSCRIBE`).
    /// Works as
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

    /// Releases every pattern (Redis's argument-less `PUNSUBSCRIBE`), as
    /// [`unsubscribe_all`](Subscriber::unsubscribe_all) does for channels.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn punsubscribe_all(&self) -> Result<usize, UnsubscribeError> {
        self.unsubscribe_every(Family::Pattern)
    }

    /// Unsubscribes from each shard channel in `channels` (Redis
    /// `SUNSUBSCRIBE`). Counts are shard channels only.
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

    /// Releases every shard channel (Redis's argument-less `SUNSUBSCRIBE`),
    /// as [`unsubscribe_all`](Subscriber::unsubscribe_all) does for channels.
    ///
    /// # Errors
    ///
    /// As for [`unsubscribe`](Subscriber::unsubscribe).
    pub fn sunsubscribe_all(&self) -> Result<usize, UnsubscribeError> {
        self.unsubscribe_every(Family::Shard)
    }

    /// Subscribes to `names` in `family`; with `history`, each new name's
    /// confirmation is followed by what it retains (see `retained`).
    pub(crate) fn subscribe_in<I>(
        &self,
        family: Family,
        names: I,
        history: bool,
    ) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        let names: SmallVec<[Name; 4]> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(SubscribeError::NoNames);
        }
        let (registry, mut held) = self.open()?;
        for name in names {
            // Whatever comes next is queued in order with what the log
            // held: stop reading it first.
            registry.leave_log(&self.mailbox);
            let newly = held.set(family).insert(name.clone());
            let confirmation = family.subscribed(name.clone(), held.count(family));
            if newly {
                let sole = family != Family::Pattern && held.total() == 1;
                registry.add(family, &name, &self.mailbox, confirmation, sole, history);
            } else {
                self.mailbox.confirm(confirmation, None);
            }
        }
        Ok(held.count(family))
    }

    fn unsubscribe_in<I>(&self, family: Family, names: I) -> Result<usize, UnsubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        let names: SmallVec<[Name; 4]> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(UnsubscribeError::NoNames);
        }
        let (registry, mut held) = self.open()?;
        registry.leave_log(&self.mailbox);
        Ok(self.release(&registry, &mut held, family, names))
    }

    fn unsubscribe_every(&self, family: Family) -> Result<usize, UnsubscribeError> {
        let (registry, mut held) = self.open()?;
        registry.leave_log(&self.mailbox);
        let names = held.in_order(family);
        if names.is_empty() {
            self.mailbox
                .confirm(family.unsubscribed(None, held.count(family)), None);
            return Ok(held.count(family));
        }
        Ok(self.release(&registry, &mut held, family, names))
    }

    fn release(
        &self,
        registry: &Registry<P>,
        held: &mut Held,
        family: Family,
        names: impl IntoIterator<Item = Name>,
    ) -> usize {
        for name in names {
            let was_held = held.set(family).remove(&name);
            let confirmation = family.unsubscribed(Some(name.clone()), held.count(family));
            if was_held {
                registry.remove(family, &name, &self.mailbox, confirmation);
            } else {
                self.mailbox.confirm(confirmation, None);
            }
        }
        held.released(family);
        held.count(family)
    }

    /// The broker and this subscriber's names (locked), for a
    /// (un)subscribe call.
    fn open(
        &self,
    ) -> Result<(Arc<Registry<P>>, parking_lot::MutexGuard<'_, Held>), UnsubscribeError> {
        let registry = self
            .registry
            .upgrade()
            .ok_or(UnsubscribeError::BrokerClosed)?;
        let held = self.mailbox.held.lock();
        // Checked under `held`: an eviction holds it while it removes the
        // names, and marks the mailbox before it starts.
        if self.mailbox.overflowed() {
            return Err(UnsubscribeError::Overflowed);
        }
        Ok((registry, held))
    }
}

impl<P: Clone> Subscriber<P> {
    /// Blocks until the next message, confirmation or lag report arrives.
    ///
    /// An unbounded subscriber's receiver that finds nothing yields its
    /// thread a few times (for 50 µs at most) and looks again before it
    /// sleeps, so that a stream's items are taken in chunks and a prompt
    /// answer does not wait for a wake-up; the same holds for
    /// [`recv_timeout`](Subscriber::recv_timeout) and
    /// [`recv_deadline`](Subscriber::recv_deadline), within their deadline.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once every [`Broker`](crate::Broker)
    /// handle is gone *and* everything queued before that has been received;
    /// [`RecvError::Overflowed`] likewise after an eviction by
    /// [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    #[inline]
    pub fn recv(&self) -> Result<Message<P>, RecvError> {
        self.mailbox.take(true, None, recv_error)
    }

    /// Returns the next item if one is queued, without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is queued,
    /// [`TryRecvError::Disconnected`] or [`TryRecvError::Overflowed`] when
    /// nothing ever will be.
    #[inline]
    pub fn try_recv(&self) -> Result<Message<P>, TryRecvError> {
        self.mailbox.take(false, None, |empty| match empty {
            Empty::Now => TryRecvError::Empty,
            Empty::Disconnected => TryRecvError::Disconnected,
            Empty::Overflowed => TryRecvError::Overflowed,
        })
    }

    /// Waits up to `timeout` for the next item. A timeout too large to add
    /// to the current instant (such as `Duration::MAX`) waits forever.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] or [`RecvTimeoutError::Overflowed`]
    /// when nothing ever will.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<P>, RecvTimeoutError> {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until `deadline` for the next item.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Subscriber::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message<P>, RecvTimeoutError> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<Message<P>, RecvTimeoutError> {
        self.mailbox.take(true, deadline, |empty| match empty {
            Empty::Now => RecvTimeoutError::Timeout,
            Empty::Disconnected => RecvTimeoutError::Disconnected,
            Empty::Overflowed => RecvTimeoutError::Overflowed,
        })
    }

    /// Blocks until at least one item is queued, then moves up to `limit`
    /// queued items into `out` in one call (one wake-up) and returns
    /// how many. With `limit` 0 it returns `Ok(0)` at once.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["ticks"]).unwrap();
    /// for i in 0..10 {
    ///     broker.publish("ticks", i.to_string());
    /// }
    /// let mut batch = Vec::new();
    /// assert_eq!(sub.recv_many(&mut batch, 100).unwrap(), 11); // the confirmation + 10
    /// assert_eq!(batch[10].payload_str(), Some("9"));
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`recv`](Subscriber::recv), when nothing is queued and nothing
    /// ever will be.
    pub fn recv_many(&self, out: &mut Vec<Message<P>>, limit: usize) -> Result<usize, RecvError> {
        self.mailbox
            .take_many(out, limit, true, None)
            .map_err(recv_error)
    }

    /// Moves up to `limit` queued items into `out` without blocking; returns
    /// how many (0 when nothing is queued).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Disconnected`] or [`TryRecvError::Overflowed`] when
    /// nothing is queued and nothing ever will be.
    pub fn try_recv_many(
        &self,
        out: &mut Vec<Message<P>>,
        limit: usize,
    ) -> Result<usize, TryRecvError> {
        match self.mailbox.take_many(out, limit, false, None) {
            Ok(taken) => Ok(taken),
            Err(Empty::Now) => Ok(0),
            Err(Empty::Disconnected) => Err(TryRecvError::Disconnected),
            Err(Empty::Overflowed) => Err(TryRecvError::Overflowed),
        }
    }

    /// Receives the next item asynchronously: a future that resolves like
    /// [`recv`](Subscriber::recv).
    ///
    /// It is woken by the publisher that queues the item (no polling, no
    /// helper thread) and works on any executor. It is **cancel-safe**:
    /// dropping it before it resolves loses nothing (the item stays queued
    /// for the next receive) and leaves no registration behind. Blocking
    /// and async receives may be mixed on one subscriber.
    ///
    /// ```
    /// # use channelcast::Broker;
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["news"]).unwrap();
    /// broker.publish("news", "hello");
    /// assert_eq!(sub.recv_async().await.unwrap().kind(), "subscribe");
    /// assert_eq!(sub.recv_async().await.unwrap().payload_str(), Some("hello"));
    /// # });
    /// ```
    pub fn recv_async(&self) -> Recv<'_, P> {
        Recv {
            mailbox: &self.mailbox,
            slot: None,
        }
    }

    /// This subscriber's stream as a [`futures_core::Stream`]: every item
    /// [`recv_async`](Subscriber::recv_async) would return, ending when
    /// `recv` would return an error (check [`stats`](Subscriber::stats) or
    /// call `try_recv` to learn which). Cancel-safe like `recv_async`.
    pub fn stream(&self) -> MessageStream<'_, P> {
        MessageStream {
            mailbox: &self.mailbox,
            slot: None,
            done: false,
        }
    }

    /// The subscriber's counters: items queued now, deliveries received so
    /// far, deliveries dropped by its overflow policy. See
    /// [`SubscriberStats`] for exactly what each counts.
    ///
    /// ```
    /// use channelcast::{Broker, Overflow};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber_builder().capacity(1).overflow(Overflow::DropNewest).build();
    /// sub.subscribe(["c"]).unwrap();
    /// sub.recv().unwrap(); // a confirmation: not a delivery
    /// broker.publish("c", "kept");
    /// broker.publish("c", "dropped");
    /// let stats = sub.stats();
    /// // Queued: "kept" and the lag report for "dropped".
    /// assert_eq!((stats.queued, stats.received, stats.dropped), (2, 0, 1));
    /// ```
    pub fn stats(&self) -> SubscriberStats {
        self.mailbox.stats()
    }

    /// A blocking iterator over items; it ends when the broker is gone
    /// (or the subscriber was evicted) and the queue is drained.
    pub fn iter(&self) -> Iter<'_, P> {
        Iter { subscriber: self }
    }

    /// A non-blocking iterator over the items queued right now.
    pub fn try_iter(&self) -> TryIter<'_, P> {
        TryIter { subscriber: self }
    }

    /// The number of items (messages, confirmations and lag reports)
    /// waiting.
    pub fn len(&self) -> usize {
        self.mailbox.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A readiness handle, for waiting on this subscriber next to other
    /// channels with [`crossbeam_channel::select!`] or
    /// [`crossbeam_channel::Select`]: it is ready whenever an item may be
    /// waiting (or the stream has ended). When it fires, drain the
    /// subscriber with [`try_recv`](Subscriber::try_recv) until `Empty`.
    ///
    /// Items are never read from the handle itself, so bounds, `Block`
    /// wake-ups, byte accounting, `DropOldest` order, lag reports and
    /// [`stats`](Subscriber::stats) all work exactly as through `recv`. A
    /// wake-up may find nothing to take (another receive took it first):
    /// just wait again.
    ///
    /// ```
    /// use crossbeam_channel::{select, unbounded};
    /// use channelcast::{Broker, TryRecvError};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["jobs"]).unwrap();
    /// let (timer_tx, timer_rx) = unbounded();
    ///
    /// broker.publish("jobs", "one");
    /// timer_tx.send("tick").unwrap();
    /// let mut seen = Vec::new();
    /// while seen.len() < 3 {
    ///     select! {
    ///         recv(sub.ready()) -> _ => loop {
    ///             match sub.try_recv() {
    ///                 Ok(msg) => seen.push(msg.kind().to_string()),
    ///                 Err(TryRecvError::Empty) => break,
    ///                 Err(end) => panic!("{end}"),
    ///             }
    ///         },
    ///         recv(timer_rx) -> tick => seen.push(tick.unwrap().to_string()),
    ///     }
    /// }
    /// seen.sort();
    /// assert_eq!(seen, ["message", "subscribe", "tick"]);
    /// ```
    pub fn ready(&self) -> &Receiver<()> {
        if self.mailbox.may_read_log() {
            // Publishers must ring the handle from now on, which they only
            // do for deliveries queued in the mailbox itself.
            self.mailbox.forbid_log();
            if let Some(registry) = self.registry.upgrade() {
                let _held = self.mailbox.held.lock();
                registry.leave_log(&self.mailbox);
            }
        }
        self.mailbox.doorbell()
    }
}

fn recv_error(empty: Empty) -> RecvError {
    match empty {
        Empty::Overflowed => RecvError::Overflowed,
        Empty::Now | Empty::Disconnected => RecvError::Disconnected,
    }
}

impl<P> Drop for Subscriber<P> {
    /// Removes every subscription without confirmations, like a Redis client
    /// disconnecting; names left with no subscriber disappear.
    fn drop(&mut self) {
        // First release any publisher waiting for room in this mailbox.
        self.mailbox.subscriber_dropped();
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut held = self.mailbox.held.lock();
        registry.forget(&self.mailbox, &mut held);
        drop(held);
        registry.unregister(&self.mailbox);
    }
}

impl<P> fmt::Debug for Subscriber<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// The future of [`Subscriber::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, P = bytes::Bytes> {
    mailbox: &'a Arc<Mailbox<P>>,
    slot: Option<u64>,
}

impl<P: Clone> Future for Recv<'_, P> {
    type Output = Result<Message<P>, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.mailbox
            .poll_take(cx, &mut this.slot)
            .map(|result| result.map_err(recv_error))
    }
}

impl<P> Drop for Recv<'_, P> {
    fn drop(&mut self) {
        self.mailbox.cancel(&mut self.slot);
    }
}

impl<P> fmt::Debug for Recv<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

/// The stream of [`Subscriber::stream`].
#[must_use = "streams do nothing unless polled"]
pub struct MessageStream<'a, P = bytes::Bytes> {
    mailbox: &'a Arc<Mailbox<P>>,
    slot: Option<u64>,
    done: bool,
}

impl<P: Clone> futures_core::Stream for MessageStream<'_, P> {
    type Item = Message<P>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message<P>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.mailbox.poll_take(cx, &mut this.slot) {
            Poll::Ready(Ok(message)) => Poll::Ready(Some(message)),
            Poll::Ready(Err(_)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<P: Clone> futures_core::FusedStream for MessageStream<'_, P> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<P> Drop for MessageStream<'_, P> {
    fn drop(&mut self) {
        self.mailbox.cancel(&mut self.slot);
    }
}

impl<P> fmt::Debug for MessageStream<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A blocking iterator over a subscriber's items, from
/// [`Subscriber::iter`]. Ends when the broker is gone and the queue drained.
#[derive(Debug)]
pub struct Iter<'a, P> {
    subscriber: &'a Subscriber<P>,
}

impl<P: Clone> Iterator for Iter<'_, P> {
    type Item = Message<P>;

    fn next(&mut self) -> Option<Message<P>> {
        self.subscriber.recv().ok()
    }
}

/// A non-blocking iterator over the items queued now, from
/// [`Subscriber::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, P> {
    subscriber: &'a Subscriber<P>,
}

impl<P: Clone> Iterator for TryIter<'_, P> {
    type Item = Message<P>;

    fn next(&mut self) -> Option<Message<P>> {
        self.subscriber.try_recv().ok()
    }
}

impl<'a, P: Clone> IntoIterator for &'a Subscriber<P> {
    type Item = Message<P>;
    type IntoIter = Iter<'a, P>;

    fn into_iter(self) -> Iter<'a, P> {
        self.iter()
    }
}
