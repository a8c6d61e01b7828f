//! Regression tests for the paths beside the main one: `select!` on bounded
//! subscribers, publishers waiting for room, publishes that must be atomic
//! in every stream, exact counts, bad input and panics half way through a
//! publish. Every wait is time-boxed, so a hang fails the test.

#[path = "common/wait.rs"]
mod wait;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use wait::within;

use channelcast::{Broker, Message, Overflow, RecvError, Subscriber, TryRecvError};
use crossbeam_channel::{select, unbounded};

/// Generous: only a hang takes this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// Drains `sub` through `select!` on its readiness handle next to another
/// channel, the documented idiom, until `want` deliveries were seen.
fn drain_through_select(sub: &Subscriber, want: usize) -> Vec<Message> {
    let (_other_tx, other_rx) = unbounded::<()>();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.iter().filter(|m: &&Message| m.is_delivery()).count() < want {
        assert!(Instant::now() < deadline, "select! drain hung");
        select! {
            recv(sub.ready()) -> _ => loop {
                match sub.try_recv() {
                    Ok(message) => got.push(message),
                    Err(TryRecvError::Empty) => break,
                    Err(_) => return got, // the end of the stream
                }
            },
            recv(other_rx) -> _ => unreachable!("nobody sends on it"),
            default(Duration::from_millis(100)) => {}
        }
    }
    got
}

fn payloads(items: &[Message]) -> Vec<String> {
    items
        .iter()
        .map(|m| match m {
            Message::Lagged { missed } => format!("lag:{missed}"),
            m if m.is_delivery() => m.payload_str().unwrap().to_owned(),
            m => m.kind().to_owned(),
        })
        .collect()
}

// ---- 2. select! keeps every promise ------------------------------------------

#[test]
fn select_on_a_drop_oldest_subscriber_keeps_order_lag_and_stats() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(3)
        .overflow(Overflow::DropOldest)
        .build();
    sub.subscribe(["c"]).unwrap();
    for i in 0..10 {
        broker.publish("c", i.to_string());
    }
    let got = drain_through_select(&sub, 3);
    assert_eq!(payloads(&got), ["subscribe", "lag:7", "7", "8", "9"]);
    let stats = sub.stats();
    assert_eq!((stats.queued, stats.received, stats.dropped), (0, 3, 7));
    let totals = broker.stats();
    assert_eq!((totals.delivered, totals.dropped), (3, 7));
}

#[test]
fn select_wakes_a_blocked_publisher_and_counts_bytes() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(1)
        .max_payload_bytes(4)
        .overflow(Overflow::Block)
        .build();
    sub.subscribe(["jobs"]).unwrap();
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            (0..200)
                .map(|i| broker.publish("jobs", format!("{i:04}")))
                .sum::<usize>()
        })
    };
    let got = drain_through_select(&sub, 200);
    let delivered: Vec<String> = got
        .iter()
        .filter(|m| m.is_delivery())
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        delivered,
        (0..200).map(|i| format!("{i:04}")).collect::<Vec<_>>()
    );
    assert_eq!(
        within("the blocked publisher", move || publisher.join().unwrap()),
        200
    );
    assert_eq!(sub.stats().received, 200);
    assert_eq!(sub.stats().dropped, 0);
}

#[test]
fn select_sees_the_end_of_the_stream() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    broker.publish("c", "last");
    drop(broker);
    let got = drain_through_select(&sub, 1);
    assert_eq!(payloads(&got), ["subscribe", "last"]);
    select! {
        recv(sub.ready()) -> _ => {}
        default(PATIENCE) => panic!("the readiness handle did not fire for the end"),
    }
    assert_eq!(sub.try_recv(), Err(TryRecvError::Disconnected));
}

// ---- 3. no publisher waits holding a lock anything else needs ---------------

