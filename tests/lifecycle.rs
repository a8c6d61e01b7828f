//! Tests for the life of handles: dropping subscribers and brokers, cleanup
//! of empty names, disconnection, and arbitrary input.

use std::thread;
use std::time::Duration;

use channelcast::{
    Broker, Message, RecvError, RecvTimeoutError, SubscribeError, TryRecvError, UnsubscribeError,
};

#[test]
fn drop_removes_every_subscription_silently() {
    let broker = Broker::new();
    let watcher = broker.subscriber();
    watcher.subscribe(["shared"]).unwrap();
    watcher.psubscribe(["p*"]).unwrap();
    {
        let sub = broker.subscriber();
        sub.subscribe(["shared", "mine"]).unwrap();
        sub.psubscribe(["p*", "q*"]).unwrap();
        sub.ssubscribe(["s"]).unwrap();
        assert_eq!(
            broker.numsub(["shared", "mine"]),
            [("shared".into(), 2), ("mine".into(), 1)]
        );
        assert_eq!(broker.numpat(), 2);
    }
    assert_eq!(broker.channels(), ["shared"]);
    assert_eq!(
        broker.numsub(["shared", "mine"]),
        [("shared".into(), 1), ("mine".into(), 0)]
    );
    assert_eq!(broker.numpat(), 1);
    assert!(broker.shard_channels().is_empty());
    assert_eq!(broker.publish("shared", "x"), 1);
    assert_eq!(broker.publish("q1", "x"), 0);
    // The watcher saw only its own confirmations and the one delivery.
    let kinds: Vec<_> = watcher.try_iter().map(|m| m.kind()).collect();
    assert_eq!(kinds, ["subscribe", "psubscribe", "message"]);
}

#[test]
fn names_disappear_when_their_last_subscriber_leaves() {
    let broker = Broker::new();
    let (a, b) = (broker.subscriber(), broker.subscriber());
    a.subscribe(["c"]).unwrap();
    b.subscribe(["c"]).unwrap();
    a.psubscribe(["p"]).unwrap();
    b.psubscribe(["p"]).unwrap();
    a.unsubscribe(["c"]).unwrap();
    a.punsubscribe(["p"]).unwrap();
    assert_eq!(broker.channels(), ["c"]);
    assert_eq!(broker.numpat(), 1);
    b.unsubscribe_all().unwrap();
    b.punsubscribe_all().unwrap();
    assert!(broker.channels().is_empty());
    assert_eq!(broker.numpat(), 0);
    assert_eq!(broker.publish("c", "x"), 0);
    assert_eq!(broker.publish("p", "x"), 0);
}

#[test]
fn dropping_the_last_broker_disconnects_after_the_queue_drains() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    let clone = broker.clone();
    broker.publish("c", "1");
    drop(broker);
    clone.publish("c", "2");
    drop(clone);
    assert_eq!(sub.recv().unwrap().kind(), "subscribe");
    assert_eq!(sub.recv().unwrap().payload().unwrap(), "1");
    assert_eq!(sub.try_recv().unwrap().payload().unwrap(), "2");
    assert_eq!(sub.recv(), Err(RecvError::Disconnected));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(sub.iter().count(), 0);
    assert_eq!(sub.subscribe(["c"]), Err(SubscribeError::BrokerClosed));
    assert_eq!(sub.unsubscribe_all(), Err(UnsubscribeError::BrokerClosed));
}

#[test]
fn a_blocked_recv_wakes_up_when_the_broker_goes() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let waiter = thread::spawn(move || sub.recv());
    thread::sleep(Duration::from_millis(20));
    drop(broker);
    assert_eq!(waiter.join().unwrap(), Err(RecvError::Disconnected));
}

#[test]
fn subscribers_do_not_keep_the_broker_alive() {
    let broker = Broker::new();
    let subs: Vec<_> = (0..10).map(|_| broker.subscriber()).collect();
    for sub in &subs {
        sub.subscribe(["c"]).unwrap();
    }
    drop(broker);
    for sub in &subs {
        assert_eq!(sub.iter().count(), 1, "only the confirmation, then the end");
    }
}

#[test]
fn try_recv_on_an_empty_queue_is_empty_not_disconnected() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(sub.is_empty());
}

#[test]
fn subscribing_to_nothing_is_an_error_that_queues_nothing() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let none: [&str; 0] = [];
    assert_eq!(sub.subscribe(none), Err(SubscribeError::NoNames));
    assert_eq!(sub.psubscribe(none), Err(SubscribeError::NoNames));
    assert_eq!(sub.ssubscribe(none), Err(SubscribeError::NoNames));
    assert!(sub.is_empty());
    let text = SubscribeError::NoNames.to_string();
    assert!(text.contains("at least one name"), "{text}");
}

#[test]
fn subscribers_dropped_during_publishing_leave_nothing_behind() {
    let broker = Broker::new();
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            let mut delivered = 0;
            for i in 0..20_000 {
                delivered += broker.publish(if i % 2 == 0 { "a" } else { "b" }, "x");
            }
            delivered
        })
    };
    for _ in 0..2_000 {
        let sub = broker.subscriber();
        sub.subscribe(["a", "b"]).unwrap();
        sub.psubscribe(["*"]).unwrap();
        drop(sub);
    }
    publisher.join().unwrap();
    assert!(broker.channels().is_empty());
    assert_eq!(broker.numpat(), 0);
}

