//! Attacks on the documented promises: publishers that wait, streams that
//! must stay atomic while subscriptions change, exact counts and lag
//! reports, bad input, panics, the end of the broker, async and `select!`
//! wake-ups. Every wait is time-boxed, so a hang fails the test instead of
//! stalling the suite.

#[path = "common/wait.rs"]
mod wait;

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use wait::within;

use channelcast::{
    glob_match, Broker, Message, Name, Overflow, RecvTimeoutError, SubscribeError, Subscriber,
    TryRecvError,
};
use crossbeam_channel::{bounded, select, unbounded, Receiver};

/// Only a hang takes this long.
const HANG: Duration = Duration::from_secs(20);
/// Long enough for a spawned publisher to reach its wait.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs `work` on its own thread; its result arrives on the receiver.
fn spawn_boxed<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (done_tx, done_rx) = bounded(1);
    thread::spawn(move || {
        let _ = done_tx.send(work());
    });
    done_rx
}

fn bounded_sub(broker: &Broker, capacity: usize, policy: Overflow) -> Subscriber {
    broker
        .subscriber_builder()
        .capacity(capacity)
        .overflow(policy)
        .build()
}

fn quiet_sub(broker: &Broker, capacity: usize, policy: Overflow) -> Subscriber {
    broker
        .subscriber_builder()
        .capacity(capacity)
        .overflow(policy)
        .confirmations(false)
        .build()
}

fn describe(items: &[Message]) -> Vec<String> {
    items
        .iter()
        .map(|m| match m {
            Message::Lagged { missed } => format!("lag:{missed}"),
            Message::Message { payload, .. } => {
                format!("msg:{}", String::from_utf8_lossy(payload))
            }
            Message::PMessage {
                pattern, payload, ..
            } => format!(
                "pmsg[{}]:{}",
                String::from_utf8_lossy(pattern.as_bytes()),
                String::from_utf8_lossy(payload)
            ),
            other => format!("{}:{:?}", other.kind(), other.count()),
        })
        .collect()
}

/// Receives with a timeout until `want` items arrived (or the stream ends).
fn take(sub: &Subscriber, want: usize) -> Vec<Message> {
    let mut got = Vec::new();
    while got.len() < want {
        match sub.recv_timeout(HANG) {
            Ok(message) => got.push(message),
            Err(RecvTimeoutError::Timeout) => panic!("nothing arrived within {HANG:?}"),
            Err(_) => break,
        }
    }
    got
}

// ==== publishers that wait hold up only their own channel ====================

/// An overflow eviction runs on the thread of the publish that overflowed
/// the subscriber. It must not wait for a publish that is waiting for room
/// on *another* channel the evicted subscriber holds: a publish on a channel
/// with no `Block` subscriber never waits (guarantee 5).
#[test]
fn an_eviction_never_waits_for_a_blocked_publish_on_another_channel() {
    let broker = Broker::new();
    let blocker = quiet_sub(&broker, 1, Overflow::Block);
    blocker.subscribe(["c"]).unwrap();
    let evictee = quiet_sub(&broker, 1, Overflow::Disconnect);
    evictee.subscribe(["c", "d"]).unwrap();
    broker.publish("c", "fills both queues");
    // Waits for the blocker (offered first: it subscribed first), with "c"
    // marked busy.
    let waiting = {
        let broker = broker.clone();
        spawn_boxed(move || broker.publish("c", "waits"))
    };
    thread::sleep(SETTLE);
    assert!(waiting.try_recv().is_err(), "the publish on c should wait");

    // "d" has no blocking subscriber: this publish overflows the evictee
    // and must return at once.
    let on_d = {
        let broker = broker.clone();
        spawn_boxed(move || broker.publish("d", "overflows the evictee"))
    };
    let returned = on_d.recv_timeout(Duration::from_secs(3));

    // Release everything before judging, so no thread is left stuck.
    assert_eq!(
        blocker.recv_timeout(HANG).unwrap().payload_str(),
        Some("fills both queues")
    );
    assert_eq!(
        blocker.recv_timeout(HANG).unwrap().payload_str(),
        Some("waits")
    );
    waiting
        .recv_timeout(HANG)
        .expect("the publish on c ends once the blocker read");
    let late = on_d.recv_timeout(HANG);
    assert_eq!(
        returned.ok(),
        Some(1),
        "a publish on d waited for the blocked publish on c (it returned {late:?} only after the \
         blocker read)"
    );
}

/// A subscriber that holds pattern `c*` receives a publish on `c1` as a
/// `pmessage`; if it subscribes to `c1` itself while that publish waits for
/// room, its stream must still be consistent (guarantee 6): either the
/// publish lands before the `subscribe` confirmation (one `pmessage`) or
/// after it (a `message` and a `pmessage`), never a lone `pmessage` after
/// the confirmation.
#[test]
fn subscribing_to_a_channel_whose_publish_waits_keeps_that_publish_atomic() {
    let broker = Broker::new();
    let sub = Arc::new(bounded_sub(&broker, 1, Overflow::Block));
    sub.psubscribe(["c*"]).unwrap();
    broker.publish("c1", "old"); // fills the queue
    let waiting = {
        let broker = broker.clone();
        spawn_boxed(move || broker.publish("c1", "new"))
    };
    thread::sleep(SETTLE);
    // Subscribe from another thread (the subscriber is shared), so that an
    // implementation that makes the subscribe wait for the publish in flight
    // is not a deadlock here.
    let subscribing = {
        let sub = Arc::clone(&sub);
        spawn_boxed(move || sub.subscribe(["c1"]).unwrap())
    };
    thread::sleep(SETTLE);
    let mut items = take(&sub, 3); // psubscribe, "old", and one more
    let count = waiting.recv_timeout(HANG).expect("the publish ends");
    assert_eq!(
        subscribing.recv_timeout(HANG).expect("the subscribe ends"),
        2
    );
    items.extend(sub.try_iter());
    let seen = describe(&items);
    let confirmed = seen
        .iter()
        .position(|s| s.starts_with("subscribe"))
        .expect("confirmed");
    let new_after: Vec<&String> = seen[confirmed..]
        .iter()
        .filter(|s| s.ends_with(":new"))
        .collect();
    assert!(
        new_after.is_empty() || new_after == ["msg:new", "pmsg[c*]:new"],
        "the publish of \"new\" is not what the confirmed subscriptions entail: {seen:?} \
         (publish returned {count})"
    );
}

