//! `Broker`: the shared handle that publishes, creates subscribers and
//! answers `PUBSUB` questions.

use std::fmt;
use std::sync::Arc;

use crate::registry::{Registry, Space};
use crate::{BrokerStats, Glob, Name, Subscriber, SubscriberBuilder};

/// An in-process Redis Pub/Sub server.
///
/// A `Broker` is a cheap handle (one `Arc`): clone it into every thread that
/// publishes or creates subscribers. All clones share the same channels,
/// patterns and subscribers. When the last clone is dropped, every
/// [`Subscriber`] receives what is already queued and then sees
/// "disconnected" instead of blocking forever.
///
/// The payload type `P` defaults to [`bytes::Bytes`]; any `Clone + Send`
/// type works. Each delivery clones the payload once, so pick a type whose
/// clone is cheap (`Bytes`, `Arc<T>`, small `Copy` values): with `Bytes`, a
/// publish to 1,000 subscribers shares one buffer.
///
/// ```
/// use channelcast::{Broker, Message};
///
/// let broker = Broker::new();
/// let sub = broker.subscriber();
/// sub.subscribe(["greetings"]).unwrap();
///
/// assert_eq!(broker.publish("greetings", "hello"), 1);
///
/// assert_eq!(sub.recv().unwrap().kind(), "subscribe");
/// let msg = sub.recv().unwrap();
/// assert_eq!(msg.channel().unwrap(), "greetings");
/// assert_eq!(msg.payload().unwrap(), "hello");
/// ```
pub struct Broker<P = bytes::Bytes> {
    pub(crate) registry: Arc<Registry<P>>,
}

impl Broker {
    /// Creates a broker with [`Bytes`](bytes::Bytes) payloads and no
    /// channels, patterns or subscribers.
    ///
    /// For another payload type, use `Default`:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use channelcast::Broker;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Trade { price: u64 }
    ///
    /// let broker: Broker<Arc<Trade>> = Broker::default();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["trades"]).unwrap();
    /// broker.publish("trades", Arc::new(Trade { price: 7 }));
    /// sub.recv().unwrap();
    /// assert_eq!(sub.recv().unwrap().payload().unwrap().price, 7);
    /// ```
    pub fn new() -> Self {
        Broker::default()
    }
}

