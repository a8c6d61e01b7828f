//! The guarantees at high fan-out with several publishers, where
//! subscribers that hold only the channel read its shared log instead of a
//! queue of their own, and when they move between the two while publishers
//! run. Every wait is time-boxed.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use channelcast::{Broker, Message, Subscriber, TryRecvError};

const PATIENCE: Duration = Duration::from_secs(20);
const PUBLISHERS: usize = 4;
const EACH: usize = 2_000;

fn publishers(broker: &Broker, channel: &'static str) -> Vec<thread::JoinHandle<()>> {
    (0..PUBLISHERS)
        .map(|p| {
            let broker = broker.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    broker.publish(channel, format!("{p}:{i}"));
                }
            })
        })
        .collect()
}

/// Receives until `want` deliveries arrived; returns every item.
fn receive(sub: &Subscriber, want: usize) -> Vec<Message> {
    let mut items = Vec::new();
    let mut deliveries = 0;
    while deliveries < want {
        let item = sub
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("after {deliveries} of {want} deliveries: {e}"));
        deliveries += usize::from(item.is_delivery());
        items.push(item);
    }
    items
}

fn payloads(items: &[Message]) -> Vec<String> {
    items
        .iter()
        .filter(|m| m.is_delivery())
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect()
}

/// FIFO per publisher: each publisher's numbers arrive in increasing order.
fn assert_fifo(seen: &[String]) {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for payload in seen {
        let (publisher, i) = payload.split_once(':').unwrap();
        let i: i64 = i.parse().unwrap();
        let previous = last.insert(publisher, i).unwrap_or(-1);
        assert!(i > previous, "publisher {publisher}: {i} after {previous}");
    }
}

#[test]
fn a_hundred_subscribers_see_one_order_fifo_per_publisher_and_exact_counts() {
    let broker = Broker::new();
    let subs: Arc<Vec<Subscriber>> = Arc::new(
        (0..100)
            .map(|_| {
                let sub = broker.subscriber();
                sub.subscribe(["wide"]).unwrap();
                sub
            })
            .collect(),
    );
    let writers = publishers(&broker, "wide");
    // Two reader threads, each draining half of the subscribers.
    let readers: Vec<_> = (0..2)
        .map(|half| {
            let subs = Arc::clone(&subs);
            thread::spawn(move || {
                subs.iter()
                    .skip(half)
                    .step_by(2)
                    .map(|sub| payloads(&receive(sub, PUBLISHERS * EACH)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let seen: Vec<Vec<String>> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap())
        .collect();
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "one order for everyone");
    }
    assert_fifo(&seen[0]);
    for sub in subs.iter() {
        let stats = sub.stats();
        assert_eq!(
            (stats.received, stats.queued),
            ((PUBLISHERS * EACH) as u64, 0)
        );
    }
    let totals = broker.stats();
    assert_eq!(totals.delivered, (100 * PUBLISHERS * EACH) as u64);
    assert_eq!(broker.numsub(["wide"])[0].1, 100);
}

#[test]
fn subscribers_moving_off_the_log_mid_stream_lose_and_reorder_nothing() {
    let broker = Broker::new();
    let steady = broker.subscriber();
    steady.subscribe(["busy"]).unwrap();
    let movers: Vec<Subscriber> = (0..8)
        .map(|_| {
            let sub = broker.subscriber();
            sub.subscribe(["busy"]).unwrap();
            sub
        })
        .collect();
    let writers = publishers(&broker, "busy");
    thread::sleep(Duration::from_millis(2));
    // Each mover does something that takes it off the shared log while
    // publishers run: a second channel, a pattern, the readiness handle, a
    // re-subscribe, or unsubscribing for good.
    movers[0].subscribe(["other"]).unwrap();
    movers[1].psubscribe(["nothing*"]).unwrap();
    let _ = movers[2].ready();
    movers[3].subscribe(["busy"]).unwrap();
    movers[4].ssubscribe(["shard"]).unwrap();
    movers[5].unsubscribe(["busy"]).unwrap();
    movers[6].unsubscribe_all().unwrap();
    for writer in writers {
        writer.join().unwrap();
    }
    let all = PUBLISHERS * EACH;
    let reference = payloads(&receive(&steady, all));
    assert_fifo(&reference);
    for (at, mover) in movers.iter().enumerate() {
        let items: Vec<Message> = std::iter::from_fn(|| match mover.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Empty) => None,
            Err(e) => panic!("{e}"),
        })
        .collect();
        let seen = payloads(&items);
        match at {
            5 | 6 => {
                // Unsubscribed: a prefix of the channel's order, and nothing
                // after the confirmation.
                assert_eq!(seen, reference[..seen.len()], "mover {at}");
                let confirmed = items
                    .iter()
                    .position(|m| m.kind() == "unsubscribe")
                    .expect("confirmed");
                assert!(
                    items[confirmed..].iter().all(|m| !m.is_delivery()),
                    "mover {at}"
                );
            }
            _ => assert_eq!(seen, reference, "mover {at}: everything, in order"),
        }
    }
}

#[test]
fn a_late_subscriber_reads_from_its_confirmation_on_and_blocks_until_more() {
    let broker = Broker::new();
    let first = broker.subscriber();
    first.subscribe(["c"]).unwrap();
    broker.publish("c", "before");
    let late = broker.subscriber();
    late.subscribe(["c"]).unwrap();
    assert_eq!(late.recv_timeout(PATIENCE).unwrap().kind(), "subscribe");
    assert_eq!(late.try_recv(), Err(TryRecvError::Empty));
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            broker.publish("c", "after")
        })
    };
    // Blocks on the log, and the publish wakes it.
    let msg = late.recv_timeout(PATIENCE).expect("woken by the publish");
    assert_eq!(msg.payload_str(), Some("after"));
    assert_eq!(publisher.join().unwrap(), 2);
    assert_eq!(late.len(), 0);
    broker.publish("c", "queued");
    assert_eq!(late.len(), 1);
    assert_eq!(late.stats().queued, 1);
    drop(broker);
    assert_eq!(late.recv().unwrap().payload_str(), Some("queued"));
    assert_eq!(late.recv(), Err(channelcast::RecvError::Disconnected));
}