/// A publisher waiting for room in a subscriber that then drops every
/// subscription that made the publish reach it would queue nothing there
/// any more: it must stop waiting (and stop holding its channel busy).
#[test]
fn a_publisher_stops_waiting_for_a_subscriber_that_punsubscribed() {
    for patterns in [&["c*"][..], &["c*", "*1"][..]] {
        let broker = Broker::new();
        let sub = bounded_sub(&broker, 1, Overflow::Block);
        sub.psubscribe(patterns.iter().copied()).unwrap();
        // Fills the queue (with two patterns: past the capacity, as an
        // oversized group is admitted into an empty queue).
        broker.publish("c1", "old");
        let waiting = {
            let broker = broker.clone();
            spawn_boxed(move || broker.publish("c1", "new"))
        };
        thread::sleep(SETTLE);
        assert_eq!(sub.punsubscribe_all().unwrap(), 0);
        let released = waiting.recv_timeout(Duration::from_secs(3));
        // Whatever happened, let it go before judging.
        let items: Vec<Message> = sub.try_iter().collect();
        let late = waiting.recv_timeout(HANG);
        let items: Vec<Message> = items.into_iter().chain(sub.try_iter()).collect();
        assert!(
            released.is_ok(),
            "{patterns:?}: the publish kept waiting for a subscriber that holds nothing \
             (released only by reading: {late:?}; stream {:?})",
            describe(&items)
        );
        assert!(
            !describe(&items).iter().any(|s| s.ends_with(":new")),
            "{patterns:?}: {:?}",
            describe(&items)
        );
    }
}

/// `Overflow::Disconnect` evicts a subscriber for a delivery that does not
/// fit. A publish whose deliveries to it shrank to nothing (it
/// punsubscribed while the publish waited for another subscriber) has
/// nothing to fit: it must neither evict it nor report `Lagged { missed: 0 }`.
#[test]
fn a_publish_with_nothing_left_for_a_subscriber_never_evicts_it() {
    // The offers of one publish go in an order the test cannot choose; try
    // until the blocking subscriber is offered first.
    for _ in 0..64 {
        let broker = Broker::new();
        let blocker = quiet_sub(&broker, 1, Overflow::Block);
        blocker.subscribe(["c1"]).unwrap();
        let victim = quiet_sub(&broker, 1, Overflow::Disconnect);
        victim.psubscribe(["c*", "*1"]).unwrap();
        // The blocker is full; the victim holds two pmessages (an oversized
        // group, admitted into its empty queue).
        broker.publish("c1", "old");
        let waiting = {
            let broker = broker.clone();
            spawn_boxed(move || broker.publish("c1", "new"))
        };
        thread::sleep(Duration::from_millis(30));
        let released = victim.punsubscribe_all();
        assert_eq!(
            blocker.recv_timeout(HANG).unwrap().payload_str(),
            Some("old")
        );
        waiting.recv_timeout(HANG).expect("the publish ends");
        if released.is_err() {
            // The victim was offered first and overflowed for real.
            continue;
        }
        let items: Vec<Message> = victim.try_iter().collect();
        let seen = describe(&items);
        assert_eq!(
            seen,
            ["pmsg[c*]:old", "pmsg[*1]:old"],
            "the victim's stream after it punsubscribed"
        );
        assert_eq!(
            victim.try_recv(),
            Err(TryRecvError::Empty),
            "evicted for nothing"
        );
        assert_eq!(broker.stats().disconnected, 0);
        assert!(victim.subscribe(["again"]).is_ok());
        return;
    }
    panic!("the blocking subscriber was never offered first");
}

/// The work a subscriber's own thread may do while a publisher waits for
/// it: everything but publishing to or unsubscribing from that channel.
#[test]
fn a_subscriber_a_publisher_waits_for_can_still_manage_its_other_subscriptions() {
    for via_pattern in [false, true] {
        let broker = Broker::new();
        let sub = bounded_sub(&broker, 1, Overflow::Block);
        if via_pattern {
            sub.psubscribe(["slow*"]).unwrap();
        } else {
            sub.subscribe(["slow"]).unwrap();
        }
        broker.publish("slow", "fills");
        let waiting = {
            let broker = broker.clone();
            spawn_boxed(move || broker.publish("slow", "waits"))
        };
        thread::sleep(SETTLE);
        let sub = within("the subscriber's own work", {
            let broker = broker.clone();
            move || {
                let names: Vec<String> = (0..300).map(|i| format!("other{i}")).collect();
                sub.subscribe(&names).unwrap();
                sub.psubscribe(["other1*", "x?"]).unwrap();
                sub.ssubscribe(["shard"]).unwrap();
                let _ = broker.stats();
                let _ = broker.channels();
                let _ = broker.channels_matching("slow*");
                let _ = broker.numsub(["slow", "other1"]);
                let _ = broker.numpat();
                sub.punsubscribe(["other1*", "x?", "never-held"]).unwrap();
                sub.unsubscribe(&names).unwrap();
                sub.sunsubscribe_all().unwrap();
                // Other channels' publishes (some share the busy stripe).
                let other = broker.subscriber();
                other.subscribe(&names).unwrap();
                for name in &names {
                    assert_eq!(broker.publish(name, "x"), 1);
                }
                sub
            }
        });
        let items = take(&sub, 2);
        assert_eq!(describe(&items)[1].rsplit(':').next(), Some("fills"));
        assert_eq!(waiting.recv_timeout(HANG).expect("released"), 1);
    }
}

