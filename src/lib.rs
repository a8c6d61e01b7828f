//! Redis Pub/Sub inside your process.
//!
//! A [`Broker`] is an in-process Redis Pub/Sub server: threads share it,
//! [`publish`](Broker::publish) from anywhere, and [`Subscriber`] handles
//! receive typed [`Message`]s (and offer a crossbeam channel to `select!`
//! on). No server, no sockets: the same `SUBSCRIBE`, `PSUBSCRIBE`,
//! `PUBLISH` and `PUBSUB` behaviour, byte for byte, in process.
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
//! assert_eq!(broker.channels(), ["news.art"]); // patterns make no channels
//! assert_eq!(broker.numpat(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every (un)subscribe call puts Redis's confirmations in the subscriber's
//! own stream (one per name, with the running count) and returns the final
//! count. Redis's argument-less `UNSUBSCRIBE` is
//! [`unsubscribe_all`](Subscriber::unsubscribe_all) (and `punsubscribe_all`,
//! `sunsubscribe_all`); an empty list of names is an error, never "all".
//! A subscriber built with
//! [`confirmations(false)`](SubscriberBuilder::confirmations) gets messages
//! only (redis-py's `ignore_subscribe_messages`).
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
//!    [`Overflow::BlockFor`] make a publisher wait, and a waiting publisher
//!    holds up only later publishes and unsubscribes on its own channel.
//! 6. **A publish is atomic in every stream.** For any subscriber and any
//!    publish, the subscriber's deliveries from that publish (its `message`
//!    and its `pmessage`s) are queued together, with nothing between them
//!    (none of its own confirmations either), and they are exactly the
//!    deliveries that the subscriptions confirmed in its stream at that
//!    point entail, as if the publish had happened at one instant, as in
//!    Redis.
//!
//! These hold on every way of receiving: [`recv`](Subscriber::recv) and its
//! timed and non-blocking forms, [`recv_many`](Subscriber::recv_many),
//! [`recv_async`](Subscriber::recv_async) and [`stream`](Subscriber::stream),
//! and `select!` through [`ready`](Subscriber::ready), because every one of
//! them takes items from the same place (the subscriber's mailbox, which
//! also keeps its bound, its lag reports and its counters).
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
//! # Receiving next to other channels: `select!`
//!
//! [`Subscriber::ready`] is a readiness handle: a crossbeam receiver that
//! fires whenever an item may be waiting. Wait on it in
//! [`crossbeam_channel::select!`] next to your other channels, then drain
//! the subscriber with [`try_recv`](Subscriber::try_recv) until
//! [`TryRecvError::Empty`]. Items never travel through the handle, so a
//! bounded subscriber's bound, lag reports and counters stay exact:
//!
//! ```
//! use crossbeam_channel::{select, unbounded};
//! use channelcast::{Broker, TryRecvError};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().confirmations(false).build();
//! sub.subscribe(["orders"])?;
//! let (stop_tx, stop_rx) = unbounded::<()>();
//! broker.publish("orders", "o1");
//! stop_tx.send(())?;
//!
//! let mut handled = Vec::new();
//! loop {
//!     select! {
//!         recv(sub.ready()) -> _ => loop {
//!             match sub.try_recv() {
//!                 Ok(msg) => handled.push(msg.payload_str().unwrap_or_default().to_owned()),
//!                 Err(TryRecvError::Empty) => break,
//!                 Err(_) => return Ok(()), // the broker is gone
//!             }
//!         },
//!         recv(stop_rx) -> _ => break, // another thread asked this loop to stop
//!     }
//! }
//! # let _ = handled;
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
//! [`Broker::stats`] count them exactly (see [`SubscriberStats`] and
//! [`BrokerStats`] for what each counter means; the two always agree).
//! `publish` still counts a dropped delivery, as Redis counts the one that
//! overflowed a client.
//!
//! The capacity counts deliveries (`message`, `pmessage`, `smessage`);
//! confirmations and lag reports are never bounded, dropped or displaced.
//! The bound is exact: it is checked and applied under the subscriber's own
//! lock. The deliveries of one publish to one subscriber are admitted
//! together (guarantee 6), and anything fits into a queue that holds no
//! delivery, so `capacity(0)` means `capacity(1)` and nothing can be stuck.
//! Memory stays proportional to what is queued.
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
//! later publishes and unsubscribe calls on the *same channel* wait behind
//! it (so that the channel keeps one order; subscribing, dropping a
//! subscriber and evictions never wait). A subscriber whose own thread
//! publishes to, or unsubscribes from, a channel waiting for it deadlocks
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
//! assert_eq!(broker.numsub_one("feed"), 0); // evicted at once
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
//! assert_eq!(broker.channels(), Vec::<channelcast::Name>::new()); // not active
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
//! lives: stop such loops from outside, as the next section shows.
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
//! # Stopping a receive loop
//!
//! A [`Stopper`] is a stop signal any thread can fire. A plain loop waits on
//! it next to the subscriber's [readiness handle](Subscriber::ready) with
//! crossbeam's `select!` (no timeout, no polling) and drains with
//! `try_recv` when the subscriber is ready:
//!
//! ```
//! use std::thread;
//! use channelcast::crossbeam_channel::select;
//! use channelcast::{Broker, Stopper, TryRecvError};
//!
//! let broker = Broker::new();
//! let sub = broker.subscriber();
//! sub.subscribe(["work"])?;
//! let stopper = Stopper::new();
//! let signal = stopper.clone();
//! let keep_alive = broker.clone(); // the loop's own handle: disconnection alone would never end it
//! let worker = thread::spawn(move || {
//!     let _broker = keep_alive;
//!     let mut handled = 0;
//!     loop {
//!         select! {
//!             recv(signal.signal()) -> _ => break, // stopped
//!             recv(sub.ready()) -> _ => loop {
//!                 match sub.try_recv() {
//!                     Ok(msg) => handled += usize::from(msg.is_delivery()),
//!                     Err(TryRecvError::Empty) => break,
//!                     Err(_) => return handled, // disconnected or evicted
//!                 }
//!             },
//!         }
//!     }
//!     handled
//! });
//! broker.publish("work", "a");
//! stopper.stop();
//! let handled = worker.join().unwrap();
//! assert!(handled <= 1); // stopped before or after "a": either is a clean end
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Dispatcher`] runs this loop for you:
//! [`run_until`](Dispatcher::run_until) takes a `Stopper`, and
//! [`spawn`](Dispatcher::spawn) runs the table in a thread of its own and
//! returns a [`DispatcherThread`] with `stop` and `join` (redis-py's
//! `run_in_thread`). Each returns a [`RunReport`] saying why the loop
//! [ended](Ended) (stopped, disconnected, or evicted by
//! [`Overflow::Disconnect`]) and how many messages a handler ran for; lag
//! reports reach [`Dispatcher::on_lagged`] (or the unhandled handler), so a
//! dispatcher never loses messages silently either.
//!
//! # Async
//!
//! [`Subscriber::recv_async`] is `recv` as a future, and
//! [`Subscriber::stream`] is the subscriber as a [`futures_core::Stream`]
//! that ends where `iter` would. They work on any executor: the publisher
//! that queues an item wakes the waiting task directly (no helper thread,
//! no polling), and no runtime feature is needed — async support is always
//! compiled, as it costs the blocking path one empty-list check per push.
//!
//! ```
//! use channelcast::Broker;
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! # runtime.block_on(async {
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().confirmations(false).build();
//! sub.subscribe(["events"])?;
//! let consumer = tokio::spawn(async move {
//!     let mut seen = Vec::new();
//!     // Ends when every Broker handle is gone and the queue is drained.
//!     while let Ok(msg) = sub.recv_async().await {
//!         seen.push(msg.payload_str().unwrap_or_default().to_owned());
//!     }
//!     seen
//! });
//! broker.publish("events", "one");
//! broker.publish("events", "two");
//! drop(broker);
//! assert_eq!(consumer.await?, ["one", "two"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Cancel-safe.** Dropping a `recv_async` future (or a `stream`) before it
//! resolves loses nothing: the item stays queued for the next receive. So
//! `recv_async` can sit in a `tokio::select!` loop next to a socket or a
//! timer, and `tokio::time::timeout(d, sub.recv_async())` is safe.
//!
//! **Publishing from async code.** `publish` never waits — it only queues —
//! unless a subscriber of that publish was built with [`Overflow::Block`]
//! or [`Overflow::BlockFor`]. Those two make the publisher wait for the
//! subscriber to make room, which would stall a runtime thread (and, on a
//! current-thread runtime, deadlock if the subscriber is a task of the same
//! runtime). Where a publish may meet such a subscriber, publish from
//! `tokio::task::spawn_blocking`, or give the subscriber `BlockFor` (a
//! bounded stall, then a reported loss) or a dropping policy:
//!
//! ```
//! use channelcast::{Broker, Overflow};
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! # runtime.block_on(async {
//! let broker = Broker::new();
//! let sub = broker.subscriber_builder().capacity(1).overflow(Overflow::Block)
//!     .confirmations(false).build();
//! sub.subscribe(["jobs"])?;
//! let consumer = tokio::spawn(async move {
//!     let mut n = 0;
//!     while sub.recv_async().await.is_ok() {
//!         n += 1;
//!     }
//!     n
//! });
//! // Waits for room as often as it needs to, off the runtime's thread.
//! tokio::task::spawn_blocking(move || {
//!     for i in 0..100 {
//!         broker.publish("jobs", i.to_string());
//!     }
//! })
//! .await?;
//! assert_eq!(consumer.await?, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/async_rooms.rs` serves chat rooms with one task per
//! connection.
//!
//! # Scaling out
//!
//! With the cargo feature `redis` (off by default; without it the crate has
//! no networking at all), a `Bridge` joins a broker to a real Redis server
//! for chosen channels and patterns, so several processes share them; see
//! the `Bridge` type and `examples/bridge.rs`.
//!
//! # Cargo features
//!
//! | feature | default | what it adds | needs |
//! |---|---|---|---|
//! | (none) | | the whole in-process broker, blocking and async receives | Rust 1.77 |
//! | `redis` | off | `Bridge`: channels and patterns shared with a Redis server (networking, via redis-rs) | Rust 1.88 |
//!
//! Async support (`recv_async`, `stream`) is not a feature: it is always
//! there, needs no runtime, and adds only `futures-core` (the `Stream`
//! trait) to the dependencies.
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
//!   answers "wrong number of arguments". In `unsubscribe` (and
//!   `punsubscribe`, `sunsubscribe`) zero names is
//!   [`UnsubscribeError::NoNames`] too, where Redis releases everything:
//!   a computed list that happens to be empty must not unsubscribe from all.
//!   Redis's argument-less form is
//!   [`unsubscribe_all`](Subscriber::unsubscribe_all) (`punsubscribe_all`,
//!   `sunsubscribe_all`).
//! - **Payloads** are any `Clone + Send + Sync` type (subscribers of one channel may share one stored copy, read from their own threads), [`bytes::Bytes`] by default;
//!   each delivery clones it (a reference-count increment for `Bytes`).
//! - **Retained messages** (see [Late joiners](#late-joiners-beyond-redis))
//!   have no Redis counterpart; they are off unless a rule is set.

// `unsafe` is denied everywhere but in `write_once` (a channel log's
// write-once slot; its tests run under Miri in CI).
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
#[cfg(feature = "redis")]
mod bridge;
mod broker;
mod builder;
mod dispatch;
mod error;
mod fast_hash;
mod glob;
mod held;
mod late_joiners;
mod log;
mod mailbox;
mod members;
mod message;
mod name;
mod registry;
mod retained;
mod space;
mod spare;
mod spin_lock;
mod stats;
mod stop;
mod subscriber;
mod trie;
#[allow(unsafe_code)]
mod write_once;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use bridge::{Bridge, BridgeBuilder, BridgeError, BridgeOverflow, BridgeStats, ConnectError};
pub use broker::Broker;
pub use builder::SubscriberBuilder;
pub use dispatch::{Dispatcher, DispatcherThread, Ended, RunReport};
pub use error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError};
pub use glob::{glob_match, glob_match_bytes, Glob};
pub use mailbox::Overflow;
pub use message::{Message, Source};
pub use name::Name;
pub use stats::{BrokerStats, SubscriberStats};
pub use stop::Stopper;
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
