//! Tests for memory use, measured with a counting global allocator.
//!
//! The allocator wraps `std::alloc::System` and keeps two atomic counters:
//! the bytes live right now and the bytes ever allocated. Each figure is the
//! difference of a counter around one step, taken on this test's thread
//! while nothing else in the process allocates: all measurements run in a
//! single `#[test]`, one after the other, because tests of one binary run in
//! parallel threads and would disturb a process-wide counter.
//!
//! Sizes are the sizes requested from the allocator (its own rounding and
//! headers are not counted). The figures are printed; see them with
//! `cargo test --test memory -- --nocapture`.

// `GlobalAlloc` is an unsafe trait: implementing it is the only unsafe code
// here, and it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use channelcast::{Broker, Message, Name, Subscriber};

// ---- the counting allocator ---------------------------------------------------

/// Bytes currently allocated.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated since the start (frees not subtracted; a reallocation
/// counts its new size).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Bytes handed to reallocations (the old sizes: what a reallocation that
/// cannot grow in place copies), since the start.
static REALLOCATED: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments and
// only updates counters on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            REALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    i64::try_from(LIVE.load(Ordering::SeqCst)).expect("fits in i64")
}

fn allocated() -> i64 {
    i64::try_from(ALLOCATED.load(Ordering::SeqCst)).expect("fits in i64")
}

fn count(n: usize) -> i64 {
    i64::try_from(n).expect("fits in i64")
}

/// `total / n`, to one decimal, for printing.
#[allow(clippy::cast_precision_loss)]
fn per(total: i64, n: usize) -> f64 {
    (total as f64 / n as f64 * 10.0).round() / 10.0
}

const KIB: i64 = 1024;
const MIB: i64 = 1024 * KIB;

// ---- helpers -------------------------------------------------------------------

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<Name> {
    range.map(|i| Name::from(format!("{prefix}{i}"))).collect()
}

fn drain(sub: &Subscriber) {
    sub.try_iter().for_each(drop);
}

/// Runs every code path once, so that one-time allocations (thread locals,
/// lazily created state) happen before any baseline is taken.
fn warm_up() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["warm", "up"]).unwrap();
    sub.psubscribe(["w*"]).unwrap();
    broker.publish("warm", "x");
    drain(&sub);
    sub.unsubscribe(["warm"]).unwrap();
    sub.punsubscribe_all().unwrap();
    drain(&sub);
    drop(sub);
    drop(broker);
}

// ---- measurements -----------------------------------------------------------

/// Bytes per additional channel subscription: one subscriber already holds
/// `held` channels and subscribes to `more` new ones. The names are built
/// before the baseline and kept alive; they are short (inline), so each map
/// and set that holds one holds a copy of its bytes, which the delta
/// includes (the subscriber's own set and the broker's channel map); a name
/// over 22 bytes would be shared instead.
fn per_subscription(held: usize, more: usize) -> i64 {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let old = names("held:", 0..held);
    if held > 0 {
        sub.subscribe(&old).unwrap();
        drain(&sub);
    }
    let new = names("more:", 0..more);

    let before = live();
    sub.subscribe(&new).unwrap();
    drain(&sub);
    let delta = live() - before;

    drop(sub);
    delta / count(more)
}

/// Bytes per subscriber with no subscription (heap only; the handle itself
/// is `size_of::<Subscriber>()` more, wherever it is kept).
fn per_idle_subscriber(n: usize) -> i64 {
    let broker = Broker::new();
    let mut subs: Vec<Subscriber> = Vec::with_capacity(n);

    let before = live();
    subs.extend((0..n).map(|_| broker.subscriber()));
    let delta = live() - before;

    drop(subs);
    delta / count(n)
}