impl<P: Clone + Send + 'static> Broker<P> {
    /// Creates a new subscriber: an empty queue with no subscriptions, like
    /// a fresh Redis connection. Subscribe it to channels and patterns with
    /// its own methods.
    pub fn subscriber(&self) -> Subscriber<P> {
        Subscriber::new(&self.registry, None, true)
    }

    /// Starts building a subscriber with a bounded queue and an
    /// [`Overflow`](crate::Overflow) policy; see [`SubscriberBuilder`].
    pub fn subscriber_builder(&self) -> SubscriberBuilder<'_, P> {
        SubscriberBuilder::new(self)
    }

    /// The broker-wide counters (published, delivered, dropped,
    /// disconnected), read without stopping publishers.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["c"]).unwrap();
    /// broker.publish("c", "x");
    /// broker.publish("nobody", "y");
    /// let stats = broker.stats();
    /// assert_eq!((stats.published, stats.delivered, stats.dropped), (2, 1, 0));
    /// ```
    pub fn stats(&self) -> BrokerStats {
        self.registry.stats()
    }

    /// Publishes `payload` on `channel` (Redis `PUBLISH`) and returns the
    /// number of deliveries.
    ///
    /// The count is Redis's: every subscriber of `channel`, plus, for each
    /// distinct pattern that matches `channel`, that pattern's subscribers.
    /// A subscriber holding `foo`, `f*` and `fo*` counts 3 and receives 3
    /// messages: its `Message` first, then its `PMessage`s in pattern
    /// creation order. Shard subscribers are never reached.
    ///
    /// When this returns, every delivery is already in its subscriber's
    /// queue. A count of N does *not* mean the messages have been read, only
    /// that they are queued; a subscriber dropped right after still counted.
    /// Nothing is stored: with no subscribers the message is gone and the
    /// count is 0 (unless a retention rule covers the channel: see
    /// [`retain_last`](Broker::retain_last), beyond Redis).
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// assert_eq!(broker.publish("nobody", "lost"), 0);
    ///
    /// let sub = broker.subscriber();
    /// sub.subscribe(["foo"]).unwrap();
    /// sub.psubscribe(["f*", "fo*", "bar*"]).unwrap();
    /// assert_eq!(broker.publish("foo", "x"), 3);
    /// ```
    pub fn publish(&self, channel: impl AsRef<[u8]>, payload: impl Into<P>) -> usize {
        let (channel, payload) = (channel.as_ref(), payload.into());
        #[cfg(feature = "redis")]
        return self.registry.publish_local(channel, payload);
        #[cfg(not(feature = "redis"))]
        self.registry.publish(Space::Channel, channel, payload)
    }

    /// Publishes `payload` on shard channel `channel` (Redis `SPUBLISH`) and
    /// returns the number of shard subscribers it was queued for. Patterns
    /// never match shard channels.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.ssubscribe(["orders"]).unwrap();
    /// sub.psubscribe(["*"]).unwrap();
    /// assert_eq!(broker.spublish("orders", "x"), 1);
    /// assert_eq!(broker.publish("orders", "y"), 1); // only the pattern
    /// ```
    pub fn spublish(&self, channel: impl AsRef<[u8]>, payload: impl Into<P>) -> usize {
        self.registry
            .publish(Space::Shard, channel.as_ref(), payload.into())
    }

    /// The channels with at least one subscriber (Redis `PUBSUB CHANNELS
    /// [pattern]`), optionally filtered by a glob pattern, sorted by bytes.
    ///
    /// Pattern subscriptions create no channels. `None` lists everything,
    /// the empty channel included; `Some("*")` leaves the empty channel out,
    /// as Redis does.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["news.art", "news.sport", "weather"]).unwrap();
    /// sub.psubscribe(["news.*"]).unwrap();
    /// assert_eq!(broker.channels(Some("news.*")), ["news.art", "news.sport"]);
    /// assert_eq!(broker.channels(None::<&str>).len(), 3);
    /// ```
    pub fn channels(&self, pattern: Option<impl Into<Name>>) -> Vec<Name> {
        let glob = pattern.map(Glob::new);
        self.registry.channels(Space::Channel, glob.as_ref())
    }

    /// The number of exact subscribers of each channel (Redis `PUBSUB
    /// NUMSUB`): one pair per argument, in argument order, duplicates
    /// repeated, unknown channels 0. Pattern subscribers are not counted.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let (a, b) = (broker.subscriber(), broker.subscriber());
    /// a.subscribe(["x"]).unwrap();
    /// b.subscribe(["x"]).unwrap();
    /// let counts = broker.numsub(["x", "y", "x"]);
    /// assert_eq!(counts, [("x".into(), 2), ("y".into(), 0), ("x".into(), 2)]);
    /// ```
    pub fn numsub<I>(&self, channels: I) -> Vec<(Name, usize)>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.numsub_in(Space::Channel, channels)
    }

    /// The number of distinct live patterns (Redis `PUBSUB NUMPAT`): two
    /// subscribers of the same two patterns make 2.
    pub fn numpat(&self) -> usize {
        self.registry.numpat()
    }

    /// The shard channels with at least one subscriber (Redis `PUBSUB
    /// SHARDCHANNELS [pattern]`), sorted by bytes.
    pub fn shard_channels(&self, pattern: Option<impl Into<Name>>) -> Vec<Name> {
        let glob = pattern.map(Glob::new);
        self.registry.channels(Space::Shard, glob.as_ref())
    }

    /// The number of subscribers of each shard channel (Redis `PUBSUB
    /// SHARDNUMSUB`), as [`numsub`](Broker::numsub) does for channels.
    pub fn shard_numsub<I>(&self, channels: I) -> Vec<(Name, usize)>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.numsub_in(Space::Shard, channels)
    }

    fn numsub_in<I>(&self, space: Space, channels: I) -> Vec<(Name, usize)>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        channels
            .into_iter()
            .map(|name| {
                let name = name.into();
                let count = self.registry.numsub(space, &name);
                (name, count)
            })
            .collect()
    }
}

impl<P: Clone + Send + 'static> Default for Broker<P> {
    fn default() -> Self {
        Broker {
            registry: Arc::new(Registry::new()),
        }
    }
}

impl<P> Clone for Broker<P> {
    fn clone(&self) -> Self {
        Broker {
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<P> fmt::Debug for Broker<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("registry", &self.registry)
            .finish()
    }
}