/// A subscriber whose full `Block` queue makes the next publish on
/// `channel` wait; returns it and the waiting publisher.
fn stuck_publisher(
    broker: &Broker,
    channel: &'static str,
    pattern: bool,
) -> (Subscriber, thread::JoinHandle<usize>) {
    let stuck = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    if pattern {
        stuck.psubscribe([format!("{channel}*")]).unwrap();
    } else {
        stuck.subscribe([channel]).unwrap();
    }
    broker.publish(channel, "fills the queue");
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || broker.publish(channel, "waits"))
    };
    // It cannot finish before the subscriber reads: wait until it is well
    // into its wait, and check that it is still there.
    thread::sleep(Duration::from_millis(50));
    assert!(
        !publisher.is_finished(),
        "a Block publisher into a full queue waits"
    );
    (stuck, publisher)
}

#[test]
fn a_waiting_publisher_stalls_only_its_own_channel() {
    for pattern in [false, true] {
        let broker = Broker::new();
        let (stuck, publisher) = stuck_publisher(&broker, "slow", pattern);
        let others = broker.clone();
        within("work beside a waiting publisher", move || {
            let watcher = others.subscriber();
            // 1,000 channels: some share the waiting channel's lock stripe.
            let names: Vec<String> = (0..1000).map(|i| format!("other{i}")).collect();
            watcher.subscribe(&names).unwrap();
            watcher.psubscribe(["other1*"]).unwrap();
            for name in &names {
                others.publish(name, "x");
            }
            let _ = others.stats();
            let _ = others.channels();
            let _ = others.numsub(["slow"]);
            let _ = others.numpat();
            watcher.punsubscribe(["other1*"]).unwrap();
            watcher.unsubscribe(&names).unwrap();
        });
        // The stuck subscriber reads: the publisher gets through.
        assert_eq!(
            stuck.recv().unwrap().kind(),
            if pattern { "psubscribe" } else { "subscribe" }
        );
        stuck.recv().unwrap();
        assert_eq!(
            within("the waiting publisher", move || publisher.join().unwrap()),
            1
        );
        assert_eq!(stuck.recv().unwrap().payload_str(), Some("waits"));
    }
}

#[test]
fn dropping_a_subscriber_releases_its_waiting_publisher_and_the_channel() {
    let broker = Broker::new();
    let (stuck, publisher) = stuck_publisher(&broker, "slow", false);
    // Subscribing to the waiting channel goes ahead.
    let bystander = within("subscribe beside a waiting publisher", {
        let broker = broker.clone();
        move || {
            let bystander = broker.subscriber();
            bystander.subscribe(["slow"]).unwrap();
            bystander
        }
    });
    drop(stuck);
    within("the released publisher", move || publisher.join().unwrap());
    assert_eq!(broker.publish("slow", "after"), 1);
    // The publish in flight did not reach the late subscriber; the next did.
    let items: Vec<_> = bystander.try_iter().collect();
    assert_eq!(payloads(&items), ["subscribe", "after"]);
}

// ---- 4. a publish is atomic in every stream ----------------------------------