/// Bytes a subscriber keeps once it has received and drained messages
/// (a burst of 100, then a steady one-in-one-out stream), beyond what it
/// held just after subscribing (without confirmations, so that nothing was
/// queued before): `(queue-fed, log reader)`. Queue-fed: each of `n`
/// subscribers holds a channel of its own; log readers: `n` subscribers of
/// one channel.
fn per_used_subscriber(n: usize) -> (i64, i64) {
    let payload = Bytes::from_static(b"payload");
    let use_them = |broker: &Broker, subs: &[Subscriber], channels: &[Name]| {
        for _ in 0..100 {
            for channel in channels {
                broker.publish(channel, payload.clone());
            }
        }
        subs.iter().for_each(drain);
        for _ in 0..10 {
            for channel in channels {
                broker.publish(channel, payload.clone());
            }
            subs.iter().for_each(drain);
        }
    };

    let broker = Broker::new();
    let channels: Vec<Name> = (0..n).map(|i| Name::from(format!("own:{i}"))).collect();
    let subs: Vec<Subscriber> = channels
        .iter()
        .map(|channel| {
            let sub = broker.subscriber_builder().confirmations(false).build();
            sub.subscribe([channel]).unwrap();
            sub
        })
        .collect();
    let before = live();
    use_them(&broker, &subs, &channels);
    let queue_fed = (live() - before) / count(n);
    drop(subs);

    let broker = Broker::new();
    let shared = [Name::from("shared")];
    let subs: Vec<Subscriber> = (0..n)
        .map(|_| {
            let sub = broker.subscriber_builder().confirmations(false).build();
            sub.subscribe(&shared).unwrap();
            sub
        })
        .collect();
    let before = live();
    use_them(&broker, &subs, &shared);
    let log_reader = (live() - before) / count(n);
    (queue_fed, log_reader)
}

/// Bytes per distinct pattern `user:{i}:*`, one subscriber holding them
/// all (names built beforehand, as for channels; inline, so the copies in
/// the pattern table's maps are included).
fn per_pattern(n: usize) -> i64 {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let patterns: Vec<Name> = (0..n).map(|i| Name::from(format!("user:{i}:*"))).collect();

    let before = live();
    sub.psubscribe(&patterns).unwrap();
    drain(&sub);
    let delta = live() - before;

    assert_eq!(broker.numpat(), n);
    drop(sub);
    delta / count(n)
}

