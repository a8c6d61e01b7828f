//! Attacks on several receivers sharing one subscriber while it moves between
//! its queue and a channel log, on drops from other threads, on bounded
//! subscribers beside log readers, and on retention beside the pattern memo
//! and the log. Every wait is time-boxed.

// Scenario tests: long, with their constants and helpers next to their use.
#![allow(clippy::too_many_lines, clippy::items_after_statements)]

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/wait.rs"]
mod wait;
use wait::{expect_kind, PATIENCE};

use channelcast::{Broker, Message, Overflow, Subscriber};

/// Spawns a thread that blocks in `recv()` once and reports what it got.
fn blocking_receiver(
    sub: &Arc<Subscriber>,
    tx: &mpsc::Sender<(usize, Option<String>)>,
    id: usize,
) -> thread::JoinHandle<()> {
    let sub = Arc::clone(sub);
    let tx = tx.clone();
    thread::spawn(move || {
        // recv() (untimed) is the point; the test's own waits are time-boxed,
        // and the thread is released at the end by dropping the broker.
        let got = sub
            .recv()
            .ok()
            .and_then(|m| m.payload_str().map(str::to_owned));
        let _ = tx.send((id, got));
    })
}

// ---------------------------------------------------------------------------
// 1. Two threads blocked in recv() on one subscriber that reads a channel
// log. The first append wakes one of them (notify_one) and clears the
// mailbox's log registration; the one woken takes the entry and returns.
// The other is still parked on the condvar, but nobody is registered with
// the log any more: the next append wakes nobody.
#[test]
fn two_blocked_receivers_on_a_log_reader_both_get_a_delivery() {
    let broker = Broker::new();
    let other = broker.subscriber();
    other.subscribe(["ch"]).unwrap();
    let sub = Arc::new(broker.subscriber());
    sub.subscribe(["ch"]).unwrap(); // sole, channel has a subscriber: log reader
    expect_kind(&sub, "subscribe");
    let (tx, rx) = mpsc::channel();
    let r1 = blocking_receiver(&sub, &tx, 1);
    let r2 = blocking_receiver(&sub, &tx, 2);
    thread::sleep(Duration::from_millis(300)); // both parked
    assert_eq!(broker.publish("ch", "one"), 2);
    let first = rx
        .recv_timeout(PATIENCE)
        .expect("one receiver got the first");
    assert_eq!(first.1.as_deref(), Some("one"));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(broker.publish("ch", "two"), 2);
    let second = rx.recv_timeout(Duration::from_secs(3));
    let stats = sub.stats();
    drop(broker); // releases a receiver still parked
    let _ = (r1.join(), r2.join());
    let second = second.unwrap_or_else(|_| {
        panic!("the second receiver never woke while 'two' waited in the log ({stats:?})")
    });
    assert_eq!(second.1.as_deref(), Some("two"));
}

// 1b. The same through the fix of review 1: both parked while queue-fed,
// the subscriber is moved onto the log (join_log wakes only one).
#[test]
fn two_blocked_receivers_moved_onto_the_log_both_get_a_delivery() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber());
    sub.subscribe(["ch"]).unwrap();
    expect_kind(&sub, "subscribe");
    let (tx, rx) = mpsc::channel();
    let r1 = blocking_receiver(&sub, &tx, 1);
    let r2 = blocking_receiver(&sub, &tx, 2);
    thread::sleep(Duration::from_millis(300));
    let other = broker.subscriber();
    other.subscribe(["ch"]).unwrap(); // moves `sub` onto the log
    thread::sleep(Duration::from_millis(100));
    assert_eq!(broker.publish("ch", "one"), 2);
    let first = rx
        .recv_timeout(PATIENCE)
        .expect("one receiver got the first");
    assert_eq!(first.1.as_deref(), Some("one"));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(broker.publish("ch", "two"), 2);
    let second = rx.recv_timeout(Duration::from_secs(3));
    drop(broker);
    let _ = (r1.join(), r2.join());
    let second = second.expect("the second receiver never woke");
    assert_eq!(second.1.as_deref(), Some("two"));
}