/// One subscriber holds channel `chan` while its own thread churns pattern
/// `c*` and unrelated channels; publishers publish on `chan`. Every
/// `message` must be followed at once by its `pmessage` exactly while the
/// stream says `c*` is held, and by nothing of its own confirmations.
#[test]
fn a_publish_is_atomic_in_a_stream_whose_patterns_churn() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber());
    sub.subscribe(["chan"]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let (broker, stop) = (broker.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    broker.publish("chan", format!("{p}:{i}"));
                    i += 1;
                }
            })
        })
        .collect();
    let churner = {
        let (sub, stop) = (Arc::clone(&sub), Arc::clone(&stop));
        thread::spawn(move || {
            for round in 0..3_000 {
                sub.psubscribe(["c*"]).unwrap();
                sub.subscribe([format!("x{round}")]).unwrap();
                sub.subscribe(["chan"]).unwrap(); // a no-op re-subscribe
                sub.punsubscribe(["c*"]).unwrap();
                sub.unsubscribe([format!("x{round}")]).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    within("the churn", move || churner.join().unwrap());
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let items: Vec<Message> = sub.try_iter().collect();
    let mut pattern_held = false;
    let mut checked = 0;
    let mut at = 0;
    while at < items.len() {
        match &items[at] {
            Message::PSubscribe { .. } => pattern_held = true,
            Message::PUnsubscribe { .. } => pattern_held = false,
            Message::Message { payload, .. } => {
                let next = items.get(at + 1);
                let has_pmessage = matches!(
                    next,
                    Some(Message::PMessage { payload: p, .. }) if p == payload
                );
                assert_eq!(
                    has_pmessage, pattern_held,
                    "item {at}: message {payload:?} with pattern held = {pattern_held}, next {next:?}"
                );
                if has_pmessage {
                    at += 1;
                }
                checked += 1;
            }
            Message::PMessage { payload, .. } => {
                panic!("item {at}: a pmessage {payload:?} not right after its message")
            }
            _ => {}
        }
        at += 1;
    }
    assert!(checked > 0, "no publish was checked");
}

/// Subscribers that hold only a pattern, created while publishers run on
/// many channels: after its confirmation, every publish on a matching
/// channel reaches it (none before).
#[test]
fn a_new_first_pattern_is_seen_by_every_publish_after_its_confirmation() {
    for _ in 0..50 {
        let broker = Broker::new();
        let sub = broker.subscriber();
        sub.subscribe(["k"]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (broker, stop) = (broker.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    broker.publish("k", i.to_string());
                    i += 1;
                }
            })
        };
        thread::sleep(Duration::from_millis(1));
        sub.psubscribe(["k*"]).unwrap();
        thread::sleep(Duration::from_millis(1));
        stop.store(true, Ordering::Relaxed);
        within("the publisher", move || publisher.join().unwrap());
        let items: Vec<Message> = sub.try_iter().collect();
        let confirmed = items
            .iter()
            .position(|m| m.kind() == "psubscribe")
            .expect("confirmed");
        for (at, item) in items.iter().enumerate() {
            if let Message::Message { payload, .. } = item {
                let followed = matches!(items.get(at + 1), Some(Message::PMessage { payload: p, .. }) if p == payload);
                assert_eq!(followed, at > confirmed, "item {at} of {items:?}");
            }
        }
    }
}

// ---- 5. exact numbers ---------------------------------------------------------

#[test]
fn broker_and_subscriber_counts_agree_under_every_policy() {
    for policy in [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::BlockFor(Duration::from_micros(50)),
        Overflow::Disconnect,
    ] {
        let broker = Broker::new();
        let sub = Arc::new(
            broker
                .subscriber_builder()
                .capacity(1)
                .overflow(policy)
                .build(),
        );
        sub.subscribe(["c"]).unwrap();
        sub.psubscribe(["c*"]).unwrap();
        let publishers: Vec<_> = (0..4)
            .map(|_| {
                let broker = broker.clone();
                thread::spawn(move || (0..2_000).map(|_| broker.publish("c", "x")).sum::<usize>())
            })
            .collect();
        let reader = {
            let sub = Arc::clone(&sub);
            thread::spawn(move || {
                let (mut deliveries, mut missed) = (0u64, 0u64);
                loop {
                    match sub.recv_timeout(Duration::from_millis(300)) {
                        Ok(Message::Lagged { missed: m }) => missed += m,
                        Ok(m) if m.is_delivery() => deliveries += 1,
                        Ok(_) => {}
                        Err(_) => return (deliveries, missed),
                    }
                }
            })
        };
        let counted: usize = publishers.into_iter().map(|p| p.join().unwrap()).sum();
        let (deliveries, missed) = within("the reader", move || reader.join().unwrap());
        let totals = broker.stats();
        let stats = sub.stats();
        assert_eq!(totals.published, 8_000, "{policy:?}");
        assert_eq!(
            totals.delivered + totals.dropped,
            counted as u64,
            "{policy:?}"
        );
        assert_eq!(
            totals.delivered, deliveries,
            "{policy:?}: broker vs received"
        );
        assert_eq!(totals.dropped, missed, "{policy:?}: broker vs reported");
        assert_eq!(stats.received, deliveries, "{policy:?}");
        assert_eq!(stats.dropped, missed, "{policy:?}");
    }
}

#[test]
fn received_counts_deliveries_whatever_the_receive_method() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    for i in 0..6 {
        broker.publish("c", i.to_string());
    }
    sub.recv().unwrap(); // the confirmation
    sub.recv().unwrap();
    sub.try_recv().unwrap();
    sub.recv_timeout(Duration::from_secs(1)).unwrap();
    let mut batch = Vec::new();
    assert_eq!(sub.try_recv_many(&mut batch, 2).unwrap(), 2);
    let _ = drain_through_select(&sub, 1);
    assert_eq!(sub.stats().received, 6);
}