#[test]
fn arbitrary_bytes_work_as_names_patterns_and_payloads() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let len = (next() % 12) as usize;
        let name: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match next() % 4 {
            0 => {
                sub.subscribe([name.clone()]).unwrap();
                assert!(broker.publish(&name, name.clone()) >= 1);
            }
            1 => {
                sub.psubscribe([name.clone()]).unwrap();
            }
            2 => {
                sub.unsubscribe([name.clone()]).unwrap();
            }
            _ => {
                broker.publish(&name, name.clone());
            }
        }
    }
    // Every delivery carries the bytes it was published with.
    for msg in sub.try_iter() {
        if let Message::Message { channel, payload } = msg {
            assert_eq!(channel.as_bytes(), &payload[..]);
        }
    }
    let _ = broker.channels_matching(&b"\xff[\\"[..]);
}

#[test]
fn dispatcher_sends_unclaimed_deliveries_to_the_fallback() {
    use std::sync::Mutex;
    let broker = Broker::new();
    let sub = broker.subscriber();
    let seen = Mutex::new(Vec::new());
    let mut dispatcher = channelcast::Dispatcher::new();
    dispatcher
        .on_channel("known", |m| {
            seen.lock()
                .unwrap()
                .push(format!("known {:?}", m.payload_str()));
        })
        .on_unhandled(|m| {
            seen.lock()
                .unwrap()
                .push(format!("other {}", m.channel().unwrap()));
        });
    dispatcher.subscribe(&sub).unwrap();
    sub.subscribe(["stray"]).unwrap();
    broker.publish("known", "1");
    broker.publish("stray", "2");
    drop(broker);
    assert_eq!(dispatcher.run(&sub).handled, 1);
    drop(dispatcher);
    assert_eq!(
        seen.into_inner().unwrap(),
        ["known Some(\"1\")", "other stray"]
    );
}

#[test]
fn any_number_of_lock_stripes_gives_the_same_answers() {
    // 0 counts as 1, 3 rounds up to 4, and anything past the limit is the
    // limit: every count spreads the same channels differently over its
    // locks, and nothing a subscriber or `PUBSUB` sees may depend on it.
    for stripes in [0, 1, 3, 128, 70_000] {
        let broker: Broker = Broker::with_lock_stripes(stripes);
        let sub = broker.subscriber_builder().confirmations(false).build();
        let watcher = broker.subscriber_builder().confirmations(false).build();
        let names: Vec<String> = (0..50).map(|i| format!("room:{i:02}")).collect();
        sub.subscribe(&names).unwrap();
        watcher.psubscribe(["room:1*"]).unwrap();
        for name in &names {
            let expected = if name.starts_with("room:1") { 2 } else { 1 };
            assert_eq!(
                broker.publish(name.as_str(), name.clone()),
                expected,
                "{stripes}"
            );
        }
        let got: Vec<Message> = sub.try_iter().collect();
        assert_eq!(got.len(), 50, "{stripes}");
        for (message, name) in got.iter().zip(&names) {
            assert_eq!(
                message.channel().unwrap(),
                name.as_str(),
                "in publish order"
            );
        }
        assert_eq!(watcher.try_iter().count(), 10, "{stripes}");
        let listed: Vec<String> = broker
            .channels()
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, names, "sorted, whatever the stripes");
        assert_eq!(
            broker.numsub(["room:07", "none"]),
            vec![("room:07".into(), 1), ("none".into(), 0)]
        );
        drop(sub);
        assert!(broker.channels().is_empty(), "{stripes}");
        assert_eq!(broker.stats().published, 50, "{stripes}");
    }
}

/// A channel with one subscriber takes the publish's shortest path (see
/// `Registry::publish_to_one`); every kind of lone subscriber must still be
/// served and counted exactly as through the general path.
#[test]
fn a_lone_subscriber_of_any_kind_is_served_and_counted() {
    let broker = Broker::new();
    let plain = broker.subscriber();
    plain.subscribe(["plain"]).unwrap();
    let bounded = broker
        .subscriber_builder()
        .capacity(2)
        .overflow(channelcast::Overflow::DropNewest)
        .build();
    bounded.subscribe(["bounded"]).unwrap();
    let sharded = broker.subscriber();
    sharded.ssubscribe(["sharded"]).unwrap();
    // Taken by a pattern only: the general path.
    let by_pattern = broker.subscriber();
    by_pattern.psubscribe(["pat*"]).unwrap();
    for sub in [&plain, &bounded, &sharded, &by_pattern] {
        assert!(!sub.try_recv().unwrap().is_delivery(), "a confirmation");
    }
    for i in 0..5 {
        assert_eq!(broker.publish("plain", format!("p{i}")), 1);
        // Counted (Redis's count) whether queued or dropped.
        assert_eq!(broker.publish("bounded", format!("b{i}")), 1);
        assert_eq!(broker.spublish("sharded", format!("s{i}")), 1);
        assert_eq!(broker.publish("pattern", format!("q{i}")), 1);
    }
    let payloads = |sub: &channelcast::Subscriber| -> Vec<String> {
        sub.try_iter()
            .map(|m| match m {
                Message::Lagged { missed } => format!("lagged {missed}"),
                m => String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            })
            .collect()
    };
    assert_eq!(payloads(&plain), ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(payloads(&bounded), ["b0", "b1", "lagged 3"]);
    assert_eq!(payloads(&sharded), ["s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(payloads(&by_pattern), ["q0", "q1", "q2", "q3", "q4"]);
    let stats = broker.stats();
    assert_eq!(stats.published, 20);
    assert_eq!(stats.delivered, 17);
    assert_eq!(stats.dropped, 3);
    assert_eq!(plain.stats().received, 5);
    assert_eq!(bounded.stats().dropped, 3);
    // One delivery more once the subscriber is gone: none, and counted so.
    drop(plain);
    assert_eq!(broker.publish("plain", "late"), 0);
    assert_eq!(broker.stats().published, 21);
    assert_eq!(broker.stats().delivered, 17);
}