/// Publishes a 1 MiB payload to `n` subscribers and receives every
/// delivery; returns (bytes allocated, live-bytes growth) over the publish
/// and the receives, with all `n` received payloads still held.
fn zero_copy(n: usize) -> (i64, i64) {
    let broker = Broker::new();
    let subs: Vec<Subscriber> = (0..n)
        .map(|_| {
            let sub = broker.subscriber();
            sub.subscribe(["big"]).unwrap();
            drain(&sub);
            sub
        })
        .collect();
    let payload = Bytes::from(vec![0x5A; 1 << 20]);
    let mut received: Vec<Bytes> = Vec::with_capacity(n);

    let (allocated_before, live_before) = (allocated(), live());
    assert_eq!(broker.publish("big", payload.clone()), n);
    for sub in &subs {
        match sub.try_recv().unwrap() {
            Message::Message { payload, .. } => received.push(payload),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    let (allocated_delta, live_delta) = (allocated() - allocated_before, live() - live_before);

    for copy in &received {
        assert_eq!(
            copy.as_ptr(),
            payload.as_ptr(),
            "a delivery copied the payload"
        );
        assert_eq!(copy.len(), payload.len());
    }
    (allocated_delta, live_delta)
}

/// Live-bytes deltas against the baseline taken before a broker existed.
#[derive(Debug)]
struct Returns {
    /// One subscriber subscribed to `n` channels, then unsubscribed from
    /// each by name; the subscriber is still alive.
    unsubscribed: i64,
    /// … and the subscriber dropped.
    dropped: i64,
    /// A second subscriber subscribed to the same number of other channels
    /// and was dropped without unsubscribing.
    second_round: i64,
    /// … and the broker dropped.
    broker_dropped: i64,
}

fn memory_returns(n: usize) -> Returns {
    let baseline = live();
    let broker = Broker::new();

    let sub = broker.subscriber();
    sub.subscribe((0..n).map(|i| format!("gone:{i}"))).unwrap();
    drain(&sub);
    assert_eq!(broker.channels().len(), n);
    sub.unsubscribe((0..n).map(|i| format!("gone:{i}")))
        .unwrap();
    drain(&sub);
    assert!(broker.channels().is_empty());
    let unsubscribed = live() - baseline;
    drop(sub);
    let dropped = live() - baseline;

    let sub = broker.subscriber();
    sub.subscribe((0..n).map(|i| format!("again:{i}"))).unwrap();
    drain(&sub);
    drop(sub);
    assert!(broker.channels().is_empty());
    let second_round = live() - baseline;

    drop(broker);
    let broker_dropped = live() - baseline;
    Returns {
        unsubscribed,
        dropped,
        second_round,
        broker_dropped,
    }
}

/// A queue-fed subscriber taking a stream two items at a time (each
/// receive of a pair swaps the queue out into the receivers' batch):
/// `(bytes allocated per pair once warm, bytes kept once a receive found
/// it empty)`, the latter beyond what it held just after subscribing.
fn pairs_stream(rounds: usize) -> (i64, i64) {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(["pairs"]).unwrap();
    let payload = bytes::Bytes::from_static(b"payload");
    let baseline = live();
    let pair = || {
        broker.publish("pairs", payload.clone());
        broker.publish("pairs", payload.clone());
        sub.try_recv().expect("the first of a pair");
        sub.try_recv().expect("the second of a pair");
    };
    for _ in 0..10 {
        pair();
    }
    let before = allocated();
    for _ in 0..rounds {
        pair();
    }
    let per_pair = (allocated() - before) / count(rounds);
    assert!(sub.try_recv().is_err(), "every pair was received");
    (per_pair, live() - baseline)
}

/// `(bytes handed to reallocations while `n` messages queue up for a
/// subscriber nobody drains, bytes it keeps once exactly those `n` are
/// received)`. A queue that doubles one buffer reallocates (and may copy)
/// the whole backlog at each doubling, with the allocator's lock held; one
/// that grows by chunks reallocates only its first chunk (while it grows to
/// 64 items) and its list of chunks. A receiver that stops after its last
/// message (no receive finds the subscriber empty) must not leave the
/// backlog's room behind.
fn reallocated_while_queuing(n: usize) -> (i64, i64) {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(["backlog"]).unwrap();
    let payload = Bytes::from_static(b"payload");
    let baseline = live();
    let before = REALLOCATED.load(Ordering::SeqCst);
    for _ in 0..n {
        broker.publish("backlog", payload.clone());
    }
    let moved = REALLOCATED.load(Ordering::SeqCst) - before;
    assert_eq!(sub.len(), n, "everything queued");
    for _ in 0..n {
        sub.try_recv().expect("queued");
    }
    let kept = live() - baseline;
    (i64::try_from(moved).expect("fits in i64"), kept)
}

/// Prints and checks [`reallocated_while_queuing`]: a backlog grows without
/// reallocating what it holds, and leaves no room behind once received.
fn reallocated_checked() {
    let (moved, kept) = reallocated_while_queuing(100_000);
    eprintln!(
        "queuing 100,000 messages for an undrained subscriber: {moved} B reallocated; \
         {kept} B kept once exactly those were received"
    );
    assert!(
        moved <= 64 * KIB,
        "a backlog of 100,000 messages reallocated {moved} B"
    );
    assert!(
        kept <= 16 * KIB,
        "a subscriber that received exactly its backlog of 100,000 kept {kept} B"
    );
}

/// How the receive that finds a subscriber empty is made.
#[derive(Debug, Clone, Copy)]
enum EmptyReceive {
    Poll,
    Sleep,
    Async,
}

/// Bytes a queue-fed subscriber keeps once a receive (made as `empty`
/// says) found it empty after a burst of `burst` received exactly (its
/// drained batch keeps its room) and then a pair (whose swap hands that
/// room to the queue).
fn kept_after_burst(burst: usize, empty: EmptyReceive) -> i64 {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(["burst"]).unwrap();
    let payload = bytes::Bytes::from_static(b"payload");
    // The first sleep of a thread or the first runtime allocates for good
    // (parking_lot's thread data, tokio's globals): not the subscriber's.
    receive_empty(&broker.subscriber(), empty);
    let baseline = live();
    for _ in 0..burst {
        broker.publish("burst", payload.clone());
    }
    for _ in 0..burst {
        sub.try_recv().expect("an item of the burst");
    }
    for _ in 0..2 {
        broker.publish("burst", payload.clone());
    }
    for _ in 0..2 {
        sub.try_recv().expect("an item of the pair");
    }
    receive_empty(&sub, empty);
    live() - baseline
}

/// One receive made as `empty` says on a subscriber with nothing waiting.
fn receive_empty(sub: &Subscriber, empty: EmptyReceive) {
    match empty {
        EmptyReceive::Poll => assert!(sub.try_recv().is_err(), "everything was received"),
        EmptyReceive::Sleep => assert!(
            sub.recv_timeout(Duration::from_millis(5)).is_err(),
            "everything was received"
        ),
        EmptyReceive::Async => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime");
            let waited = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(5), sub.recv_async()).await
            });
            assert!(waited.is_err(), "everything was received");
            drop(runtime);
        }
    }
}

