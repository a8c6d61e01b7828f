//! `Broker`: the shared handle that publishes, creates subscribers and
//! answers `PUBSUB` questions.

use std::fmt;
use std::sync::Arc;

use crate::registry::{Registry, Space, DEFAULT_STRIPES, MAX_STRIPES};
use crate::{BrokerStats, Glob, Name, Subscriber};

/// An in-process Redis Pub/Sub server.
///
/// A `Broker` is a cheap handle (one `Arc`): clone it into every thread that
/// publishes or creates subscribers. All clones share the same channels,
/// patterns and subscribers. When the last clone is dropped, every
/// [`Subscriber`] receives what is already queued and then sees
/// "disconnected" instead of blocking forever.
///
/// The payload type `P` defaults to [`bytes::Bytes`]; any `Clone + Send + Sync`
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
    /// For another payload type, use [`Broker::with_payload`] or `Default`
    /// with a type annotation.
    pub fn new() -> Self {
        Broker::default()
    }

    /// Creates a broker whose payloads are `P` (any `Clone + Send + Sync` type;
    /// cheap clones such as `Arc<T>` are best, since each delivery clones
    /// the payload once).
    ///
    /// [`Broker::new`] is not generic on purpose: with `let broker =
    /// Broker::new();` the payload type is then always `Bytes`, so
    /// `broker.publish("c", "text")` needs no annotation. A generic `new`
    /// would leave the type to inference, which cannot choose among the many
    /// types a `&str` converts into.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use channelcast::Broker;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Trade { price: u64 }
    ///
    /// let broker = Broker::with_payload::<Arc<Trade>>();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["trades"]).unwrap();
    /// broker.publish("trades", Arc::new(Trade { price: 7 }));
    /// sub.recv().unwrap(); // the confirmation
    /// assert_eq!(sub.recv().unwrap().payload().unwrap().price, 7);
    ///
    /// // The same, spelled with `Default`:
    /// let same: Broker<Arc<Trade>> = Broker::default();
    /// # drop(same);
    /// ```
    pub fn with_payload<P: Clone + Send + Sync + 'static>() -> Broker<P> {
        Broker::default()
    }

    /// Publishes a copy of borrowed bytes or text (one copy into a new
    /// [`Bytes`](bytes::Bytes), shared by every delivery) and returns the
    /// number of deliveries, as [`publish`](Broker::publish) does.
    ///
    /// `publish` takes anything `Into<Bytes>`, which for borrowed data
    /// means `&'static` only (`Bytes` never copies implicitly); a line read
    /// into a `String` buffer that is reused needs this call instead:
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["room"]).unwrap();
    /// let mut line = String::new();
    /// for word in ["hello", "world"] {
    ///     line.clear();
    ///     line.push_str(word);
    ///     broker.publish_copy("room", &line); // `publish("room", line.as_str())` would not compile
    /// }
    /// let said: Vec<_> = sub.try_iter().filter_map(|m| m.payload_str().map(str::to_owned)).collect();
    /// assert_eq!(said, ["hello", "world"]);
    /// ```
    pub fn publish_copy(&self, channel: impl AsRef<[u8]>, payload: impl AsRef<[u8]>) -> usize {
        self.publish(channel, bytes::Bytes::copy_from_slice(payload.as_ref()))
    }

    /// [`spublish`](Broker::spublish) of a copy of borrowed bytes or text, as
    /// [`publish_copy`](Broker::publish_copy) is to `publish`.
    pub fn spublish_copy(&self, channel: impl AsRef<[u8]>, payload: impl AsRef<[u8]>) -> usize {
        self.spublish(channel, bytes::Bytes::copy_from_slice(payload.as_ref()))
    }
}

