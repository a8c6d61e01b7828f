//! Tests for bounded subscribers: each overflow policy, exact lag reports,
//! publish counts, counters, and lifecycle under blocking.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use channelcast::{
    Broker, Dispatcher, Message, Overflow, RecvError, SubscribeError, Subscriber, TryRecvError,
    UnsubscribeError,
};

fn bounded(broker: &Broker, capacity: usize, policy: Overflow) -> Subscriber {
    let sub = broker
        .subscriber_builder()
        .capacity(capacity)
        .overflow(policy)
        .build();
    sub.subscribe(["c"]).unwrap();
    assert_eq!(sub.recv().unwrap().kind(), "subscribe");
    sub
}

/// The stream as short strings: payloads as text, `lag:N`, or the kind.
fn stream(sub: &Subscriber) -> Vec<String> {
    sub.try_iter()
        .map(|m| match m {
            Message::Lagged { missed } => format!("lag:{missed}"),
            m if m.is_delivery() => m.payload_str().unwrap().to_string(),
            m => format!("{}:{}", m.kind(), m.channel().unwrap()),
        })
        .collect()
}

fn publish_range(broker: &Broker, range: std::ops::Range<usize>) -> usize {
    range.map(|i| broker.publish("c", i.to_string())).sum()
}

#[test]
fn drop_newest_keeps_the_oldest_and_reports_the_exact_loss_in_place() {
    let broker = Broker::new();
    let sub = bounded(&broker, 3, Overflow::DropNewest);
    // Redis's count includes deliveries the policy dropped.
    assert_eq!(publish_range(&broker, 0..10), 10);
    assert_eq!(sub.stats().dropped, 7);
    // Three deliveries and the lag report standing for the seven others.
    assert_eq!(sub.len(), 4);
    // The loss is reported where it happened: before what came after it.
    assert_eq!(sub.recv().unwrap().payload_str(), Some("0"));
    broker.publish("c", "10");
    assert_eq!(stream(&sub), ["1", "2", "lag:7", "10"]);
    let stats = broker.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (11, 4, 7)
    );
}

#[test]
fn a_lag_with_nothing_after_it_is_reported_when_the_queue_runs_dry() {
    let broker = Broker::new();
    let sub = bounded(&broker, 2, Overflow::DropNewest);
    publish_range(&broker, 0..5);
    assert_eq!(stream(&sub), ["0", "1", "lag:3"]);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn drop_oldest_keeps_the_newest_and_never_drops_confirmations() {
    let broker = Broker::new();
    let sub = bounded(&broker, 3, Overflow::DropOldest);
    publish_range(&broker, 0..2);
    sub.subscribe(["d"]).unwrap(); // a confirmation inside the full queue
    assert_eq!(publish_range(&broker, 2..10), 8);
    // The queue holds 3; the confirmation taken off its head to make room
    // waits in front of it, between the reports of what was lost.
    assert_eq!(sub.stats().dropped, 7);
    assert_eq!(
        stream(&sub),
        ["lag:2", "subscribe:d", "lag:5", "7", "8", "9"],
        "losses are reported where they were, around the confirmation"
    );
}

#[test]
fn drop_oldest_under_a_concurrent_reader_loses_nothing_unreported() {
    let broker = Broker::new();
    let sub = Arc::new(bounded(&broker, 8, Overflow::DropOldest));
    let n = 50_000;
    let reader = {
        let sub = Arc::clone(&sub);
        thread::spawn(move || {
            let (mut seen, mut missed, mut last) = (0u64, 0u64, None);
            while seen + missed < n {
                match sub.recv().unwrap() {
                    Message::Lagged { missed: m } => missed += m,
                    m => {
                        let value: u64 = m.payload_str().unwrap().parse().unwrap();
                        assert!(last < Some(value), "out of order: {value} after {last:?}");
                        last = Some(value);
                        seen += 1;
                    }
                }
            }
            (seen, missed)
        })
    };
    for i in 0..n {
        broker.publish("c", i.to_string());
    }
    let (seen, missed) = reader.join().unwrap();
    assert_eq!(
        seen + missed,
        n,
        "every message was received or reported lost"
    );
    assert_eq!(missed, sub.stats().dropped);
}

#[test]
fn block_makes_the_publisher_wait_and_loses_nothing() {
    let broker = Broker::new();
    let sub = bounded(&broker, 2, Overflow::Block);
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || publish_range(&broker, 0..1_000))
    };
    let mut got = Vec::new();
    while got.len() < 1_000 {
        assert!(sub.len() <= 3, "the bound holds (one in flight at most)");
        let msg = sub.recv().unwrap();
        got.push(msg.payload_str().unwrap().parse::<usize>().unwrap());
    }
    assert_eq!(publisher.join().unwrap(), 1_000);
    assert_eq!(got, (0..1_000).collect::<Vec<_>>());
    assert_eq!(sub.stats().dropped, 0);
}