/// Bytes allocated per round once warm when a receiver on another thread
/// waits for each message, blocked in `recv_timeout` or (`asynchronous`)
/// awaiting `recv_async` on a runtime of its own (it usually finds its
/// queue empty and sleeps or returns pending, handing the queue's room to
/// the broker's spare room, and the next publish takes it back): `(per
/// round, rounds in which the receiver found its queue empty)`. The second
/// figure shows the path was taken.
fn sleeping_receiver_allocations(rounds: usize, asynchronous: bool) -> (i64, usize) {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(["ping"]).unwrap();
    let payload = Bytes::from_static(b"payload");
    let (ack, acked) = crossbeam_channel::bounded::<bool>(1);
    let (per_round, slept) = std::thread::scope(|scope| {
        scope.spawn(|| {
            if !asynchronous {
                for _ in 0..rounds + 100 {
                    // Empty now: this receive goes to sleep (or the publish won the race).
                    let empty = sub.is_empty();
                    sub.recv_timeout(Duration::from_secs(10))
                        .expect("the round's message");
                    ack.send(empty).expect("the publisher waits");
                }
                return;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                for _ in 0..rounds + 100 {
                    // Empty now: this poll returns pending (or the publish won the race).
                    let empty = sub.is_empty();
                    tokio::time::timeout(Duration::from_secs(10), sub.recv_async())
                        .await
                        .expect("the round's message in time")
                        .expect("the round's message");
                    ack.send(empty).expect("the publisher waits");
                }
            });
        });
        let round = || {
            broker.publish("ping", payload.clone());
            acked
                .recv_timeout(Duration::from_secs(10))
                .expect("the receiver acknowledged")
        };
        for _ in 0..100 {
            round();
        }
        let before = allocated();
        let slept = (0..rounds).filter(|_| round()).count();
        ((allocated() - before) / count(rounds), slept)
    });
    (per_round, slept)
}

/// Prints and checks [`sleeping_receiver_allocations`], blocking and async.
fn sleeping_checked() {
    for asynchronous in [false, true] {
        let how = if asynchronous {
            "an async"
        } else {
            "a blocking"
        };
        let (sleeping, slept) = sleeping_receiver_allocations(2_000, asynchronous);
        eprintln!(
            "{how} receiver on another thread, one message at a time: {sleeping} B \
             allocated per round ({slept} of 2,000 receives found the queue empty)"
        );
        assert_eq!(
            sleeping, 0,
            "{how} receiver that waits between messages allocated"
        );
        assert!(slept > 0, "{how} receiver never found the queue empty");
    }
}

