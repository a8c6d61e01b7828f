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
//! 1. **Queued on return.** When `publish` returns N, its N deliveries are in
//!    the subscribers' queues: a `try_recv` right after sees them.
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
//! 5. **Silent subscribers cost memory, not progress.** Queues are unbounded:
//!    a subscriber that never reads never blocks a publisher.
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
//!   `client-output-buffer-limit pubsub`: queues are unbounded.
//! - **Zero names** in `subscribe` is [`SubscribeError::NoNames`], where Redis
//!   answers "wrong number of arguments".
//! - **Payloads** are any `Clone + Send` type, [`bytes::Bytes`] by default;
//!   each delivery clones it (a reference-count increment for `Bytes`).

#![forbid(unsafe_code)]

mod broker;
mod dispatch;
mod error;
mod glob;
mod limits;
mod message;
mod name;
mod registry;
mod subscriber;
mod trie;

pub use broker::Broker;
pub use dispatch::Dispatcher;
pub use error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError};
pub use glob::{glob_match, Glob};
pub use limits::{BrokerStats, Overflow, SubscriberBuilder, SubscriberStats};
pub use message::{Message, Source};
pub use name::Name;
pub use subscriber::{Iter, Subscriber, TryIter};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Re-exported so that `Broker<Bytes>` and message payloads can be named
/// without adding the dependency yourself.
pub use bytes;
/// Re-exported for [`Subscriber::receiver`], to use a subscriber in
/// `select!` next to other channels.
pub use crossbeam_channel;