// ---- 6. bad input gets a clear answer ----------------------------------------

#[test]
fn unrepresentable_timeouts_mean_forever() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    assert_eq!(sub.recv_timeout(Duration::MAX).unwrap().kind(), "subscribe");
    let publisher = broker.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        publisher.publish("c", "late");
    });
    let got = within("recv_timeout(Duration::MAX)", move || {
        sub.recv_timeout(Duration::MAX)
            .map(|m| m.payload_str().map(str::to_owned))
    });
    assert_eq!(got, Ok(Some("late".to_owned())));

    let sub = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::BlockFor(Duration::MAX))
        .build();
    sub.subscribe(["d"]).unwrap();
    broker.publish("d", "1");
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || broker.publish("d", "2"))
    };
    thread::sleep(Duration::from_millis(20));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = sub
            .recv_timeout(PATIENCE)
            .expect("BlockFor(MAX) behaves as Block");
        if msg.is_delivery() {
            seen.push(msg.payload_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["1", "2"]);
    assert_eq!(
        within("BlockFor(MAX) publisher", move || publisher.join().unwrap()),
        1
    );
}

#[test]
fn a_bytes_bound_alone_also_bounds_empty_payloads() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .max_payload_bytes(10)
        .overflow(Overflow::DropNewest)
        .build();
    sub.subscribe(["c"]).unwrap();
    for _ in 0..100_001 {
        broker.publish("c", "");
    }
    let stats = sub.stats();
    assert_eq!(stats.dropped, 100_001 - 10);
    // The confirmation, ten empty payloads, one lag report.
    assert_eq!(stats.queued, 12);
}

#[test]
fn block_for_waits_at_most_once_per_publish() {
    let broker = Broker::new();
    let patience = Duration::from_millis(400);
    let sub = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::BlockFor(patience))
        .build();
    sub.subscribe(["c"]).unwrap();
    sub.psubscribe(["c*", "*", "?"]).unwrap();
    broker.publish("c", "fills it"); // four deliveries admitted together into an empty queue
    let started = Instant::now();
    assert_eq!(broker.publish("c", "waits"), 4);
    let waited = started.elapsed();
    // Four deliveries to one full subscriber: one wait, not four.
    assert!(waited >= patience, "gave up early: {waited:?}");
    assert!(
        waited < patience * 3,
        "waited {waited:?} for one publish (patience {patience:?})"
    );
    assert_eq!(sub.stats().dropped, 4);
}

// ---- 7. panic safety ------------------------------------------------------------

/// A payload whose clone panics on the `PANIC_AT`-th clone.
#[derive(Debug, PartialEq, Eq)]
struct Fragile(u32);

static CLONES: AtomicUsize = AtomicUsize::new(0);
static PANIC_AT: AtomicUsize = AtomicUsize::new(usize::MAX);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        let n = CLONES.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            n != PANIC_AT.load(Ordering::SeqCst),
            "clone number {n} panics"
        );
        Fragile(self.0)
    }
}