/// Prints and checks [`memo_returns`]: a filled memo keeps no more of a
/// dropped pattern subscriber than an unfilled one once no pattern is left.
fn memo_checked() {
    let (filled, unfilled) = memo_returns();
    eprintln!(
        "a dropped pattern subscriber, once no pattern is left: {filled} B left after a \
         filled memo, {unfilled} B without one"
    );
    assert!(
        filled - unfilled <= 64,
        "a stripe's memo kept a dropped subscriber: {filled} B against {unfilled} B"
    );
}

/// Prints and checks [`pairs_stream`] and [`kept_after_burst`]: nothing
/// allocated per pair, and no more kept, once a receive found the
/// subscriber empty, than the room for a steady stream (4 items) that its
/// queue handed to the broker's spare room, and that spare room's list (a
/// shard of it keeps up to 4 buffers, 32 bytes each).
fn pairs_checked() {
    let (allocated, kept) = pairs_stream(10_000);
    eprintln!(
        "a stream received two at a time: {allocated} B allocated per pair once warm, \
         {kept} B kept once a receive found nothing"
    );
    let item = i64::try_from(std::mem::size_of::<Message>()).expect("small");
    let spare = 4 * item + 4 * 32;
    assert_eq!(
        allocated, 0,
        "a stream received in batches of two allocated"
    );
    assert!(
        kept <= spare,
        "a subscriber drained of a batched stream kept {kept} B"
    );
    for empty in [EmptyReceive::Poll, EmptyReceive::Sleep, EmptyReceive::Async] {
        for burst in [5, 9, 20, 32] {
            let kept = kept_after_burst(burst, empty);
            eprintln!("a burst of {burst}, then a pair, drained ({empty:?}): {kept} B kept");
            assert!(
                kept <= spare,
                "a subscriber drained of a burst of {burst} and a pair ({empty:?}) kept {kept} B"
            );
        }
    }
}

/// Bytes allocated per round of (publish, receive) once warm: through a
/// channel subscription, through a pattern subscription (the channel has
/// no exact subscriber), and polling an empty subscriber.
fn allocation_per_round(rounds: usize) -> (i64, i64, i64) {
    let broker = Broker::new();
    let by_channel = broker.subscriber();
    by_channel.subscribe(["exact"]).unwrap();
    let by_pattern = broker.subscriber();
    by_pattern.psubscribe(["pat*"]).unwrap();
    let idle = broker.subscriber();
    let payload = bytes::Bytes::from_static(b"payload");
    let round = |channel: &str, sub: &Subscriber| {
        broker.publish(channel, payload.clone());
        drain(sub);
    };
    for _ in 0..10 {
        round("exact", &by_channel);
        round("pattern", &by_pattern);
    }
    let before = allocated();
    for _ in 0..rounds {
        round("exact", &by_channel);
    }
    let channel = allocated() - before;
    let before = allocated();
    for _ in 0..rounds {
        round("pattern", &by_pattern);
    }
    let pattern = allocated() - before;
    let before = allocated();
    for _ in 0..rounds {
        assert!(idle.try_recv().is_err());
    }
    let polling = allocated() - before;
    (
        channel / count(rounds),
        pattern / count(rounds),
        polling / count(rounds),
    )
}