/// Two `Block` subscribers on two channels, each read by its own thread,
/// while publishers on both channels run: nobody waits forever.
#[test]
fn crossing_block_subscribers_and_publishers_all_finish() {
    const EACH: usize = 2_000;
    let broker = Broker::new();
    let subs: Vec<Arc<Subscriber>> = (0..2)
        .map(|_| {
            let sub = Arc::new(quiet_sub(&broker, 1, Overflow::Block));
            sub.subscribe(["a", "b"]).unwrap();
            sub.psubscribe(["?"]).unwrap();
            sub
        })
        .collect();
    let publishers: Vec<_> = ["a", "b", "a", "b"]
        .into_iter()
        .map(|channel| {
            let broker = broker.clone();
            thread::spawn(move || {
                (0..EACH)
                    .map(|_| broker.publish(channel, "x"))
                    .sum::<usize>()
            })
        })
        .collect();
    let readers: Vec<_> = subs
        .iter()
        .map(|sub| {
            let sub = Arc::clone(sub);
            thread::spawn(move || {
                let mut got = 0;
                while got < 4 * EACH * 2 {
                    match sub.recv_timeout(HANG) {
                        Ok(m) if m.is_delivery() => got += 1,
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(e) => panic!("reader: {e:?} after {got}"),
                    }
                }
                got
            })
        })
        .collect();
    let counted = within("publishers and readers", move || {
        let counted: usize = publishers.into_iter().map(|p| p.join().unwrap()).sum();
        for reader in readers {
            reader.join().unwrap();
        }
        counted
    });
    assert_eq!(counted, 4 * EACH * 4);
    let totals = broker.stats();
    assert_eq!((totals.delivered, totals.dropped), (counted as u64, 0));
}

// ==== atomic publishes, replayed against the stream's own confirmations =====

/// What one subscriber's stream says it holds, replayed item by item; each
/// publish's deliveries must be contiguous and exactly what that holding
/// entails.
fn check_atomic(items: &[Message], channel: &str) -> usize {
    let mut channels: BTreeSet<Name> = BTreeSet::new();
    let mut patterns: BTreeSet<Name> = BTreeSet::new();
    let mut done: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut at = 0;
    let mut publishes = 0;
    while at < items.len() {
        match &items[at] {
            Message::Subscribe { channel, .. } => {
                channels.insert(channel.clone());
            }
            Message::Unsubscribe {
                channel: Some(channel),
                ..
            } => {
                channels.remove(channel);
            }
            Message::PSubscribe { pattern, .. } => {
                patterns.insert(pattern.clone());
            }
            Message::PUnsubscribe {
                pattern: Some(pattern),
                ..
            } => {
                patterns.remove(pattern);
            }
            m if m.is_delivery() => {
                let payload = m.payload().unwrap().clone();
                let mut run = Vec::new();
                while let Some(next) = items.get(at) {
                    if next.payload() != Some(&payload) {
                        break;
                    }
                    run.push(match next {
                        Message::Message { .. } => None,
                        Message::PMessage { pattern, .. } => Some(pattern.clone()),
                        other => panic!("unexpected {other:?}"),
                    });
                    at += 1;
                }
                assert!(
                    done.insert(payload.to_vec()),
                    "the deliveries of {payload:?} are split (around item {at})"
                );
                let mut want: Vec<Option<Name>> = Vec::new();
                if channels.contains(channel.as_bytes()) {
                    want.push(None);
                }
                let mut got_patterns: Vec<Name> = run.iter().flatten().cloned().collect();
                got_patterns.sort();
                let want_patterns: Vec<Name> = patterns
                    .iter()
                    .filter(|p| glob_match(p.as_bytes(), channel))
                    .cloned()
                    .collect();
                assert_eq!(
                    (run.first() == Some(&None), got_patterns),
                    (!want.is_empty(), want_patterns),
                    "publish {payload:?} ending at item {at}: got {run:?} holding {channels:?} + \
                     {patterns:?}"
                );
                publishes += 1;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    publishes
}

/// Pattern churn on the subscribers' own handles (first pattern created,
/// last removed, over and over) while publishers run, for a subscriber that
/// holds the channel, one that holds only patterns, and a `Block`
/// subscriber that sends every publish down the waiting path.
#[test]
fn publishes_stay_atomic_while_the_only_patterns_come_and_go() {
    let broker = Broker::new();
    let exact = Arc::new(broker.subscriber());
    exact.subscribe(["chan"]).unwrap();
    let patterns_only = Arc::new(broker.subscriber());
    let blocking = Arc::new(bounded_sub(&broker, 2, Overflow::Block));
    blocking.subscribe(["chan"]).unwrap();
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
    // Reads the blocking subscriber as the test goes (it would stall the
    // publishers otherwise), keeping what it read.
    let reader = {
        let (blocking, stop) = (Arc::clone(&blocking), Arc::clone(&stop));
        thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match blocking.recv_timeout(Duration::from_millis(200)) {
                    Ok(m) => got.push(m),
                    Err(_) if stop.load(Ordering::Relaxed) => return got,
                    Err(e) => panic!("{e:?}"),
                }
            }
        })
    };
    let churners: Vec<_> = [&exact, &patterns_only, &blocking]
        .into_iter()
        .map(|sub| {
            let sub = Arc::clone(sub);
            thread::spawn(move || {
                for _ in 0..400 {
                    sub.psubscribe(["ch*", "?han"]).unwrap();
                    sub.punsubscribe(["ch*"]).unwrap();
                    sub.psubscribe(["*"]).unwrap();
                    sub.punsubscribe_all().unwrap();
                }
            })
        })
        .collect();
    within("the churn", move || {
        for churner in churners {
            churner.join().unwrap();
        }
    });
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        within("a publisher", move || publisher.join().unwrap());
    }
    let blocking_items = within("the reader", move || reader.join().unwrap());
    let blocking_items: Vec<Message> = blocking_items
        .into_iter()
        .chain(blocking.try_iter())
        .collect();
    assert!(check_atomic(&exact.try_iter().collect::<Vec<_>>(), "chan") > 0);
    check_atomic(&patterns_only.try_iter().collect::<Vec<_>>(), "chan");
    assert!(check_atomic(&blocking_items, "chan") > 0);
}