// Control: the same with a queue-fed subscriber passes (each offer notifies).
#[test]
fn control_two_blocked_receivers_on_a_queue_fed_subscriber() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber());
    sub.subscribe(["ch"]).unwrap();
    expect_kind(&sub, "subscribe");
    let (tx, rx) = mpsc::channel();
    let r1 = blocking_receiver(&sub, &tx, 1);
    let r2 = blocking_receiver(&sub, &tx, 2);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(broker.publish("ch", "one"), 1);
    rx.recv_timeout(PATIENCE).expect("first");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(broker.publish("ch", "two"), 1);
    let second = rx.recv_timeout(Duration::from_secs(3));
    drop(broker);
    let _ = (r1.join(), r2.join());
    assert_eq!(second.expect("second").1.as_deref(), Some("two"));
}

// ---------------------------------------------------------------------------
// 3. A Block publisher waiting on a bounded subscriber whose last Arc is
// dropped by another thread: the publish returns, counting only the others.
#[test]
fn block_publisher_released_by_drop_from_another_thread() {
    for _ in 0..20 {
        let broker = Broker::new();
        let readers: Vec<Subscriber> = (0..3)
            .map(|_| {
                let s = broker.subscriber();
                s.subscribe(["ch"]).unwrap();
                s
            })
            .collect();
        let blocked = Arc::new(
            broker
                .subscriber_builder()
                .capacity(1)
                .overflow(Overflow::Block)
                .confirmations(false)
                .build(),
        );
        blocked.subscribe(["ch"]).unwrap();
        assert_eq!(broker.publish("ch", "fill"), 4);
        let publisher = {
            let broker = broker.clone();
            thread::spawn(move || broker.publish("ch", "waits"))
        };
        thread::sleep(Duration::from_millis(50));
        let dropper = {
            let blocked = Arc::clone(&blocked);
            thread::spawn(move || drop(blocked))
        };
        drop(blocked);
        dropper.join().unwrap();
        let start = Instant::now();
        while !publisher.is_finished() {
            assert!(start.elapsed() < PATIENCE, "publisher still blocked");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(publisher.join().unwrap(), 3);
        for r in &readers {
            let got: Vec<_> = r.try_iter().filter(Message::is_delivery).collect();
            assert_eq!(got.len(), 2);
            assert_eq!(r.stats().received, 2);
            assert_eq!(r.stats().queued, 0);
        }
        let stats = broker.stats();
        assert_eq!(stats.published, 2);
        assert_eq!(stats.dropped, 0, "{stats:?}");
    }
}

// ---------------------------------------------------------------------------
// 4. Bounded (DropOldest / DropNewest / BlockFor) subscribers holding the
// channel and two matching patterns, next to log readers; lag reports,
// dropped counts and publish counts stay exact.
#[test]
fn bounded_groups_next_to_log_readers_count_exactly() {
    for policy in [
        Overflow::DropOldest,
        Overflow::DropNewest,
        Overflow::BlockFor(Duration::from_millis(1)),
    ] {
        let broker = Broker::new();
        let logs: Vec<Subscriber> = (0..3)
            .map(|_| {
                let s = broker.subscriber();
                s.subscribe(["a.b"]).unwrap();
                s
            })
            .collect();
        let bounded = broker
            .subscriber_builder()
            .capacity(4)
            .overflow(policy)
            .confirmations(false)
            .build();
        bounded.subscribe(["a.b"]).unwrap();
        bounded.psubscribe(["a.*", "*.b"]).unwrap();
        const N: usize = 50;
        let mut total = 0;
        for i in 0..N {
            total += broker.publish("a.b", format!("{i}"));
        }
        assert_eq!(total, N * 6, "{policy:?}");
        let mut deliveries = 0u64;
        let mut lagged = 0u64;
        while let Ok(m) = bounded.try_recv() {
            match m {
                Message::Lagged { missed } => lagged += missed,
                m if m.is_delivery() => deliveries += 1,
                m => panic!("unexpected {m:?}"),
            }
        }
        let st = bounded.stats();
        assert_eq!(deliveries + lagged, (N * 3) as u64, "{policy:?} {st:?}");
        assert_eq!(st.dropped, lagged, "{policy:?}");
        assert_eq!(st.received, deliveries, "{policy:?}");
        assert_eq!(st.queued, 0);
        for s in &logs {
            let got: Vec<String> = s
                .try_iter()
                .filter(Message::is_delivery)
                .map(|m| m.payload_str().unwrap().to_owned())
                .collect();
            assert_eq!(got, (0..N).map(|i| i.to_string()).collect::<Vec<_>>());
            assert_eq!(s.stats().received, N as u64);
        }
        let bs = broker.stats();
        assert_eq!(bs.published, N as u64);
        assert_eq!(bs.dropped, lagged, "{policy:?} {bs:?}");
    }
}

// ---------------------------------------------------------------------------
// 5. A log reader's receivers (async and blocking) while the subscriber is
// moved queue -> log -> queue over and over by its own (un)subscribe calls
// and by others joining: no loss, no duplicate, in order, exact stats.
#[test]
fn churn_between_queue_and_log_with_shared_receivers() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
    sub.subscribe(["ch"]).unwrap();
    const N: u64 = 20_000;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Vec<u64>>();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let sub = Arc::clone(&sub);
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        handles.push(thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = sub.recv_timeout(Duration::from_millis(100)) {
                    if m.is_delivery() {
                        seen.push(m.payload_str().unwrap().parse::<u64>().unwrap());
                    }
                }
            }
            tx.send(seen).unwrap();
        }));
    }
    // async receiver on the same subscriber
    {
        let sub = Arc::clone(&sub);
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        handles.push(thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let seen = rt.block_on(async {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(Ok(m)) =
                        tokio::time::timeout(Duration::from_millis(200), sub.recv_async()).await
                    {
                        if m.is_delivery() {
                            seen.push(m.payload_str().unwrap().parse::<u64>().unwrap());
                        }
                    }
                }
                seen
            });
            tx.send(seen).unwrap();
        }));
    }
    let churner = {
        let sub = Arc::clone(&sub);
        let broker = broker.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // another sole subscriber joins: moves `sub` onto the log
                let other = broker.subscriber();
                other.subscribe(["ch"]).unwrap();
                thread::yield_now();
                // `sub` takes a second name: back to the queue
                if i % 2 == 0 {
                    sub.subscribe(["x"]).unwrap();
                    sub.unsubscribe(["x"]).unwrap();
                } else {
                    sub.psubscribe(["zz*"]).unwrap();
                    sub.punsubscribe(["zz*"]).unwrap();
                }
                drop(other);
                i += 1;
            }
        })
    };
    for i in 0..N {
        broker.publish("ch", i.to_string());
        if i % 1000 == 0 {
            thread::yield_now();
        }
    }
    let start = Instant::now();
    while sub.stats().received < N && start.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(rx.recv_timeout(Duration::from_secs(30)).expect("receiver"));
    }
    churner.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    // whatever is left
    while let Ok(m) = sub.try_recv() {
        if m.is_delivery() {
            all.push(m.payload_str().unwrap().parse().unwrap());
        }
    }
    let received = all.len() as u64;
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, received, "duplicates");
    assert_eq!(received, N, "lost {}", N - received);
    assert_eq!(sub.stats().received, N);
    assert_eq!(sub.stats().queued, 0);
}