#[test]
fn a_panicking_clone_leaves_no_half_state() {
    let broker: Broker<Fragile> = Broker::default();
    let evicted = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::Disconnect)
        .build();
    evicted.subscribe(["c"]).unwrap();
    broker.publish("c", Fragile(0)); // fills it
                                     // Bounded (generously), so each gets its own copy queued after the
                                     // evicted one's: the second clone of the publish is made for them.
    let others: Vec<_> = (0..3)
        .map(|_| {
            let sub = broker.subscriber_builder().capacity(1_000).build();
            sub.subscribe(["c"]).unwrap();
            sub
        })
        .collect();
    CLONES.store(0, Ordering::SeqCst);
    PANIC_AT.store(2, Ordering::SeqCst);
    let publishing = broker.clone();
    // Time-boxed: a publish that unwound while holding its stripe would
    // leave the next lock of that stripe (its own tally's) waiting forever.
    let panicked = within("a publish whose payload's clone panics", move || {
        catch_unwind(AssertUnwindSafe(|| publishing.publish("c", Fragile(1)))).is_err()
    });
    PANIC_AT.store(usize::MAX, Ordering::SeqCst);
    assert!(panicked, "the clone panicked through publish");
    // The overflowed subscriber was evicted all the same, and says so.
    assert_eq!(broker.numsub(["c"])[0].1, 3);
    let items: Vec<Message<Fragile>> = evicted.try_iter().collect();
    assert!(
        matches!(items.last(), Some(Message::Lagged { .. })),
        "{items:?}"
    );
    assert_eq!(evicted.recv(), Err(RecvError::Overflowed));
    assert_eq!(broker.stats().published, 2);
    assert_eq!(broker.stats().disconnected, 1);
    // Nothing is stuck: the channel works as before.
    let publishing = broker.clone();
    assert_eq!(
        within("a publish after the panic", move || publishing
            .publish("c", Fragile(2))),
        3
    );
    for sub in &others {
        assert!(sub.try_iter().any(|m| m.payload() == Some(&Fragile(2))));
    }
}

/// A payload whose clone panics while `BRITTLE` is set (its own switch, so
/// that no other test's clones are affected).
#[derive(Debug, PartialEq, Eq)]
struct Brittle(u32);

static BRITTLE: AtomicBool = AtomicBool::new(false);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        assert!(!BRITTLE.load(Ordering::SeqCst), "this clone panics");
        Brittle(self.0)
    }
}

#[test]
fn a_log_readers_panicking_clone_loses_and_miscounts_nothing() {
    let broker: Broker<Brittle> = Broker::default();
    // Two plain subscribers of one channel read its log: each receive
    // clones the payload from the shared entry.
    let (a, b) = (broker.subscriber(), broker.subscriber());
    for sub in [&a, &b] {
        sub.subscribe(["c"]).unwrap();
        assert!(!sub.try_recv().unwrap().is_delivery(), "a confirmation");
    }
    assert_eq!(broker.publish("c", Brittle(1)), 2);
    assert_eq!(broker.publish("c", Brittle(2)), 2);
    BRITTLE.store(true, Ordering::SeqCst);
    let panicked = catch_unwind(AssertUnwindSafe(|| a.try_recv())).is_err();
    BRITTLE.store(false, Ordering::SeqCst);
    assert!(panicked, "the clone panicked through try_recv");
    // The entry whose clone failed is still there, and was not counted.
    assert_eq!(a.stats().received, 0);
    let payloads: Vec<u32> = a.try_iter().map(|m| m.payload().unwrap().0).collect();
    assert_eq!(payloads, [1, 2]);
    assert_eq!(a.stats().received, 2);
    let payloads: Vec<u32> = b.try_iter().map(|m| m.payload().unwrap().0).collect();
    assert_eq!(payloads, [1, 2]);
}