// ==== exact counts and lag reports ===========================================

/// Several publishers on a channel and a pattern, subscribers under every
/// policy (one with a bytes bound), each read on its own thread: the
/// broker's counters, the subscribers' counters, the lag reports and the
/// publishers' return values all agree.
#[test]
fn every_counter_agrees_with_every_other_under_every_policy() {
    let broker = Broker::new();
    let policies = [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Block,
        Overflow::BlockFor(Duration::from_micros(20)),
        Overflow::Disconnect,
    ];
    let mut subs: Vec<Arc<Subscriber>> = Vec::new();
    for policy in policies {
        let sub = Arc::new(bounded_sub(&broker, 3, policy));
        sub.subscribe(["c"]).unwrap();
        sub.psubscribe(["c*", "?"]).unwrap();
        subs.push(sub);
        let bytes = broker
            .subscriber_builder()
            .max_payload_bytes(5)
            .overflow(policy)
            .build();
        bytes.psubscribe(["*"]).unwrap();
        subs.push(Arc::new(bytes));
    }
    let readers: Vec<_> = subs
        .iter()
        .enumerate()
        .map(|(n, sub)| {
            let sub = Arc::clone(sub);
            thread::spawn(move || {
                let (mut deliveries, mut missed) = (0u64, 0u64);
                loop {
                    match sub.recv_timeout(Duration::from_secs(2)) {
                        Ok(Message::Lagged { missed: m }) => missed += m,
                        Ok(m) if m.is_delivery() => {
                            deliveries += 1;
                            if n % 3 == 0 {
                                thread::yield_now(); // some readers are slow
                            }
                        }
                        Ok(_) => {}
                        Err(RecvTimeoutError::Timeout) => return (deliveries, missed, false),
                        Err(_) => return (deliveries, missed, true),
                    }
                }
            })
        })
        .collect();
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let broker = broker.clone();
            thread::spawn(move || {
                (0..1_500)
                    .map(|i| {
                        let payload = if i % 7 == 0 {
                            String::new()
                        } else {
                            format!("{p}.{i}")
                        };
                        broker.publish(if i % 2 == 0 { "c" } else { "x" }, payload)
                    })
                    .sum::<usize>()
            })
        })
        .collect();
    let counted: usize = within("publishers", move || {
        publishers.into_iter().map(|p| p.join().unwrap()).sum()
    });
    let mut received = 0;
    let mut lagged = 0;
    for (reader, sub) in readers.into_iter().zip(&subs) {
        let (deliveries, missed, _) = within("a reader", move || reader.join().unwrap());
        let stats = sub.stats();
        assert_eq!(stats.received, deliveries);
        assert_eq!(stats.dropped, missed, "lag reports count every loss");
        assert_eq!(stats.queued, 0);
        received += deliveries;
        lagged += missed;
    }
    let totals = broker.stats();
    assert_eq!(totals.published, 4_500);
    assert_eq!(totals.delivered + totals.dropped, counted as u64);
    assert_eq!(totals.delivered, received);
    assert_eq!(totals.dropped, lagged);
}

/// With one publisher numbering its messages, every `Lagged` stands exactly
/// where the missing ones would have been and counts them, under every
/// dropping policy, read concurrently and through every receive method.
#[test]
fn lag_reports_are_exact_and_in_place_under_every_policy() {
    const N: u64 = 5_000;
    for policy in [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::BlockFor(Duration::from_micros(30)),
    ] {
        for method in 0..4 {
            let broker = Broker::new();
            let sub = Arc::new(quiet_sub(&broker, 4, policy));
            sub.subscribe(["seq"]).unwrap();
            // The publisher holds the last broker handle: when it is done,
            // the stream ends once drained, on every receive path.
            let publisher = thread::spawn(move || {
                for i in 0..N {
                    broker.publish("seq", i.to_string());
                }
            });
            let sub2 = Arc::clone(&sub);
            let items = within("the reader", move || {
                let sub = sub2;
                let mut items: Vec<Message> = Vec::new();
                loop {
                    let ended = match method {
                        0 => match sub.recv() {
                            Ok(m) => {
                                items.push(m);
                                false
                            }
                            Err(_) => true,
                        },
                        1 => match sub.try_recv() {
                            Ok(m) => {
                                items.push(m);
                                false
                            }
                            Err(TryRecvError::Empty) => false,
                            Err(_) => true,
                        },
                        2 => sub.recv_many(&mut items, 3).is_err(),
                        _ => {
                            let mut batch = Vec::new();
                            let ended = sub.try_recv_many(&mut batch, 2).is_err();
                            items.extend(batch);
                            ended
                        }
                    };
                    if ended {
                        return items;
                    }
                }
            });
            publisher.join().unwrap();
            let mut expected = 0u64;
            let mut pending_lag = 0u64;
            for m in &items {
                match m {
                    Message::Lagged { missed } => pending_lag += missed,
                    m => {
                        let n: u64 = m.payload_str().unwrap().parse().unwrap();
                        assert_eq!(
                            n,
                            expected + pending_lag,
                            "{policy:?}/{method}: lag {pending_lag} before {n}, expected {expected}"
                        );
                        expected = n + 1;
                        pending_lag = 0;
                    }
                }
            }
            let stats = sub.stats();
            assert_eq!(stats.received + stats.dropped, N, "{policy:?}/{method}");
        }
    }
}

