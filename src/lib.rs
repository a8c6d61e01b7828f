//! Redis Pub/Sub inside your process.
//!
//! A [`Broker`] is an in-process Redis Pub/Sub server: threads share it,
//! [`publish`](Broker::publish) from anywhere, and [`Subscriber`] handles
//! receive typed [`Message`]s over crossbeam channels. No server, no
//! sockets: the same `SUBSCRIBE`, `PSUBSCRIBE`, `PUBLISH` and `PUBSUB`
//! behaviour, byte for byte, at the cost of a channel send.
//!
//! # Hello world
//!
//! ```
//! use std::thread;
//! use channelcast::{Broker, Message};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber();
//! sub.subscribe(["greetings"])?;
//!
//! let publisher = broker.clone();
//! thread::spawn(move || {
//!     publisher.publish("greetings", "hello, world");
//! })
//! .join()
//! .unwrap();
//!
//! // First the confirmation, as a Redis client would see it …
//! assert_eq!(sub.recv()?, Message::Subscribe { channel: "greetings".into(), count: 1 });
//! // … then the message.
//! match sub.recv()? {
//!     Message::Message { channel, payload } => {
//!         assert_eq!(channel, "greetings");
//!         assert_eq!(payload, "hello, world");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Channels and patterns
//!
//! A subscriber holds channels ([`subscribe`](Subscriber::subscribe)),
//! glob patterns ([`psubscribe`](Subscriber::psubscribe)) and shard channels
//! ([`ssubscribe`](Subscriber::ssubscribe)). A publish reaches every exact
//! subscriber as a [`Message::Message`] and every matching pattern's
//! subscribers as a [`Message::PMessage`]. As in Redis, a subscriber that
//! holds both a channel and matching patterns gets the message once per
//! subscription, and [`publish`](Broker::publish) counts each delivery:
//!
//! ```
//! use channelcast::{Broker, Message};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber();
//! sub.subscribe(["news.art"])?;
//! sub.psubscribe(["news.*", "*.art"])?;
//! sub.try_iter().for_each(drop); // three confirmations
//!
//! assert_eq!(broker.publish("news.art", "Monet"), 3);
//! let kinds: Vec<_> = sub.try_iter().map(|m| (m.kind(), m.pattern().cloned())).collect();
//! assert_eq!(kinds, [
//!     ("message", None),
//!     ("pmessage", Some("news.*".into())), // patterns in creation order
//!     ("pmessage", Some("*.art".into())),
//! ]);
//!
//! assert_eq!(broker.channels(None::<&str>), ["news.art"]); // patterns make no channels
//! assert_eq!(broker.numpat(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every (un)subscribe call puts Redis's confirmations in the subscriber's
//! own stream (one per name, with the running count) and returns the final
//! count. Unsubscribing with no names releases everything in that namespace.
//!
//! # Pattern syntax
//!
//! Patterns are Redis globs, matched byte for byte as Redis 7 does: `*`,
//! `?`, `[abc]`, `[^abc]`, `[a-z]`, `\` escapes, and every malformed case
//! (`[`, `[]`, `a\`, `hell[o`, reversed and signed-char ranges) behaves as in
//! Redis. The full table is on [`Glob`], which also matches single
//! patterns on its own ([`glob_match`]).
//!
//! ```
//! use channelcast::glob_match;
//!
//! assert!(glob_match("h[ae]llo", "hallo"));
//! assert!(glob_match("h[^e]llo", "hallo") && !glob_match("h[^e]llo", "hello"));
//! assert!(glob_match("hell[o", "hello")); // an open class ends with the pattern
//! assert!(!glob_match("*", "")); // `*` never matches the empty channel
//! ```
//!
//! # Guarantees
//!
//! 1. **Queued on return.** When `publish` returns, its deliveries are in
//!    the subscribers' queues: a `try_recv` right after sees them. (The count
//!    N also includes deliveries a bounded subscriber's overflow policy
//!    dropped, as Redis counts the delivery that overflowed a client.)
//! 2. **Confirmations bracket messages.** No message for a name arrives
//!    before that name's subscribe confirmation, and none after its
//!    unsubscribe confirmation.
//! 3. **FIFO per publisher.** The messages of one publishing thread reach
//!    each subscriber in publish order. For one publish, a subscriber's
//!    `Message` comes before its `PMessage`s, which come in pattern creation
//!    order (the order in which the distinct patterns last came to life).
//! 4. **Same order for everyone, per channel.** Any two subscribers that both
//!    receive the messages published on channel C (directly or through
//!    patterns) receive them in the same relative order, even when many
//!    threads publish on C at once. This is what lets replicas that apply a
//!    channel's updates converge.
//! 5. **Silent subscribers cost memory, not progress.** Queues are unbounded
//!    by default: a subscriber that never reads never blocks a publisher.
//!    Bounded subscribers choose their own trade-off (see
//!    [Slow subscribers](#slow-subscribers)); only [`Overflow::Block`] and
//!    [`Overflow::BlockFor`] make a publisher wait.
//!
//! Nothing is promised across channels: two subscribers may see publishes on
//! *different* channels interleaved differently.
//!
//! ```
//! use channelcast::Broker;
//!
//! let broker = Broker::new();
//! let (a, b) = (broker.subscriber(), broker.subscriber());
//! a.subscribe(["log"])?;
//! b.psubscribe(["l*"])?;
//! let writers: Vec<_> = (0..4)
//!     .map(|w| {
//!         let broker = broker.clone();
//!         std::thread::spawn(move || {
//!             for i in 0..100 {
//!                 broker.publish("log", format!("{w}:{i}"));
//!             }
//!         })
//!     })
//!     .collect();
//! writers.into_iter().for_each(|w| w.join().unwrap());
//!
//! let seen = |sub: &channelcast::Subscriber| -> Vec<_> {
//!     sub.try_iter().filter_map(|m| m.into_payload()).collect()
//! };
//! assert_eq!(seen(&a), seen(&b)); // same 400 messages, same order
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Slow subscribers
//!
//! By default a subscriber's queue is unbounded: a subscriber that stops
//! reading costs memory, never progress. For anything else, create it with
//! [`Broker::subscriber_builder`], a capacity (in items, in payload bytes
//! with [`SubscriberBuilder::max_payload_bytes`], or both) and an
//! [`Overflow`] policy.
//! Whatever the policy, **loss is never silent**: the subscriber finds a
//! [`Message::Lagged`] with the exact number of deliveries it missed, at the
//! place in its stream where they are missing, and [`Subscriber::stats`] /
//! [`Broker::stats`] count them. `publish` still counts a dropped delivery,
//! as Redis counts the one that overflowed a client. The bound is checked
//! before each delivery, so publishers racing on different channels may
//! each add one item past it; memory stays proportional to what is queued.
//!
//! [`Overflow::DropNewest`] (the builder's default) keeps what is queued and
//! drops what does not fit:
//!
//! ```
//! use channelcast::{Broker, Message, Overflow};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().capacity(2).overflow(Overflow::DropNewest).build();
//! sub.subscribe(["prices"])?;
//! sub.recv()?; // the confirmation
//! for price in ["1", "2", "3", "4"] {
//!     assert_eq!(broker.publish("prices", price), 1); // counted even when dropped
//! }
//! broker.publish("prices", "5"); // still full
//! let seen: Vec<_> = sub.try_iter().map(|m| m.payload_str().map(str::to_owned).ok_or(m)).collect();
//! assert_eq!(seen, [Ok("1".into()), Ok("2".into()), Err(Message::Lagged { missed: 3 })]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Overflow::DropOldest`] keeps the newest (a ticker that only cares about
//! the latest values); confirmations are never dropped:
//!
//! ```
//! use channelcast::{Broker, Message, Overflow};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().capacity(2).overflow(Overflow::DropOldest).build();
//! sub.subscribe(["prices"])?;
//! sub.recv()?;
//! for price in ["1", "2", "3", "4"] {
//!     broker.publish("prices", price);
//! }
//! assert_eq!(sub.recv()?, Message::Lagged { missed: 2 });
//! assert_eq!(sub.recv()?.payload_str(), Some("3"));
//! assert_eq!(sub.recv()?.payload_str(), Some("4"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Overflow::Block`] makes the publisher wait for room, and
//! [`Overflow::BlockFor`] waits at most a while per publish, then drops and
//! reports. A waiting publisher holds no lock that other work needs: only
//! later publishes and (un)subscribes on the *same channel* wait behind it
//! (so that the channel keeps one order). A subscriber whose own thread
//! publishes to, or (un)subscribes on, a channel waiting for it deadlocks
//! under `Block`, as do subscribers whose threads publish to each other in a
//! cycle; `BlockFor` only stalls. A publisher blocks only when a subscriber
//! of that publish has one of these two policies, so `publish` never blocks
//! an async runtime's thread otherwise.
//!
//! ```
//! use std::time::Duration;
//! use channelcast::{Broker, Message, Overflow};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().capacity(1).overflow(Overflow::Block).build();
//! sub.subscribe(["jobs"])?;
//! sub.recv()?;
//! let publisher = {
//!     let broker = broker.clone();
//!     std::thread::spawn(move || (0..100).map(|i| broker.publish("jobs", i.to_string())).sum::<usize>())
//! };
//! let got: Vec<String> = (0..100).map(|_| sub.recv().unwrap().payload_str().unwrap().to_owned()).collect();
//! assert_eq!(publisher.join().unwrap(), 100);
//! assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>()); // nothing lost
//!
//! let impatient = broker.subscriber_builder().capacity(1)
//!     .overflow(Overflow::BlockFor(Duration::from_millis(1))).build();
//! impatient.subscribe(["slow"])?;
//! broker.publish("slow", "a"); // fits
//! broker.publish("slow", "b"); // waits 1 ms, then gives up
//! broker.publish("slow", "c"); // likewise
//! assert_eq!(impatient.try_iter().last(), Some(Message::Lagged { missed: 2 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Overflow::Disconnect`] is Redis's `client-output-buffer-limit pubsub`:
//! the subscriber is unsubscribed from everything, and after receiving what
//! it had queued and a [`Message::Lagged`] counting what it lost, it gets
//! [`RecvError::Overflowed`] — so at least it knows:
//!
//! ```
//! use channelcast::{Broker, Message, Overflow, RecvError};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().capacity(2).overflow(Overflow::Disconnect).build();
//! sub.subscribe(["feed"])?;
//! for i in 0..3 {
//!     broker.publish("feed", i.to_string()); // the third overflows
//! }
//! assert_eq!(broker.numsub(["feed"])[0].1, 0); // evicted at once
//! let items: Vec<_> = sub.iter().collect(); // the confirmation, "0", "1", the loss
//! assert_eq!(items.len(), 4);
//! assert_eq!(items[3], Message::Lagged { missed: 1 });
//! assert_eq!(sub.recv(), Err(RecvError::Overflowed));
//! assert_eq!(broker.stats().disconnected, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Late joiners (beyond Redis)
//!
//! Redis forgets a message once it is delivered: a replica that starts
//! late, or a dashboard opened after the workers reported, sees nothing
//! until the next publish. channelcast can *retain* the last messages of
//! chosen channels and hand them to subscribers that ask for them. Redis
//! has no such feature, so it is off until a rule is set: with no rule,
//! nothing is kept and everything behaves exactly as in Redis.
//!
//! - **Which channels retain** is configured on the broker, per channel
//!   ([`Broker::retain_last`]), per glob of channels
//!   ([`Broker::retain_last_matching`]) or per shard channel
//!   ([`Broker::retain_last_shard`]), with how many messages each keeps.
//!   Not per publish (as MQTT's retain flag is): a channel's retained
//!   messages are then always its latest publishes with none missing in
//!   between, which is what makes the hand-over below exact; publishers
//!   stay plain `publish` calls; and what to keep, and how much memory it
//!   may take, is decided in one place.
//! - **Joining with history**: [`Subscriber::subscribe_with_history`],
//!   [`psubscribe_with_history`](Subscriber::psubscribe_with_history) and
//!   [`ssubscribe_with_history`](Subscriber::ssubscribe_with_history) queue,
//!   right behind each name's confirmation and before any live message on
//!   it, what the name covers retains (a pattern covers every matching
//!   retained channel, in byte order of channel), oldest first, as
//!   [`Message::Retained`], which tells them apart from live messages.
//! - **The hand-over is exact**: for every channel, the retained messages a
//!   subscription receives followed by the live ones are exactly the
//!   channel's publishes from some point on: no gap, no duplicate, even
//!   while other threads publish to it.
//! - **Retention makes no channel active**: [`Broker::channels`] and
//!   [`Broker::numsub`] keep Redis's meaning.
//! - **Memory** is what the rules ask for, within an optional cap on the
//!   total ([`Broker::limit_retained`] for messages,
//!   [`Broker::limit_retained_bytes`] for payload bytes): a publish that
//!   would go over the cap makes its own channel give up its oldest
//!   retained messages (down to none: then the publish is not retained);
//!   another channel's messages are never taken. Clearing
//!   ([`Broker::clear_retained`], [`Broker::clear_all_retained`]) or
//!   removing a rule (a count of 0) gives the memory back.
//!   [`Broker::stats`] shows what is retained and what the cap evicted.
//! - **Bounded subscribers**: retained messages count against the bound
//!   like deliveries; one that does not fit is dropped and reported as a
//!   [`Message::Lagged`] (pushed out of the way under
//!   [`Overflow::DropOldest`]), never waited for, and never a reason to
//!   evict the subscriber.
//!
//! ```
//! use channelcast::{Broker, Message, Source};
//!
//! let broker = Broker::new();
//! broker.retain_last_matching("status.*", 1); // each worker's last status
//!
//! broker.publish("status.w1", "starting");
//! broker.publish("status.w1", "idle");
//! broker.publish("status.w2", "busy");
//!
//! // A monitor that starts after the workers reported.
//! let monitor = broker.subscriber();
//! monitor.psubscribe_with_history(["status.*"])?;
//! broker.publish("status.w2", "idle");
//!
//! assert_eq!(monitor.recv()?.kind(), "psubscribe");
//! for (channel, status) in [("status.w1", "idle"), ("status.w2", "busy")] {
//!     match monitor.recv()? {
//!         Message::Retained { source, channel: got, payload } => {
//!             assert_eq!(source, Source::Pattern("status.*".into()));
//!             assert_eq!((got.as_str(), &payload[..]), (Some(channel), status.as_bytes()));
//!         }
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! // Then live, with nothing missed and nothing twice.
//! assert_eq!(monitor.recv()?.kind(), "pmessage");
//! assert_eq!(broker.channels(None::<&str>), Vec::<channelcast::Name>::new()); // not active
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Disconnection
//!
//! Subscribers do not keep the broker alive. When the last [`Broker`] handle
//! is dropped, each subscriber still receives everything already queued, and
//! then `recv` returns [`RecvError::Disconnected`] (and `iter` ends) instead of blocking
//! forever; (un)subscribe calls return [`SubscribeError::BrokerClosed`] /
//! [`UnsubscribeError::BrokerClosed`]. Dropping a [`Subscriber`] removes all its subscriptions
//! silently; channels and patterns left with no subscriber disappear.
//!
//! A thread that both publishes and receives holds a `Broker` clone of its
//! own, so its `iter` cannot end through disconnection while that clone
//! lives: end such loops with a message of your own (a `"shutdown"` on a
//! control channel) or use `recv_timeout`.
//!
//! ```
//! use channelcast::{Broker, RecvError};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber();
//! sub.subscribe(["c"])?;
//! broker.publish("c", "last words");
//! drop(broker);
//!
//! assert_eq!(sub.recv()?.kind(), "subscribe");
//! assert_eq!(sub.recv()?.payload().unwrap(), "last words");
//! assert_eq!(sub.recv(), Err(RecvError::Disconnected));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Scaling out
//!
//! With the cargo feature `redis` (off by default; without it the crate has
//! no networking at all), a `Bridge` joins a broker to a real Redis server
//! for chosen channels and patterns, so several processes share them; see
//! the `Bridge` type and `examples/bridge.rs`.
//!
//! # Differences from Redis
//!
//! - **No wire, no connection state.** There is no RESP, no `PING`/`RESET`
//!   in subscribe mode and no client-side buffering: messages are typed
//!   values. A subscriber is not restricted to pub/sub commands.
//! - **Orders Redis leaves to its hash tables are fixed here:** pmessages of
//!   one publish arrive in pattern creation order; unsubscribe with no names
//!   releases names in byte order; `channels` and
//!   `shard_channels` return names sorted by bytes.
//! - **Multi-name calls are not atomic.** Redis runs `SUBSCRIBE a b` as one
//!   command; here a concurrent publish on `a` may be delivered between the
//!   confirmations of `a` and `b` (never before `a`'s).
//! - **No global order across channels.** Redis is single-threaded, so all
//!   its subscribers see one global order. channelcast promises one order
//!   per channel (guarantee 4), which is what lets publishers on different
//!   channels run in parallel.
//! - **Shard channels** behave as on a single Redis node: `spublish` reaches
//!   `ssubscribe`rs of the same name; there are no slots or cluster
//!   redirections.
//! - **Slow subscribers** are not disconnected at 32 MB as with Redis's
//!   `client-output-buffer-limit pubsub`: queues are unbounded unless a
//!   subscriber asks for a bound, and then it chooses what overflow means
//!   and is told what it lost ([`Message::Lagged`]). The default stays
//!   unbounded because in one process the memory is the application's own to
//!   budget, a silent default limit would change behaviour under load, and
//!   Redis's silent eviction is its most common pub/sub complaint.
//! - **Zero names** in `subscribe` is [`SubscribeError::NoNames`], where Redis
//!   answers "wrong number of arguments".
//! - **Payloads** are any `Clone + Send` type, [`bytes::Bytes`] by default;
//!   each delivery clones it (a reference-count increment for `Bytes`).
//! - **Retained messages** (see [Late joiners](#late-joiners-beyond-redis))
//!   have no Redis counterpart; they are off unless a rule is set.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "redis")]
mod bridge;
mod broker;
mod builder;
mod dispatch;
mod error;
mod fast_hash;
mod glob;
mod held;
mod mailbox;
mod message;
mod name;
mod registry;
mod retained;
mod stats;
mod subscriber;
mod trie;

#[cfg(feature = "redis")]
pub use bridge::{Bridge, BridgeBuilder, BridgeError, BridgeStats};
pub use broker::Broker;
pub use builder::SubscriberBuilder;
pub use dispatch::Dispatcher;
pub use error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError};
pub use glob::{glob_match, Glob};
pub use mailbox::Overflow;
pub use message::{Message, Source};
pub use name::Name;
pub use stats::{BrokerStats, SubscriberStats};
pub use subscriber::{Iter, MessageStream, Recv, Subscriber, TryIter};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Re-exported so that `Broker<Bytes>` and message payloads can be named
/// without adding the dependency yourself.
pub use bytes;
/// Re-exported for [`Subscriber::ready`], to wait on a subscriber in
/// `select!` next to other channels.
pub use crossbeam_channel;
