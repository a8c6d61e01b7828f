//! Late joiners, as the handles show them: the retention rules, limits and
//! clearing on [`Broker`], and the `*subscribe_with_history` calls on
//! [`Subscriber`]. The store and the exact hand-over are in `retained.rs`.

use crate::held::Family;
use crate::mailbox::payload_len;
use crate::retained::Rule;
use crate::space::Space;
use crate::{Broker, Glob, Name, SubscribeError, Subscriber};

/// # Late joiners (beyond Redis)
///
/// Retention keeps the last messages of chosen channels, so that a
/// subscriber that joins late with
/// [`subscribe_with_history`](Subscriber::subscribe_with_history) (or the
/// pattern and shard forms) starts from them. Redis has no such thing; with
/// no rule, nothing is kept and the broker behaves exactly like Redis. See
/// the crate docs, "Late joiners".
impl<P: Clone + Send + Sync + 'static> Broker<P> {
    /// Makes `channel` retain its last `count` publishes (0: retain nothing
    /// and drop what it retains, unless another rule covers it).
    ///
    /// Every publish on a retained channel is kept, whether or not anyone
    /// subscribes; the oldest go once there are more than `count`. When
    /// several rules cover a channel, it keeps the largest count. Changing
    /// a rule trims or drops what it retains at once. Retention does not
    /// make a channel *active*: [`channels`](Broker::channels) and
    /// [`numsub`](Broker::numsub) keep Redis's meaning.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// broker.retain_last("config", 2);
    /// for version in ["v1", "v2", "v3"] {
    ///     broker.publish("config", version);
    /// }
    /// assert_eq!(broker.retained("config"), ["v2", "v3"]);
    /// assert!(broker.channels().is_empty()); // retained, not active
    /// ```
    pub fn retain_last(&self, channel: impl Into<Name>, count: usize) {
        self.registry
            .retained
            .set_rule(Rule::Channel(Space::Channel, channel.into()), count);
    }

    /// Makes every channel matching the glob `pattern` retain its last
    /// `count` publishes, as [`retain_last`](Broker::retain_last) does for
    /// one channel (0 removes this rule). Glob rules cover channels, never
    /// shard channels. Each publish on a retained broker checks the glob
    /// rules one by one, so keep them few.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// broker.retain_last_matching("status.*", 1);
    /// broker.publish("status.w1", "idle");
    /// broker.publish("status.w1", "busy");
    /// broker.publish("jobs", "not retained");
    /// assert_eq!(broker.retained("status.w1"), ["busy"]);
    /// assert!(broker.retained("jobs").is_empty());
    /// ```
    pub fn retain_last_matching(&self, pattern: impl Into<Name>, count: usize) {
        self.registry
            .retained
            .set_rule(Rule::Pattern(Glob::new(pattern)), count);
    }

    /// Makes shard channel `channel` retain its last `count` publishes (with
    /// [`spublish`](Broker::spublish)), for
    /// [`ssubscribe_with_history`](Subscriber::ssubscribe_with_history).
    pub fn retain_last_shard(&self, channel: impl Into<Name>, count: usize) {
        self.registry
            .retained
            .set_rule(Rule::Channel(Space::Shard, channel.into()), count);
    }

    /// Drops what `channel` retains now and returns how many messages that
    /// was; its memory is given back. The rules stay: later publishes are
    /// retained again.
    pub fn clear_retained(&self, channel: impl AsRef<[u8]>) -> usize {
        self.registry
            .retained
            .clear(Space::Channel, channel.as_ref())
    }

    /// Drops what shard channel `channel` retains, as
    /// [`clear_retained`](Broker::clear_retained) does for a channel.
    pub fn clear_retained_shard(&self, channel: impl AsRef<[u8]>) -> usize {
        self.registry.retained.clear(Space::Shard, channel.as_ref())
    }

    /// Drops everything every channel and shard channel retains; returns
    /// how many messages that was. The rules stay.
    pub fn clear_all_retained(&self) -> usize {
        self.registry.retained.clear_all()
    }

    /// What `channel` retains now, oldest first (a copy: payloads are
    /// cloned).
    pub fn retained(&self, channel: impl AsRef<[u8]>) -> Vec<P> {
        self.registry
            .retained
            .snapshot(Space::Channel, channel.as_ref())
    }

    /// Caps the number of messages retained by all channels together
    /// (unlimited by default).
    ///
    /// A publish that would take the total over the cap makes *its own*
    /// channel give up its oldest retained messages, down to none (then the
    /// publish itself is not retained); another channel's messages are never
    /// taken. What a channel retains thus stays its latest publishes with
    /// nothing missing in between, so late joiners' hand-overs stay exact;
    /// but channels that retained first keep their share, so make room by
    /// lowering counts or clearing. Setting a cap below what is retained
    /// evicts oldest messages at once. Evictions are counted in
    /// [`BrokerStats::retained_evicted`](crate::BrokerStats::retained_evicted). Under concurrent publishes on
    /// different channels, a store may give up a message more than
    /// strictly needed.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// broker.retain_last_matching("*", 10);
    /// broker.limit_retained(3);
    /// for i in 0..3 {
    ///     broker.publish("a", i.to_string());
    /// }
    /// broker.publish("b", "no room");
    /// broker.publish("a", "3"); // "a" makes room in its own store
    /// assert_eq!(broker.retained("a"), ["1", "2", "3"]);
    /// assert!(broker.retained("b").is_empty());
    /// assert_eq!(broker.stats().retained_evicted, 2);
    /// ```
    pub fn limit_retained(&self, max_messages: usize) {
        self.registry.retained.limit_messages(max_messages);
    }
}