/// `Disconnect` under a flood from several publishers: the queued items,
/// then one `Lagged` counting every delivery missed from the overflow on,
/// then `Overflowed`, on every receive path.
#[test]
fn an_evicted_subscriber_sees_its_queue_one_lag_report_then_the_end() {
    for method in 0..4 {
        let broker = Broker::new();
        let sub = quiet_sub(&broker, 4, Overflow::Disconnect);
        sub.subscribe(["c"]).unwrap();
        sub.psubscribe(["c*"]).unwrap();
        let counted: usize = within("the flood", {
            let broker = broker.clone();
            move || {
                let publishers: Vec<_> = (0..3)
                    .map(|_| {
                        let broker = broker.clone();
                        thread::spawn(move || {
                            (0..500).map(|_| broker.publish("c", "x")).sum::<usize>()
                        })
                    })
                    .collect();
                publishers.into_iter().map(|p| p.join().unwrap()).sum()
            }
        });
        assert_eq!(broker.numsub(["c"])[0].1, 0);
        assert_eq!(broker.numpat(), 0);
        let mut items = Vec::new();
        let end = loop {
            let got = match method {
                0 => sub.recv().map_err(|e| format!("{e:?}")),
                1 => sub.try_recv().map_err(|e| format!("{e:?}")),
                2 => sub
                    .recv_timeout(Duration::MAX)
                    .map_err(|e| format!("{e:?}")),
                _ => {
                    let mut batch = Vec::new();
                    match sub.recv_many(&mut batch, 2) {
                        Ok(_) => {
                            items.extend(batch);
                            continue;
                        }
                        Err(e) => Err(format!("{e:?}")),
                    }
                }
            };
            match got {
                Ok(m) => items.push(m),
                Err(e) => break e,
            }
        };
        assert_eq!(end, "Overflowed", "method {method}");
        let seen = describe(&items);
        assert!(seen.len() >= 2);
        let (last, queued) = seen.split_last().unwrap();
        assert!(queued.iter().all(|s| !s.starts_with("lag")), "{seen:?}");
        let stats = sub.stats();
        assert_eq!(*last, format!("lag:{}", stats.dropped), "{seen:?}");
        let totals = broker.stats();
        assert_eq!(totals.disconnected, 1);
        assert_eq!(totals.delivered, stats.received);
        assert_eq!(totals.dropped, stats.dropped);
        assert_eq!(totals.delivered + totals.dropped, counted as u64);
        assert_eq!(sub.subscribe(["c"]), Err(SubscribeError::Overflowed));
    }
}

/// `Overflowed` is the end of an evicted subscriber's stream: once a
/// receive has returned it, nothing may be queued any more, and the one
/// `Lagged` before it counted every delivery the subscriber missed (its
/// `dropped` counter agrees). Publishers on its other channels keep running
/// while the eviction removes its many subscriptions.
#[test]
fn nothing_follows_overflowed_in_an_evicted_stream() {
    const CHANNELS: usize = 2_000;
    let names: Vec<String> = (0..CHANNELS).map(|i| format!("ch{i}")).collect();
    for round in 0..5 {
        let broker = Broker::new();
        let sub = quiet_sub(&broker, 1, Overflow::Disconnect);
        sub.subscribe(&names).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let (broker, stop, names) = (broker.clone(), Arc::clone(&stop), names.clone());
                thread::spawn(move || {
                    let mut i = p;
                    while !stop.load(Ordering::Relaxed) {
                        broker.publish(&names[i % CHANNELS], "x");
                        i += 7;
                    }
                })
            })
            .collect();
        let (mut reported, mut items) = (0u64, Vec::new());
        let end = loop {
            match sub.recv_timeout(HANG) {
                Ok(Message::Lagged { missed }) => {
                    reported += missed;
                    items.push(format!("lag:{missed}"));
                }
                Ok(m) => items.push(m.kind().to_owned()),
                Err(e) => break e,
            }
        };
        assert_eq!(end, RecvTimeoutError::Overflowed);
        // The eviction finishes; publishers go on a little.
        thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        for publisher in publishers {
            within("a publisher", move || publisher.join().unwrap());
        }
        let after: Vec<String> = describe(&sub.try_iter().collect::<Vec<_>>());
        assert_eq!(
            (after.as_slice(), sub.stats().dropped),
            (&[][..], reported),
            "round {round}: items after Overflowed (before it: {items:?})"
        );
    }
}

// ==== bad input ==============================================================

#[test]
fn capacity_zero_means_one_under_every_policy() {
    for policy in [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Block,
        Overflow::BlockFor(Duration::ZERO),
        Overflow::BlockFor(Duration::MAX),
        Overflow::Disconnect,
    ] {
        let broker = Broker::new();
        let sub = Arc::new(quiet_sub(&broker, 0, policy));
        sub.subscribe(["c"]).unwrap();
        assert_eq!(broker.publish("c", "1"), 1);
        let waits = matches!(policy, Overflow::Block | Overflow::BlockFor(Duration::MAX));
        let second = {
            let broker = broker.clone();
            spawn_boxed(move || broker.publish("c", "2"))
        };
        if waits {
            thread::sleep(Duration::from_millis(20));
            assert!(second.try_recv().is_err(), "{policy:?} waits for room");
        } else {
            assert_eq!(second.recv_timeout(HANG).expect("second publish"), 1);
        }
        let first = describe(&take(&sub, 1));
        if waits {
            assert_eq!(second.recv_timeout(HANG).expect("second publish"), 1);
        }
        let rest = describe(&sub.try_iter().collect::<Vec<_>>());
        let want: [&str; 2] = match policy {
            Overflow::DropOldest => ["lag:1", "msg:2"],
            Overflow::Block | Overflow::BlockFor(Duration::MAX) => ["msg:1", "msg:2"],
            _ => ["msg:1", "lag:1"],
        };
        assert_eq!([first[0].as_str(), rest[0].as_str()], want, "{policy:?}");
        assert_eq!(rest.len(), 1, "{policy:?}: {rest:?}");
        let stats = broker.stats();
        assert_eq!(stats.delivered, sub.stats().received, "{policy:?}");
        assert_eq!(stats.dropped, sub.stats().dropped, "{policy:?}");
    }
}