impl<P: Clone + Send + Sync + 'static> Broker<P> {
    /// Creates a new subscriber: an empty queue with no subscriptions, like
    /// a fresh Redis connection. Subscribe it to channels and patterns with
    /// its own methods.
    pub fn subscriber(&self) -> Subscriber<P> {
        Subscriber::new(&self.registry, None, true)
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
        return self
            .registry
            .publish_local(Space::Channel, channel, payload);
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
        #[cfg(feature = "redis")]
        return self
            .registry
            .publish_local(Space::Shard, channel.as_ref(), payload.into());
        #[cfg(not(feature = "redis"))]
        self.registry
            .publish(Space::Shard, channel.as_ref(), payload.into())
    }

    /// Every channel with at least one subscriber (Redis `PUBSUB
    /// CHANNELS` without a pattern), the empty channel included, sorted by
    /// bytes. Pattern subscriptions create no channels.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["news.art", "news.sport", "weather"]).unwrap();
    /// sub.psubscribe(["news.*"]).unwrap();
    /// assert_eq!(broker.channels(), ["news.art", "news.sport", "weather"]);
    /// ```
    pub fn channels(&self) -> Vec<Name> {
        self.registry.channels(Space::Channel, None)
    }

    /// The channels with at least one subscriber whose names match the glob
    /// `pattern` (Redis `PUBSUB CHANNELS pattern`), sorted by bytes. As in
    /// Redis, `"*"` leaves the empty channel out.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["news.art", "news.sport", "weather"]).unwrap();
    /// assert_eq!(broker.channels_matching("news.*"), ["news.art", "news.sport"]);
    /// ```
    pub fn channels_matching(&self, pattern: impl Into<Name>) -> Vec<Name> {
        let glob = Glob::new(pattern);
        self.registry.channels(Space::Channel, Some(&glob))
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

    /// The number of exact subscribers of one channel: `PUBSUB NUMSUB` for a
    /// single name, without the pair.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["x"]).unwrap();
    /// sub.psubscribe(["x*"]).unwrap(); // patterns are not counted
    /// assert_eq!(broker.numsub_one("x"), 1);
    /// assert_eq!(broker.numsub_one("y"), 0);
    /// ```
    pub fn numsub_one(&self, channel: impl AsRef<[u8]>) -> usize {
        self.registry.numsub(Space::Channel, channel.as_ref())
    }

    /// The number of distinct live patterns (Redis `PUBSUB NUMPAT`): two
    /// subscribers of the same two patterns make 2.
    pub fn numpat(&self) -> usize {
        self.registry.numpat()
    }

    /// Every shard channel with at least one subscriber (Redis `PUBSUB
    /// SHARDCHANNELS` without a pattern), sorted by bytes.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.ssubscribe(["orders.eu", "orders.us", "stock"]).unwrap();
    /// assert_eq!(broker.shard_channels().len(), 3);
    /// assert_eq!(broker.shard_channels_matching("orders.*"), ["orders.eu", "orders.us"]);
    /// assert!(broker.channels().is_empty()); // shard channels are a namespace of their own
    /// ```
    pub fn shard_channels(&self) -> Vec<Name> {
        self.registry.channels(Space::Shard, None)
    }

    /// The shard channels with at least one subscriber whose names match the
    /// glob `pattern` (Redis `PUBSUB SHARDCHANNELS pattern`), sorted by bytes.
    pub fn shard_channels_matching(&self, pattern: impl Into<Name>) -> Vec<Name> {
        let glob = Glob::new(pattern);
        self.registry.channels(Space::Shard, Some(&glob))
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

    /// The number of subscribers of one shard channel, as
    /// [`numsub_one`](Broker::numsub_one) does for channels.
    pub fn shard_numsub_one(&self, channel: impl AsRef<[u8]>) -> usize {
        self.registry.numsub(Space::Shard, channel.as_ref())
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

impl<P: Clone + Send + Sync + 'static> Default for Broker<P> {
    fn default() -> Self {
        Broker {
            registry: Arc::new(Registry::new(DEFAULT_STRIPES)),
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Broker<P> {
    /// Creates a broker whose channels are spread over `stripes` locks
    /// (rounded up to a power of two, at most 65,536; 0 counts as 1).
    /// [`Broker::new`] uses 128.
    ///
    /// A publish locks its channel's stripe, so publishers on distinct
    /// channels wait for each other only when their channels share a
    /// stripe; with `n` stripes, two given channels share one with
    /// probability 1/`n`. Many threads publishing on many distinct hot
    /// channels at once scale further with more stripes (measured on 16
    /// cores, 16 publishers on channels of their own: 9.7× one publisher
    /// with 1,024 stripes; with 256, 6.7×). The cost is memory: a stripe
    /// takes 128 bytes, and each stripe that holds a channel has a table of
    /// its own of at least 4 entries, so while there are few channels per
    /// stripe each channel costs more (1,000 channels: 116 bytes each with
    /// 128 stripes, 169 with 1,024).
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker: Broker = Broker::with_lock_stripes(1024);
    /// let sub = broker.subscriber();
    /// sub.subscribe(["prices"]).unwrap();
    /// assert_eq!(broker.publish("prices", "42"), 1);
    /// ```
    pub fn with_lock_stripes(stripes: usize) -> Self {
        let stripes = stripes.clamp(1, MAX_STRIPES).next_power_of_two();
        Broker {
            registry: Arc::new(Registry::new(stripes)),
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