/// Memory left over (beyond a running broker's baseline) after 200,000
/// patterns were added and removed while one pattern stays, and after
/// 300,000 subscribers were created and dropped.
fn churn_returns() -> (i64, i64) {
    let broker = Broker::new();
    let keeper = broker.subscriber();
    keeper.psubscribe(["kept:*"]).unwrap();
    broker.publish("kept:1", "x"); // the matcher's per-thread cache, warm
    drain(&keeper);
    let baseline = live();
    let churner = broker.subscriber();
    let patterns: Vec<String> = (0..200_000).map(|i| format!("p{i}:*:x?")).collect();
    churner.psubscribe(&patterns).unwrap();
    broker.publish("kept:2", "y");
    churner.punsubscribe(&patterns).unwrap();
    drop(patterns);
    drop(churner);
    broker.publish("kept:3", "z"); // the cache sees the edits and starts over
    drain(&keeper);
    let after_patterns = live() - baseline;

    let baseline = live();
    for _ in 0..3 {
        let subs: Vec<Subscriber> = (0..100_000).map(|_| broker.subscriber()).collect();
        drop(subs);
    }
    let after_subscribers = live() - baseline;
    (after_patterns, after_subscribers)
}

/// What a dropped pattern subscriber leaves behind once the last pattern is
/// gone and the channel is published on again, beyond what the same steps
/// leave when the stripe's memo of matches was never filled: `(filled,
/// unfilled)`. The memo (made on the second publish in a row on a channel)
/// holds the subscriber's mailbox until the stripe lets go of it.
fn memo_returns() -> (i64, i64) {
    let leftover = |publishes_before_drop: usize| {
        let broker = Broker::new();
        let warm = broker.subscriber();
        warm.psubscribe(["warm:*"]).unwrap();
        broker.publish("warm:1", "x"); // the matcher's per-thread cache
        drop(warm);
        broker.publish("memo:x", "x");
        let baseline = live();
        let sub = broker.subscriber();
        sub.psubscribe(["memo:*"]).unwrap();
        for _ in 0..publishes_before_drop {
            broker.publish("memo:x", "x");
        }
        drop(sub);
        broker.publish("memo:x", "x"); // no pattern left
        let left = live() - baseline;
        drop(broker);
        left
    };
    (leftover(2), leftover(1))
}

// ---- the test -------------------------------------------------------------------

/// The target: at most 100 B per subscription beyond the name. A short
/// name is a 24-byte inline `Name`, kept once in the broker's channel map
/// and once in the subscriber's own set; the first copy is the name, the
/// second counts against the subscription. A hash table holds between 8/7
/// and 16/7 buckets per entry depending on where it is in its doubling
/// cycle. The cases from nothing (`held == 0`) and at 10,000 must meet the
/// target. `held == more` at 1,000 measures the window in which the
/// subscriber's own set doubles (2,048 to 4,096 buckets for 1,000 more
/// names): its marginal cost is the table's worst, 88–102 B beyond the name
/// over many runs (the stripes' tables add a seed-dependent part), so it is
/// held to 110.
fn assert_subscription_target(cases: &[(usize, usize)], bytes: &[i64]) {
    let name = i64::try_from(std::mem::size_of::<Name>()).expect("small");
    for (&(held, more), &bytes) in cases.iter().zip(bytes) {
        let bound = if held == more && held < 10_000 {
            110
        } else {
            100
        };
        assert!(
            bytes - name <= bound,
            "holding {held}, +{more}: {bytes} B per subscription, {} B beyond the name (bound {bound})",
            bytes - name
        );
    }
}