#[test]
fn huge_groups_into_a_capacity_of_one_under_every_policy() {
    const PATTERNS: usize = 150;
    // Distinct patterns that all match "x": "x", "*x", "**x", ...
    let patterns: Vec<String> = (0..PATTERNS)
        .map(|i| format!("{}x", "*".repeat(i)))
        .collect();
    for policy in [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Block,
        Overflow::BlockFor(Duration::from_millis(5)),
        Overflow::Disconnect,
    ] {
        let broker = Broker::new();
        let sub = quiet_sub(&broker, 1, policy);
        sub.subscribe(["x"]).unwrap();
        sub.psubscribe(&patterns).unwrap();
        assert_eq!(broker.publish("x", "a"), PATTERNS + 1);
        let second = {
            let broker = broker.clone();
            spawn_boxed(move || broker.publish("x", "b"))
        };
        if policy != Overflow::Block {
            assert_eq!(
                second.recv_timeout(HANG).unwrap(),
                PATTERNS + 1,
                "{policy:?}"
            );
        }
        let first = take(&sub, 1);
        if policy == Overflow::DropOldest {
            assert_eq!(describe(&first), [format!("lag:{}", PATTERNS + 1)]);
        } else {
            assert_eq!(describe(&first), ["msg:a"], "{policy:?}");
            let rest = take(&sub, PATTERNS);
            for (at, m) in rest.iter().enumerate() {
                assert_eq!(
                    m.pattern().map(Name::as_bytes),
                    Some(patterns[at].as_bytes())
                );
            }
        }
        if policy == Overflow::Block {
            assert_eq!(
                second.recv_timeout(HANG).unwrap(),
                PATTERNS + 1,
                "{policy:?}"
            );
        }
        let rest = describe(&sub.try_iter().collect::<Vec<_>>());
        match policy {
            Overflow::DropNewest | Overflow::BlockFor(_) | Overflow::Disconnect => {
                assert_eq!(rest, [format!("lag:{}", PATTERNS + 1)], "{policy:?}");
            }
            _ => assert_eq!(rest.len(), PATTERNS + 1, "{policy:?}: {rest:?}"),
        }
        let stats = broker.stats();
        assert_eq!(stats.delivered + stats.dropped, 2 * (PATTERNS as u64 + 1));
        assert_eq!(stats.dropped, sub.stats().dropped, "{policy:?}");
    }
}

#[test]
fn empty_and_binary_names_and_empty_payloads_are_ordinary() {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().max_payload_bytes(2).build();
    let names: Vec<Name> = vec![
        Name::from(""),
        Name::from(&b"\0"[..]),
        Name::from(&b"\xff\xfe*"[..]),
        Name::from(&b"a\0b"[..]),
        Name::from(&b"["[..]),
        Name::from(&b"\\"[..]),
    ];
    sub.subscribe(names.clone()).unwrap();
    sub.psubscribe(names.clone()).unwrap();
    sub.try_iter().for_each(drop);
    for channel in &names {
        let want = 1 + names
            .iter()
            .filter(|p| glob_match(p.as_bytes(), channel.as_bytes()))
            .count();
        assert_eq!(broker.publish(channel.as_bytes(), ""), want, "{channel:?}");
        let got: Vec<Message> = sub.try_iter().collect();
        let deliveries = got.iter().filter(|m| m.is_delivery()).count();
        let lag: u64 = got
            .iter()
            .map(|m| match m {
                Message::Lagged { missed } => *missed,
                _ => 0,
            })
            .sum();
        // A group is admitted whole into a queue holding no delivery.
        assert_eq!((deliveries, lag), (want, 0), "{channel:?}: {got:?}");
        // Then an empty payload weighs one byte: at most two are queued.
        broker.publish(channel.as_bytes(), "");
        broker.publish(channel.as_bytes(), "");
        broker.publish(channel.as_bytes(), "");
        let got: Vec<Message> = sub.try_iter().collect();
        let deliveries = got.iter().filter(|m| m.is_delivery()).count();
        let lag: u64 = got
            .iter()
            .map(|m| match m {
                Message::Lagged { missed } => *missed,
                _ => 0,
            })
            .sum();
        assert_eq!(
            deliveries,
            if want == 1 { 2 } else { want },
            "{channel:?}: {got:?}"
        );
        assert_eq!(deliveries as u64 + lag, 3 * want as u64, "{channel:?}");
    }
    let channels = broker.channels();
    assert_eq!(channels.len(), names.len());
    assert_eq!(broker.numpat(), names.len());
    assert_eq!(sub.unsubscribe_all().unwrap(), names.len());
    assert_eq!(sub.punsubscribe_all().unwrap(), 0);
    assert!(broker.channels().is_empty());
}