#[test]
fn block_for_gives_up_and_reports_the_loss() {
    let broker = Broker::new();
    let sub = bounded(&broker, 1, Overflow::BlockFor(Duration::from_millis(5)));
    assert_eq!(publish_range(&broker, 0..3), 3);
    assert_eq!(stream(&sub), ["0", "lag:2"]);
}

#[test]
fn dropping_a_subscriber_releases_a_publisher_blocked_on_it() {
    let broker = Broker::new();
    let sub = bounded(&broker, 1, Overflow::Block);
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || publish_range(&broker, 0..3))
    };
    // Wait until the publisher is stuck on the full queue.
    while sub.is_empty() {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(20));
    drop(sub);
    let counted = publisher.join().unwrap();
    assert!(counted >= 1, "the first publish was queued");
    assert!(broker.channels().is_empty());
}

#[test]
fn disconnect_evicts_like_redis_and_says_so_after_the_drain() {
    let broker = Broker::new();
    let sub = bounded(&broker, 2, Overflow::Disconnect);
    sub.psubscribe(["c*"]).unwrap();
    assert_eq!(sub.recv().unwrap().kind(), "psubscribe");
    let other = broker.subscriber();
    other.subscribe(["c"]).unwrap();
    // Two deliveries per publish (channel + pattern): the second publish
    // overflows. Redis counts the delivery that overflowed.
    assert_eq!(broker.publish("c", "0"), 3);
    assert_eq!(broker.publish("c", "1"), 3);
    assert_eq!(broker.numsub(["c"]), [("c".into(), 1)]);
    assert_eq!(broker.numpat(), 0);
    assert_eq!(broker.publish("c", "2"), 1, "only `other` is left");
    let items: Vec<_> = sub.iter().collect();
    let kinds: Vec<_> = items.iter().map(Message::kind).collect();
    // What was queued, then what the eviction cost: the overflowing group.
    assert_eq!(kinds, ["message", "pmessage", "lagged"]);
    assert_eq!(items[2], Message::Lagged { missed: 2 });
    assert_eq!(sub.stats().dropped, 2);
    assert_eq!(sub.recv(), Err(RecvError::Overflowed));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Overflowed));
    assert_eq!(sub.subscribe(["c"]), Err(SubscribeError::Overflowed));
    assert_eq!(sub.unsubscribe_all(), Err(UnsubscribeError::Overflowed));
    let stats = broker.stats();
    assert_eq!((stats.disconnected, stats.dropped), (1, 2));
    assert_eq!(other.try_iter().filter(Message::is_delivery).count(), 3);
}