#[test]
fn async_readers_of_a_log_are_woken_by_publishers() {
    let broker = Broker::new();
    let subs: Vec<Subscriber> = (0..10)
        .map(|_| {
            let sub = broker.subscriber_builder().confirmations(false).build();
            sub.subscribe(["a"]).unwrap();
            sub
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            for i in 0..500 {
                broker.publish("a", i.to_string());
                if i % 50 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let counts = runtime.block_on(async {
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|sub| {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while got.len() < 500 {
                        let msg = tokio::time::timeout(PATIENCE, sub.recv_async())
                            .await
                            .expect("woken in time")
                            .unwrap();
                        got.push(msg.payload_str().unwrap().parse::<u32>().unwrap());
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await.unwrap());
        }
        all
    });
    publisher.join().unwrap();
    for got in counts {
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }
}

#[test]
fn threads_sharing_one_log_reader_get_each_delivery_once_in_order() {
    // Receivers that share one subscriber take its log's entries without
    // the subscriber's queue lock: each delivery must reach exactly one of
    // them, each sees an increasing subsequence per publisher, and the
    // counts add up.
    let broker = Broker::new();
    let others: Vec<Subscriber> = (0..3)
        .map(|_| {
            let sub = broker.subscriber();
            sub.subscribe(["shared"]).unwrap();
            sub
        })
        .collect();
    let shared = Arc::new(broker.subscriber_builder().confirmations(false).build());
    shared.subscribe(["shared"]).unwrap();
    let writers = publishers(&broker, "shared");
    let all = PUBLISHERS * EACH;
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (shared, taken) = (Arc::clone(&shared), Arc::clone(&taken));
            thread::spawn(move || {
                let mut seen = Vec::new();
                while taken.load(std::sync::atomic::Ordering::SeqCst) < all {
                    match shared.recv_timeout(Duration::from_millis(50)) {
                        Ok(Message::Message { payload, .. }) => {
                            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            seen.push(String::from_utf8(payload.to_vec()).unwrap());
                        }
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(channelcast::RecvTimeoutError::Timeout) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                seen
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut everything = Vec::new();
    for reader in readers {
        let seen = reader.join().expect("a reader panicked");
        assert_fifo(&seen);
        everything.extend(seen);
    }
    assert_eq!(everything.len(), all, "each delivery once");
    everything.sort();
    everything.dedup();
    assert_eq!(everything.len(), all, "no delivery twice");
    let stats = shared.stats();
    assert_eq!((stats.received, stats.queued), (all as u64, 0));
    for sub in &others {
        assert_fifo(&payloads(&receive(sub, all)));
    }
}

#[test]
fn the_first_subscriber_moves_to_the_log_without_losing_its_queue() {
    // The first subscriber of a channel is queue-fed; when a second one
    // joins, both read the log. What the first had queued comes first.
    let broker = Broker::new();
    let first = broker.subscriber();
    first.subscribe(["moving"]).unwrap();
    for i in 0..10 {
        broker.publish("moving", format!("early {i}"));
    }
    let second = broker.subscriber();
    second.subscribe(["moving"]).unwrap();
    for i in 0..10 {
        assert_eq!(broker.publish("moving", format!("late {i}")), 2);
    }
    let seen = payloads(&receive(&first, 20));
    let want: Vec<String> = (0..10)
        .map(|i| format!("early {i}"))
        .chain((0..10).map(|i| format!("late {i}")))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(payloads(&receive(&second, 10)), want[10..]);
    let stats = first.stats();
    assert_eq!((stats.received, stats.queued), (20, 0));
    // Leaving the log again (a second channel) keeps the order too.
    broker.publish("moving", "before the second channel");
    first.subscribe(["elsewhere"]).unwrap();
    broker.publish("moving", "after the second channel");
    let seen = payloads(&receive(&first, 2));
    assert_eq!(
        seen,
        ["before the second channel", "after the second channel"]
    );
    assert_eq!(first.stats().received, 22);
    assert_eq!(broker.numsub(["moving"])[0].1, 2);
}

#[test]
fn pattern_publishes_see_every_pattern_change_between_them() {
    // A stripe remembers the patterns matching the channel it published on
    // last, keyed by the pattern table's version: every (un)subscription in
    // between, and every subscriber dropped, must be seen by the next
    // publish, on the same channel and on others.
    let broker = Broker::new();
    let patterns = ["memo:*", "memo:?", "m*", "*:1", "nothing*"];
    let channels = ["memo:1", "memo:2", "memo:1", "other:1"];
    let mut subs: Vec<Option<Subscriber>> = (0..4).map(|_| None).collect();
    let mut held: Vec<Vec<&str>> = vec![Vec::new(); 4];
    let mut expected: Vec<usize> = vec![0; 4];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..2_000 {
        let who = next(subs.len());
        let pattern = patterns[next(patterns.len())];
        match next(4) {
            0 | 1 => {
                let sub = subs[who].get_or_insert_with(|| {
                    broker.subscriber_builder().confirmations(false).build()
                });
                sub.psubscribe([pattern]).unwrap();
                if !held[who].contains(&pattern) {
                    held[who].push(pattern);
                }
            }
            2 => {
                if let Some(sub) = &subs[who] {
                    sub.punsubscribe([pattern]).unwrap();
                    held[who].retain(|p| *p != pattern);
                }
            }
            _ => {
                // Dropped: its count so far is checked, then it is gone.
                if let Some(sub) = subs[who].take() {
                    let got = std::iter::from_fn(|| sub.try_recv().ok()).count();
                    assert_eq!(got, expected[who], "subscriber {who} before its drop");
                }
                held[who].clear();
                expected[who] = 0;
            }
        }
        for channel in channels {
            let mut reach = 0;
            for (at, patterns) in held.iter().enumerate() {
                let n = patterns
                    .iter()
                    .filter(|p| channelcast::glob_match(p, channel))
                    .count();
                expected[at] += n;
                reach += n;
            }
            assert_eq!(broker.publish(channel, "x"), reach, "publish on {channel}");
        }
    }
    for (at, sub) in subs.iter().enumerate() {
        if let Some(sub) = sub {
            let got = std::iter::from_fn(|| sub.try_recv().ok()).count();
            assert_eq!(got, expected[at], "subscriber {at}");
        }
    }
}

#[test]
fn threads_sharing_one_queue_fed_subscriber_get_each_delivery_once_in_order() {
    // A subscriber of two channels has a queue of its own; its receivers
    // take the whole queue into a batch and serve themselves from it
    // without the queue's lock. Shared by three receiving threads (some
    // blocking, some polling) while publishers run: each delivery once,
    // FIFO per publisher in each thread, exact counts, nobody left asleep.
    let broker = Broker::new();
    let shared = Arc::new(broker.subscriber_builder().confirmations(false).build());
    shared.subscribe(["left", "right"]).unwrap();
    let mut writers = publishers(&broker, "left");
    writers.extend(publishers(&broker, "right"));
    let all = 2 * PUBLISHERS * EACH;
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (shared, taken) = (Arc::clone(&shared), Arc::clone(&taken));
            thread::spawn(move || {
                let mut seen: HashMap<String, Vec<String>> = HashMap::new();
                while taken.load(std::sync::atomic::Ordering::SeqCst) < all {
                    let item = if r == 0 {
                        match shared.try_recv() {
                            Ok(item) => item,
                            Err(TryRecvError::Empty) => {
                                thread::yield_now();
                                continue;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        match shared.recv_timeout(Duration::from_millis(50)) {
                            Ok(item) => item,
                            Err(channelcast::RecvTimeoutError::Timeout) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let Message::Message { channel, payload } = item else {
                        panic!("unexpected {item:?}");
                    };
                    taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    seen.entry(channel.to_string())
                        .or_default()
                        .push(String::from_utf8(payload.to_vec()).unwrap());
                }
                seen
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut everything = Vec::new();
    for reader in readers {
        for (channel, seen) in reader.join().expect("a reader panicked") {
            assert_fifo(&seen);
            everything.extend(seen.into_iter().map(|p| format!("{channel}/{p}")));
        }
    }
    assert_eq!(everything.len(), all, "each delivery once");
    everything.sort();
    everything.dedup();
    assert_eq!(everything.len(), all, "no delivery twice");
    let stats = shared.stats();
    assert_eq!((stats.received, stats.queued), (all as u64, 0));
}