#[test]
fn unrepresentable_and_past_deadlines_never_panic() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
    sub.subscribe(["c"]).unwrap();
    assert_eq!(
        sub.recv_deadline(
            Instant::now()
                .checked_sub(Duration::from_millis(5))
                .unwrap()
        ),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        sub.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    let waiter = {
        let sub = Arc::clone(&sub);
        spawn_boxed(move || {
            sub.recv_timeout(Duration::MAX)
                .map(|m| m.payload_str().map(str::to_owned))
        })
    };
    thread::sleep(Duration::from_millis(50));
    broker.publish("c", "late");
    assert_eq!(waiter.recv_timeout(HANG).unwrap(), Ok(Some("late".into())));
    // BlockFor(MAX) waits like Block and goes on once the subscriber reads.
    let patient = quiet_sub(&broker, 1, Overflow::BlockFor(Duration::MAX));
    patient.subscribe(["p"]).unwrap();
    broker.publish("p", "1");
    let publisher = {
        let broker = broker.clone();
        spawn_boxed(move || broker.publish("p", "2"))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(publisher.try_recv().is_err(), "BlockFor(MAX) waits");
    assert_eq!(take(&patient, 2).len(), 2);
    assert_eq!(publisher.recv_timeout(HANG).unwrap(), 1);
}

// ==== panics, drops and the end of the broker ================================

static CLONES: AtomicUsize = AtomicUsize::new(0);
static PANIC_AT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// A payload whose `clone` panics on the `PANIC_AT`-th call.
#[derive(Debug, PartialEq)]
struct Brittle(u32);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        let n = CLONES.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n != PANIC_AT.load(Ordering::SeqCst), "clone #{n} panics");
        Brittle(self.0)
    }
}

/// A clone panicking in the waiting publish's recomputation (after the
/// channel was marked busy) leaves the channel free, the stream atomic and
/// the counters consistent.
#[test]
fn a_clone_panicking_while_a_waiting_publish_recomputes_frees_the_channel() {
    let broker: Broker<Brittle> = Broker::default();
    let blocker = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .confirmations(false)
        .build();
    blocker.subscribe(["c1"]).unwrap();
    let watcher = broker.subscriber_builder().confirmations(false).build();
    watcher.subscribe(["c1"]).unwrap();
    watcher.psubscribe(["c*"]).unwrap();
    broker.publish("c1", Brittle(0)); // fills the blocker
    watcher.try_iter().for_each(drop);
    let waiting = {
        let broker = broker.clone();
        spawn_boxed(move || {
            catch_unwind(AssertUnwindSafe(|| broker.publish("c1", Brittle(1)))).is_err()
        })
    };
    thread::sleep(SETTLE);
    // The watcher's patterns change: the waiting publish must recompute its
    // deliveries, and the clone it makes for that panics.
    watcher.psubscribe(["*1"]).unwrap();
    CLONES.store(0, Ordering::SeqCst);
    PANIC_AT.store(1, Ordering::SeqCst);
    let _ = blocker.recv_timeout(HANG).unwrap();
    let panicked = waiting.recv_timeout(HANG).expect("the publish ends");
    PANIC_AT.store(usize::MAX, Ordering::SeqCst);
    let items: Vec<Message<Brittle>> = watcher.try_iter().collect();
    if panicked {
        // Whatever the watcher got of that publish, it got all or nothing.
        let of_it = items
            .iter()
            .filter(|m| m.payload() == Some(&Brittle(1)))
            .count();
        assert!(of_it == 0 || of_it == 3, "{items:?}");
    }
    // The channel is not left busy (the blocker may hold "1": read it).
    blocker.try_iter().for_each(drop);
    let after = within("a publish after the panic", {
        let broker = broker.clone();
        move || broker.publish("c1", Brittle(2))
    });
    assert_eq!(after, 4);
    let blocker = within("an unsubscribe after the panic", move || {
        blocker.unsubscribe(["c1"]).unwrap();
        blocker
    });
    drop(blocker);
    let totals = broker.stats();
    assert_eq!(totals.published, 3);
    assert_eq!(totals.dropped, 0);
}

/// Every receive path ends with `Disconnected` once the last broker handle
/// is gone and the queue is drained, also when it was blocked at the time.
#[test]
fn every_receive_path_ends_when_the_last_broker_goes() {
    for path in 0..7 {
        let broker = Broker::new();
        let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
        sub.subscribe(["c"]).unwrap();
        broker.publish("c", "queued");
        let receiver = {
            let sub = Arc::clone(&sub);
            spawn_boxed(move || -> Vec<String> {
                let mut got = Vec::new();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                loop {
                    let item: Result<Message, String> = match path {
                        0 => sub.recv().map_err(|e| format!("{e:?}")),
                        1 => sub
                            .recv_timeout(Duration::MAX)
                            .map_err(|e| format!("{e:?}")),
                        2 => {
                            let mut batch = Vec::new();
                            match sub.recv_many(&mut batch, 8) {
                                Ok(_) => {
                                    got.extend(describe(&batch));
                                    continue;
                                }
                                Err(e) => Err(format!("{e:?}")),
                            }
                        }
                        3 => rt.block_on(sub.recv_async()).map_err(|e| format!("{e:?}")),
                        4 => {
                            let items: Vec<Message> = rt.block_on(async {
                                use std::future::poll_fn;
                                use std::pin::pin;
                                let mut stream = pin!(sub.stream());
                                let mut items = Vec::new();
                                while let Some(m) = poll_fn(|cx| {
                                    futures_core::Stream::poll_next(stream.as_mut(), cx)
                                })
                                .await
                                {
                                    items.push(m);
                                }
                                items
                            });
                            got.extend(describe(&items));
                            Err(format!("{:?}", sub.try_recv()))
                        }
                        5 => {
                            let (_never_tx, never) = unbounded::<()>();
                            select! {
                                recv(sub.ready()) -> _ => match sub.try_recv() {
                                    Ok(m) => Ok(m),
                                    Err(TryRecvError::Empty) => continue,
                                    Err(e) => Err(format!("{e:?}")),
                                },
                                recv(never) -> _ => unreachable!(),
                            }
                        }
                        _ => match sub.iter().next() {
                            Some(m) => Ok(m),
                            None => Err(format!("{:?}", sub.try_recv())),
                        },
                    };
                    match item {
                        Ok(m) => got.extend(describe(&[m])),
                        Err(e) => {
                            got.push(e);
                            return got;
                        }
                    }
                }
            })
        };
        thread::sleep(Duration::from_millis(50));
        drop(broker);
        let got = receiver
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("path {path}: still blocked after the broker went"));
        let end = got.last().unwrap();
        assert!(end.contains("Disconnected"), "path {path}: {got:?}");
        assert_eq!(got[0], "msg:queued", "path {path}: {got:?}");
        assert_eq!(got.len(), 2, "path {path}: {got:?}");
    }
}