#[test]
fn memory_use() {
    warm_up();

    // Subscriptions: the figures swing with where the hash tables are in
    // their doubling cycle, so several sizes are measured; `held == more`
    // measures from a full table to a grown one.
    let subscription_cases = [(0, 1_000), (1_000, 1_000), (10_000, 10_000), (0, 100_000)];
    let mut subscription = Vec::new();
    for (held, more) in subscription_cases {
        let bytes = per_subscription(held, more);
        eprintln!("subscription: holding {held}, +{more} channels: {bytes} B each");
        subscription.push(bytes);
    }
    eprintln!(
        "  (short names are inline: the bytes above include both copies of the name, {} B each)",
        std::mem::size_of::<Name>()
    );

    let idle = per_idle_subscriber(1_000);
    eprintln!(
        "idle subscriber: {idle} B heap + {} B handle",
        std::mem::size_of::<Subscriber>()
    );
    let (used_queue, used_log) = per_used_subscriber(1_000);
    eprintln!(
        "after use (a burst of 100 and a steady stream, drained): a queue-fed \
         subscriber keeps {used_queue} B more, a log reader {used_log} B more"
    );

    let pattern = per_pattern(10_000);
    eprintln!("pattern (10,000 × `user:{{i}}:*`): {pattern} B each");

    let (zero_copy_allocated, zero_copy_live) = zero_copy(100);
    eprintln!(
        "zero copy, 1 MiB to 100 subscribers: {zero_copy_allocated} B allocated, \
         {zero_copy_live} B live growth ({} per delivery)",
        per(zero_copy_allocated, 100)
    );

    let (alloc_channel, alloc_pattern, alloc_polling) = allocation_per_round(10_000);
    eprintln!(
        "allocated per publish + receive: {alloc_channel} B through a channel, \
         {alloc_pattern} B through a pattern; per empty poll: {alloc_polling} B"
    );

    pairs_checked();

    reallocated_checked();

    sleeping_checked();

    let (after_patterns, after_subscribers) = churn_returns();
    eprintln!(
        "churn: 200,000 patterns added and removed (one kept) left {after_patterns} B; \
         300,000 subscribers created and dropped left {after_subscribers} B"
    );

    memo_checked();

    let returns = memory_returns(100_000);
    eprintln!(
        "memory returns, 100,000 channels: after unsubscribe {} B ({} per channel), after drop \
         {} B ({} per channel), after a second round {} B, after dropping the broker {} B",
        returns.unsubscribed,
        per(returns.unsubscribed, 100_000),
        returns.dropped,
        per(returns.dropped, 100_000),
        returns.second_round,
        returns.broker_dropped,
    );

    // ---- assertions, after every figure is printed ----
    assert_subscription_target(&subscription_cases, &subscription);
    // The target: at most 256 B per subscriber, idle (the heap and the
    // handle) and once it has received and drained messages (the heap).
    let handle = i64::try_from(std::mem::size_of::<Subscriber>()).expect("a small size");
    assert!(
        idle + handle <= 256,
        "{idle} B per idle subscriber and {handle} B of handle"
    );
    assert!(
        idle + used_queue.max(used_log) <= 256,
        "{idle} B per idle subscriber, {used_queue} B more once used"
    );
    // A drained queue hands its room to the broker's spare room, which
    // keeps at most 32 buffers of 4 items for all its subscribers (12 B
    // each of these 1,000); a log reader keeps nothing.
    assert!(
        used_queue <= 16,
        "a drained queue-fed subscriber keeps {used_queue} B"
    );
    assert!(used_log <= 16, "a drained log reader keeps {used_log} B");
    assert!(pattern <= 512, "{pattern} B per pattern");
    assert!(
        zero_copy_allocated < 2 * MIB,
        "{zero_copy_allocated} B allocated: the payload was copied"
    );
    assert!(zero_copy_live < 2 * MIB);
    // Maps shrink once a quarter full, so almost nothing of the peak stays:
    // a few bytes per peak channel at most, and a second round adds nothing.
    assert!(
        returns.dropped <= 4 * 100_000,
        "more retained than the channel maps' capacity: {returns:?}"
    );
    assert!(
        returns.second_round - returns.dropped <= 4 * KIB,
        "a second round of 100,000 channels grew memory: {returns:?}"
    );
    assert_eq!(alloc_channel, 0, "a channel delivery allocated");
    assert_eq!(alloc_pattern, 0, "a pattern delivery allocated");
    assert_eq!(alloc_polling, 0, "polling an empty subscriber allocated");
    assert!(
        after_patterns <= 16 * KIB,
        "pattern churn kept {after_patterns} B"
    );
    assert!(
        after_subscribers <= 16 * KIB,
        "subscriber churn kept {after_subscribers} B"
    );
    assert!(
        returns.broker_dropped.abs() <= 4 * KIB,
        "dropping everything did not return memory: {returns:?}"
    );
}