impl<P: AsRef<[u8]> + Clone + Send + Sync + 'static> Broker<P> {
    /// Caps the payload bytes retained by all channels together (each
    /// message counts its payload's length, at least 1), with the policy of
    /// [`limit_retained`](Broker::limit_retained). From the first call on,
    /// [`BrokerStats::retained_bytes`](crate::BrokerStats::retained_bytes) reports the retained payload bytes.
    pub fn limit_retained_bytes(&self, max_bytes: usize) {
        self.registry
            .retained
            .limit_bytes(max_bytes, payload_len::<P>);
    }
}

/// # Late joiners (beyond Redis)
///
/// The `*_with_history` calls work as their plain counterparts, and also
/// queue, right behind each new name's confirmation and before any live
/// message on it, the messages the broker retains for what the name
/// covers (see [`Broker::retain_last`]), as [`Message::Retained`](crate::Message::Retained), oldest
/// first. For every channel, the retained messages followed by the live
/// ones are exactly the channel's publishes from some point on: no gap, no
/// duplicate, even while others publish. A name the subscriber already
/// holds is confirmed again with no history (its live messages already
/// flow). Retained messages count against a bounded subscriber's bound; one
/// that does not fit is dropped (pushed out of the way under
/// [`Overflow::DropOldest`](crate::Overflow::DropOldest)) and reported as a
/// [`Message::Lagged`](crate::Message::Lagged), never waited for and never a reason for eviction.
impl<P: Clone + Send + Sync + 'static> Subscriber<P> {
    /// [`subscribe`](Subscriber::subscribe), then each channel's retained
    /// messages right behind its confirmation.
    ///
    /// ```
    /// use channelcast::{Broker, Message, Source};
    ///
    /// let broker = Broker::new();
    /// broker.retain_last("config", 1);
    /// broker.publish("config", "v1");
    /// broker.publish("config", "v2");
    ///
    /// let late = broker.subscriber();
    /// late.subscribe_with_history(["config"]).unwrap();
    /// broker.publish("config", "v3");
    /// assert_eq!(late.recv().unwrap().kind(), "subscribe");
    /// assert_eq!(late.recv().unwrap(), Message::Retained {
    ///     source: Source::Channel("config".into()),
    ///     channel: "config".into(),
    ///     payload: "v2".into(),
    /// });
    /// assert_eq!(late.recv().unwrap().kind(), "message"); // v3, live
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`subscribe`](Subscriber::subscribe).
    pub fn subscribe_with_history<I>(&self, channels: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Channel, channels, true)
    }

    /// [`psubscribe`](Subscriber::psubscribe), then, behind each pattern's
    /// confirmation, the retained messages of every channel it matches,
    /// channel by channel in byte order, each channel's oldest first.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// broker.retain_last_matching("status.*", 1);
    /// broker.publish("status.w2", "idle");
    /// broker.publish("status.w1", "busy");
    ///
    /// let monitor = broker.subscriber_builder().confirmations(false).build();
    /// monitor.psubscribe_with_history(["status.*"]).unwrap();
    /// let seen: Vec<_> = monitor
    ///     .try_iter()
    ///     .map(|m| (m.channel().unwrap().to_string(), m.payload_str().unwrap().to_owned()))
    ///     .collect();
    /// assert_eq!(seen, [("status.w1".into(), "busy".into()), ("status.w2".into(), "idle".into())]);
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`subscribe`](Subscriber::subscribe).
    pub fn psubscribe_with_history<I>(&self, patterns: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Pattern, patterns, true)
    }

    /// [`ssubscribe`](Subscriber::ssubscribe), then each shard channel's
    /// retained messages (see [`Broker::retain_last_shard`]).
    ///
    /// # Errors
    ///
    /// As for [`subscribe`](Subscriber::subscribe).
    pub fn ssubscribe_with_history<I>(&self, channels: I) -> Result<usize, SubscribeError>
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.subscribe_in(Family::Shard, channels, true)
    }
}