#[test]
fn capacity_zero_is_capacity_one_for_every_policy() {
    for policy in [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::BlockFor(Duration::from_millis(1)),
        Overflow::Disconnect,
    ] {
        let broker = Broker::new();
        let sub = broker
            .subscriber_builder()
            .capacity(0)
            .overflow(policy)
            .build();
        sub.subscribe(["c"]).unwrap();
        assert_eq!(sub.recv().unwrap().kind(), "subscribe");
        let counted = publish_range(&broker, 0..4);
        // Evicted at the second publish, `Disconnect` is not counted after it.
        let expected_count = if policy == Overflow::Disconnect { 2 } else { 4 };
        assert_eq!(counted, expected_count, "{policy:?}");
        let got = stream(&sub);
        let expected: &[&str] = match policy {
            Overflow::DropOldest => &["lag:3", "3"],
            Overflow::Disconnect => &["0", "lag:1"],
            _ => &["0", "lag:3"],
        };
        assert_eq!(got, expected, "{policy:?}");
    }
    // And `Block` never hangs on it: one delivery always fits.
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(0)
        .overflow(Overflow::Block)
        .build();
    sub.subscribe(["c"]).unwrap();
    let publisher = {
        let broker = broker.clone();
        std::thread::spawn(move || publish_range(&broker, 0..50))
    };
    let mut got = Vec::new();
    while got.len() < 50 {
        let msg = sub
            .recv_timeout(Duration::from_secs(10))
            .expect("a Block publisher with capacity(0) makes progress");
        if msg.is_delivery() {
            got.push(msg.payload_str().unwrap().to_owned());
        }
    }
    assert_eq!(publisher.join().unwrap(), 50);
    assert_eq!(got, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn unbounded_subscribers_count_what_they_received() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    publish_range(&broker, 0..5);
    sub.recv().unwrap(); // the confirmation: not counted as received
    sub.recv().unwrap();
    let stats = sub.stats();
    assert_eq!((stats.queued, stats.received, stats.dropped), (4, 1, 0));
}

#[test]
fn a_panicking_handler_poisons_nothing_and_leaks_no_subscription() {
    let broker = Broker::new();
    let bystander = broker.subscriber();
    bystander.subscribe(["jobs"]).unwrap();
    let worker = {
        let broker = broker.clone();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(0);
        let handle = thread::spawn(move || {
            let sub = broker.subscriber();
            let mut dispatcher = Dispatcher::new();
            dispatcher.on_channel("jobs", |m: &Message| {
                assert_ne!(m.payload_str(), Some("poison"), "handler failed on purpose");
            });
            dispatcher.subscribe(&sub).unwrap();
            ready_tx.send(()).unwrap();
            dispatcher.run(&sub)
        });
        ready_rx.recv().unwrap();
        handle
    };
    broker.publish("jobs", "fine");
    broker.publish("jobs", "poison");
    assert!(
        worker.join().is_err(),
        "the handler's panic ends its worker"
    );
    // The worker's subscriber was dropped while unwinding.
    assert_eq!(broker.numsub(["jobs"]), [("jobs".into(), 1)]);
    assert_eq!(broker.publish("jobs", "after"), 1);
    let sub = broker.subscriber();
    sub.subscribe(["jobs"]).unwrap();
    assert_eq!(broker.publish("jobs", "still works"), 2);
    assert_eq!(bystander.try_iter().filter(Message::is_delivery).count(), 4);
}

#[test]
fn a_payload_bytes_bound_drops_oldest_by_size() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .max_payload_bytes(10)
        .overflow(Overflow::DropOldest)
        .build();
    sub.subscribe(["c"]).unwrap();
    for word in ["aaaa", "bbbb", "cccc", "dddd", "eeeeeeee"] {
        assert_eq!(broker.publish("c", word), 1);
    }
    // 10 bytes at most: "eeeeeeee" (8) only fits once four 4-byte ones left.
    assert_eq!(stream(&sub), ["subscribe:c", "lag:4", "eeeeeeee"]);
    assert_eq!(sub.stats().dropped, 4);
}

#[test]
fn a_payload_larger_than_the_bytes_bound_still_fits_an_empty_queue() {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().max_payload_bytes(4).build();
    sub.subscribe(["c"]).unwrap();
    broker.publish("c", "much too long");
    broker.publish("c", "x");
    assert_eq!(stream(&sub), ["subscribe:c", "much too long", "lag:1"]);
    // Once drained, the next one fits again.
    broker.publish("c", "y");
    assert_eq!(stream(&sub), ["y"]);
}

#[test]
fn block_with_a_bytes_bound_loses_nothing() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(1_000)
        .max_payload_bytes(8)
        .overflow(Overflow::Block)
        .build();
    sub.subscribe(["c"]).unwrap();
    sub.recv().unwrap();
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            for i in 0..500 {
                broker.publish("c", format!("{i:04}"));
            }
        })
    };
    for i in 0..500 {
        assert_eq!(
            sub.recv().unwrap().payload_str(),
            Some(format!("{i:04}").as_str())
        );
    }
    publisher.join().unwrap();
    assert_eq!(sub.stats().dropped, 0);
}
