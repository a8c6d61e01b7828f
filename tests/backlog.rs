//! Long backlogs of unbounded subscribers: thousands of items queued before
//! anyone receives (the queue grows many times over, a log reader's unread
//! entries move to its queue). Order, counts and confirmations must come
//! out as they went in, through every way of receiving, and a dropped
//! subscriber's backlog must go with it.

#[path = "common/wait.rs"]
mod wait;

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use channelcast::{Broker, Message, Subscriber};

/// Long enough for many doublings of a queue's buffer.
const LONG: usize = 2_500;

fn payload(i: usize) -> Bytes {
    Bytes::from(i.to_string())
}

fn number(message: &Message) -> usize {
    message
        .payload_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("a numbered delivery, got {message:?}"))
}

/// Receives everything waiting, alternating single receives and batches.
fn drain(sub: &Subscriber) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(message) => out.push(message),
            Err(_) => return out,
        }
        if sub.try_recv_many(&mut out, 300).unwrap_or(0) == 0 && sub.is_empty() {
            return out;
        }
    }
}

#[test]
fn a_long_backlog_keeps_its_order_counts_and_confirmations() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["long"]).unwrap();
    for i in 0..LONG {
        broker.publish("long", payload(i));
        if i == LONG / 3 {
            // Confirmations land between deliveries.
            sub.subscribe(["other"]).unwrap();
        }
        if i == 2 * LONG / 3 {
            sub.unsubscribe(["other"]).unwrap();
        }
    }
    // One subscribe confirmation, LONG deliveries, two more confirmations.
    let expected = LONG + 3;
    assert_eq!(sub.len(), expected);
    assert_eq!(sub.stats().queued, expected);

    let received = drain(&sub);
    assert_eq!(received.len(), expected, "nothing lost, nothing twice");
    assert!(matches!(&received[0], Message::Subscribe { count: 1, .. }));
    let mut next = 0;
    for (at, message) in received.iter().enumerate().skip(1) {
        match message {
            Message::Message { .. } => {
                assert_eq!(number(message), next, "in order");
                next += 1;
            }
            Message::Subscribe { count: 2, .. } => {
                assert_eq!(next, LONG / 3 + 1, "subscribed after publish {}", LONG / 3);
            }
            Message::Unsubscribe { count: 1, .. } => {
                assert_eq!(next, 2 * LONG / 3 + 1, "unsubscribed where it was");
            }
            other => panic!("unexpected item {other:?} at {at}"),
        }
    }
    assert_eq!(next, LONG);
    let stats = sub.stats();
    assert_eq!((stats.queued, stats.received), (0, LONG as u64));
    assert!(sub.is_empty());

    // The same again, received by blocking receives.
    for i in 0..LONG {
        broker.publish("long", payload(i));
    }
    for i in 0..LONG {
        let message = sub.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(number(&message), i);
    }
    assert!(sub.is_empty());
    assert_eq!(sub.stats().received, 2 * LONG as u64);
}

#[test]
fn a_log_reader_leaving_with_a_long_backlog_keeps_it_in_order() {
    let broker = Broker::new();
    let first = broker.subscriber_builder().confirmations(false).build();
    let second = broker.subscriber_builder().confirmations(false).build();
    // Two sole subscribers of one channel read its log.
    first.subscribe(["shared"]).unwrap();
    second.subscribe(["shared"]).unwrap();
    for i in 0..LONG {
        broker.publish("shared", payload(i));
    }
    // Another subscription moves `first` off the log: its unread backlog
    // goes to its queue, then new publishes follow.
    first.subscribe(["elsewhere"]).unwrap();
    for i in LONG..LONG + 10 {
        broker.publish("shared", payload(i));
    }
    broker.publish("elsewhere", payload(LONG + 10));
    for sub in [&first, &second] {
        let numbers: Vec<usize> = drain(sub).iter().map(number).collect();
        let expected = if std::ptr::eq(sub, &first) {
            LONG + 11
        } else {
            LONG + 10
        };
        assert_eq!(numbers, (0..expected).collect::<Vec<_>>());
    }
}

#[test]
fn a_dropped_subscriber_with_a_long_backlog_releases_every_payload() {
    let broker = Broker::new();
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(["kept"]).unwrap();
    let counted = Bytes::from(vec![7u8; 16]);
    for _ in 0..LONG {
        broker.publish("kept", counted.clone());
    }
    assert_eq!(sub.len(), LONG);
    drop(sub);
    // Every clone went with the subscriber: the original is unique again.
    assert!(counted.is_unique(), "the backlog's payloads were released");
}

#[test]
fn publishers_racing_receivers_through_long_backlogs_lose_and_reorder_nothing() {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 20_000;
    wait::within("long streams", || {
        let broker = Broker::new();
        let sub = broker.subscriber_builder().confirmations(false).build();
        sub.subscribe(["stream"]).unwrap();
        thread::scope(|scope| {
            for publisher in 0..PUBLISHERS {
                let broker = &broker;
                scope.spawn(move || {
                    for i in 0..EACH {
                        broker.publish("stream", payload(publisher * EACH + i));
                        if i % 4_000 == 0 {
                            // Let a backlog grow, then race.
                            thread::yield_now();
                        }
                    }
                });
            }
            let mut last = [None::<usize>; PUBLISHERS];
            let mut batch = Vec::new();
            let mut seen = 0;
            while seen < PUBLISHERS * EACH {
                batch.clear();
                batch.push(sub.recv_timeout(Duration::from_secs(10)).unwrap());
                if seen % 3 != 0 {
                    sub.try_recv_many(&mut batch, 500).unwrap();
                }
                for message in &batch {
                    let n = number(message);
                    let (publisher, i) = (n / EACH, n % EACH);
                    assert!(
                        last[publisher].is_none_or(|before| before + 1 == i),
                        "publisher {publisher}: {i} after {:?}",
                        last[publisher]
                    );
                    last[publisher] = Some(i);
                    seen += 1;
                }
            }
            assert!(sub.is_empty());
            assert_eq!(sub.stats().received, (PUBLISHERS * EACH) as u64);
        });
    });
}