// ---------------------------------------------------------------------------
// 6. Retained channel + pattern memo + log: a history joiner next to log
// readers and a pattern subscriber; counts and order exact.
#[test]
fn retained_with_memo_and_log() {
    let broker = Broker::new();
    broker.retain_last("news", 3);
    let p = broker.subscriber_builder().confirmations(false).build();
    p.psubscribe(["n*"]).unwrap();
    let a = broker.subscriber_builder().confirmations(false).build();
    a.subscribe(["news"]).unwrap();
    for i in 0..5 {
        assert_eq!(broker.publish("news", format!("{i}")), 2);
    }
    let late = broker.subscriber_builder().confirmations(false).build();
    late.subscribe_with_history(["news"]).unwrap();
    for i in 5..8 {
        assert_eq!(broker.publish("news", format!("{i}")), 3);
    }
    let got: Vec<String> = late
        .try_iter()
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["2", "3", "4", "5", "6", "7"]);
    assert_eq!(late.stats().received, 6);
    let got: Vec<String> = p
        .try_iter()
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect();
    assert_eq!(got.len(), 8);
    drop(p);
    // no pattern left: memo goes, log fast path may be used
    for i in 8..10 {
        assert_eq!(broker.publish("news", format!("{i}")), 2);
    }
    assert_eq!(a.try_iter().count(), 10);
    assert_eq!(late.try_iter().count(), 2);
}