/// Overflow evictions racing with the subscriber's own unsubscribes and its
/// drop: no panic, no hang, and the registry ends up empty.
#[test]
fn evictions_racing_with_unsubscribes_and_drops_end_cleanly() {
    within("the races", || {
        for round in 0..200 {
            let broker = Broker::new();
            let sub = Arc::new(quiet_sub(&broker, 1, Overflow::Disconnect));
            sub.subscribe(["a", "b"]).unwrap();
            sub.psubscribe(["a*"]).unwrap();
            let flood = {
                let broker = broker.clone();
                thread::spawn(move || {
                    for _ in 0..50 {
                        broker.publish("a", "x");
                        broker.publish("b", "y");
                    }
                })
            };
            match round % 3 {
                0 => {
                    let _ = sub.unsubscribe(["a", "b"]);
                    let _ = sub.punsubscribe_all();
                }
                1 => {
                    let _ = sub.subscribe(["c"]);
                    let _ = sub.unsubscribe_all();
                }
                _ => {}
            }
            drop(sub);
            flood.join().unwrap();
            assert!(broker.channels().is_empty(), "round {round}");
            assert_eq!(broker.numpat(), 0, "round {round}");
        }
    });
}

// ==== async and select! wake-ups =============================================

/// Many `recv_async` futures on one subscriber, across worker threads, some
/// dropped half way by a timeout: every item is taken exactly once and
/// nobody sleeps while something is queued.
#[test]
fn concurrent_and_cancelled_async_receives_lose_nothing() {
    const N: usize = 3_000;
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
    sub.subscribe(["c"]).unwrap();
    sub.psubscribe(["c*"]).unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let (sub, taken) = (Arc::clone(&sub), Arc::clone(&taken));
            rt.spawn(async move {
                let mut mine = Vec::new();
                while taken.load(Ordering::SeqCst) < 2 * N {
                    if t % 2 == 0 {
                        // Cancelled often: a short timeout drops the future.
                        match tokio::time::timeout(Duration::from_micros(50), sub.recv_async())
                            .await
                        {
                            Ok(Ok(m)) => {
                                mine.push(m);
                                taken.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(Err(e)) => panic!("{e:?}"),
                            Err(_) => {}
                        }
                    } else {
                        tokio::select! {
                            m = sub.recv_async() => {
                                mine.push(m.unwrap());
                                taken.fetch_add(1, Ordering::SeqCst);
                            }
                            () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let broker = broker.clone();
            thread::spawn(move || {
                for i in 0..N / 2 {
                    broker.publish("c", format!("{p}.{i}"));
                    if i % 64 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let all: Vec<Message> = within("the async receivers", move || {
        rt.block_on(async {
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            all
        })
    });
    assert_eq!(all.len(), 2 * N);
    let mut per_payload: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in &all {
        *per_payload
            .entry(m.payload().unwrap().to_vec())
            .or_default() += 1;
    }
    assert!(per_payload.values().all(|&n| n == 2));
    assert!(sub.is_empty());
    assert_eq!(sub.stats().received, 2 * N as u64);
}

/// A consumer that follows the documented idiom (wait on `ready()`, drain
/// with `try_recv` until `Empty`) with no timeout of its own never sleeps
/// while an item is queued, with several publishers, groups of deliveries,
/// a `Block` bound, and another receiver on another thread taking items too.
#[test]
fn the_ready_idiom_never_sleeps_on_a_queued_item() {
    const N: usize = 4_000;
    for bounded_block in [false, true] {
        let broker = Broker::new();
        let sub = Arc::new(if bounded_block {
            quiet_sub(&broker, 2, Overflow::Block)
        } else {
            broker.subscriber_builder().confirmations(false).build()
        });
        sub.subscribe(["c"]).unwrap();
        sub.psubscribe(["c*", "?"]).unwrap();
        let taken = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = unbounded::<()>();
        let consumer = {
            let (sub, taken) = (Arc::clone(&sub), Arc::clone(&taken));
            thread::spawn(move || loop {
                select! {
                    recv(sub.ready()) -> _ => loop {
                        match sub.try_recv() {
                            Ok(_) => { taken.fetch_add(1, Ordering::SeqCst); }
                            Err(TryRecvError::Empty) => break,
                            Err(e) => panic!("{e:?}"),
                        }
                    },
                    recv(stop_rx) -> _ => return,
                }
            })
        };
        // A second receiver competing for the same items.
        let rival = {
            let (sub, taken) = (Arc::clone(&sub), Arc::clone(&taken));
            thread::spawn(move || {
                for _ in 0..200 {
                    if sub.try_recv().is_ok() {
                        taken.fetch_add(1, Ordering::SeqCst);
                    }
                    thread::yield_now();
                }
            })
        };
        let publishers: Vec<_> = (0..2)
            .map(|_| {
                let broker = broker.clone();
                thread::spawn(move || {
                    for i in 0..N / 2 {
                        broker.publish(if i % 2 == 0 { "c" } else { "x" }, "p");
                    }
                })
            })
            .collect();
        // Publishes on "c" make 3 deliveries, on "x" 1 (pattern "?").
        let want = (N / 2) * 3 + (N / 2);
        within("publishers and the select! consumer", move || {
            for p in publishers {
                p.join().unwrap();
            }
            rival.join().unwrap();
            while taken.load(Ordering::SeqCst) < want {
                thread::sleep(Duration::from_millis(1));
            }
            stop_tx.send(()).unwrap();
            consumer.join().unwrap();
        });
        assert!(sub.is_empty());
    }
}
