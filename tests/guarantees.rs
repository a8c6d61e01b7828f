//! Tests for the five documented delivery guarantees, under concurrency.
//!
//! Each stress test would fail if its guarantee were broken: they compare
//! whole streams, not samples. Sizes shrink under Miri.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use channelcast::{Broker, Message, Name, Subscriber};

const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        n / 100 + 1
    } else {
        n
    }
}

/// Payloads of the form `writer:seq`.
fn stamp(writer: usize, seq: usize) -> String {
    format!("{writer}:{seq}")
}

fn unstamp(payload: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(payload).unwrap();
    let (writer, seq) = text.split_once(':').unwrap();
    (writer.parse().unwrap(), seq.parse().unwrap())
}

/// The payloads of every delivery on `channel` in `sub`'s queue right now.
fn deliveries_on(sub: &Subscriber, channel: &str) -> Vec<bytes::Bytes> {
    sub.try_iter()
        .filter(|m| m.is_delivery() && m.channel().is_some_and(|c| *c == channel))
        .filter_map(Message::into_payload)
        .collect()
}

// ---- guarantee 1: queued on return ---------------------------------------

#[test]
fn deliveries_are_queued_when_publish_returns() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    sub.psubscribe(["c*", "*"]).unwrap();
    assert_eq!(sub.try_iter().count(), 3);
    for i in 0..scaled(1_000) {
        assert_eq!(broker.publish("c", i.to_string()), 3);
        assert_eq!(sub.len(), 3, "all three deliveries are queued on return");
        let kinds: Vec<_> = sub.try_iter().map(|m| m.kind()).collect();
        assert_eq!(kinds, ["message", "pmessage", "pmessage"]);
    }
}

#[test]
fn deliveries_are_visible_to_another_thread_once_publish_returned() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    sub.recv().unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            for i in 0..scaled(2_000) {
                broker.publish("c", i.to_string());
                done_tx.send(i).unwrap();
            }
        })
    };
    for i in &done_rx {
        // The publish of `i` returned before `i` was sent to us.
        let msg = sub
            .try_recv()
            .expect("publish returned, so the message is queued");
        assert_eq!(msg.payload().unwrap(), &i.to_string());
    }
    publisher.join().unwrap();
}

// ---- guarantee 2: confirmations bracket messages ----------------------------

/// Checks that, in one subscriber's stream, every delivery through a name
/// falls between that name's subscribe and unsubscribe confirmations.
fn assert_bracketed(stream: &[Message]) -> usize {
    let mut channels: HashMap<Name, bool> = HashMap::new();
    let mut patterns: HashMap<Name, bool> = HashMap::new();
    let mut deliveries = 0;
    for (at, msg) in stream.iter().enumerate() {
        match msg {
            Message::Subscribe { channel, .. } => {
                channels.insert(channel.clone(), true);
            }
            Message::Unsubscribe {
                channel: Some(channel),
                ..
            } => {
                channels.insert(channel.clone(), false);
            }
            Message::PSubscribe { pattern, .. } => {
                patterns.insert(pattern.clone(), true);
            }
            Message::PUnsubscribe {
                pattern: Some(pattern),
                ..
            } => {
                patterns.insert(pattern.clone(), false);
            }
            Message::Message { channel, .. } => {
                deliveries += 1;
                assert!(
                    channels.get(channel).copied().unwrap_or(false),
                    "message on {channel} at {at} outside its subscription"
                );
            }
            Message::PMessage { pattern, .. } => {
                deliveries += 1;
                assert!(
                    patterns.get(pattern).copied().unwrap_or(false),
                    "pmessage through {pattern} at {at} outside its subscription"
                );
            }
            _ => {}
        }
    }
    deliveries
}

#[test]
fn no_delivery_before_subscribe_or_after_unsubscribe_confirmation() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..2)
        .map(|w| {
            let (broker, stop, started) = (broker.clone(), Arc::clone(&stop), Arc::clone(&started));
            thread::spawn(move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    broker.publish(if seq % 2 == 0 { "news" } else { "new" }, stamp(w, seq));
                    if seq == 0 {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    // On a loaded machine the publishers may not run during one round of
    // (un)subscribing: wait for them to start, then go on in rounds until
    // they raced the subscriptions at least once (time-boxed).
    let deadline = Instant::now() + Duration::from_secs(20);
    while started.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
        thread::yield_now();
    }
    let mut stream = Vec::new();
    loop {
        for _ in 0..scaled(2_000) {
            sub.subscribe(["news"]).unwrap();
            sub.psubscribe(["new*"]).unwrap();
            sub.unsubscribe(["news"]).unwrap();
            sub.subscribe(["new"]).unwrap();
            sub.punsubscribe_all().unwrap();
            sub.unsubscribe_all().unwrap();
        }
        stream.extend(sub.try_iter());
        let raced = stream.iter().any(Message::is_delivery);
        if raced || Instant::now() >= deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
    stream.extend(sub.try_iter());
    let deliveries = assert_bracketed(&stream);
    assert!(
        deliveries > 0,
        "the publishers raced the subscriptions at least once"
    );
}

// ---- guarantee 3: FIFO per publisher, message before pmessages -------------

#[test]
fn each_publishers_messages_arrive_in_publish_order() {
    let writers = 4;
    let per_writer = scaled(5_000);
    let broker = Broker::new();
    let exact = broker.subscriber();
    exact.subscribe(["a", "b"]).unwrap();
    let pattern = broker.subscriber();
    pattern.psubscribe(["*"]).unwrap();
    let start = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (broker, start) = (broker.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for seq in 0..per_writer {
                    broker.publish(if seq % 3 == 0 { "a" } else { "b" }, stamp(w, seq));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for sub in [&exact, &pattern] {
        let mut next = vec![0; writers];
        for msg in sub.try_iter().filter(Message::is_delivery) {
            let (w, seq) = unstamp(msg.payload().unwrap());
            assert_eq!(seq, next[w], "writer {w}'s messages out of order");
            next[w] += 1;
        }
        assert_eq!(next, vec![per_writer; writers]);
    }
}

#[test]
fn message_comes_before_pmessages_in_pattern_creation_order() {
    let broker = Broker::new();
    let other = broker.subscriber();
    let sub = broker.subscriber();
    // `z*` is created first by another subscriber: it stays first even
    // though `sub` subscribes to it last.
    other.psubscribe(["z*"]).unwrap();
    sub.psubscribe(["*", "zo*"]).unwrap();
    sub.subscribe(["zoo"]).unwrap();
    sub.psubscribe(["z*"]).unwrap();
    sub.try_iter().for_each(drop);
    let order = |sub: &Subscriber| -> Vec<String> {
        sub.try_iter()
            .map(|m| match m.pattern() {
                Some(p) => p.to_string(),
                None => m.kind().to_string(),
            })
            .collect()
    };
    assert_eq!(broker.publish("zoo", "1"), 5);
    assert_eq!(order(&sub), ["message", "z*", "*", "zo*"]);
    // A pattern that dies and comes back is created anew: it moves last.
    other.punsubscribe(["z*"]).unwrap();
    sub.punsubscribe(["z*", "*"]).unwrap();
    sub.psubscribe(["*", "z*"]).unwrap();
    sub.try_iter().for_each(drop);
    broker.publish("zoo", "2");
    assert_eq!(order(&sub), ["message", "zo*", "*", "z*"]);
}

// ---- guarantee 4: same order for everyone, per channel ----------------------

#[test]
fn every_subscriber_sees_one_order_per_channel_under_concurrent_publishers() {
    let writers = 4;
    let per_writer = scaled(5_000);
    let broker = Broker::new();
    let direct = broker.subscriber();
    direct.subscribe(["log", "audit"]).unwrap();
    let by_pattern = broker.subscriber();
    by_pattern.psubscribe(["l*"]).unwrap();
    let both = broker.subscriber();
    both.psubscribe(["*"]).unwrap();
    both.subscribe(["audit"]).unwrap();
    let only_audit = broker.subscriber();
    only_audit.psubscribe(["a?dit"]).unwrap();
    let start = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (broker, start) = (broker.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for seq in 0..per_writer {
                    let channel = if (seq + w) % 2 == 0 { "log" } else { "audit" };
                    broker.publish(channel, stamp(w, seq));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    let streams: Vec<Vec<Message>> = [&direct, &by_pattern, &both, &only_audit]
        .iter()
        .map(|s| s.try_iter().filter(Message::is_delivery).collect())
        .collect();
    let on = |stream: &[Message], channel: &str, kind: &str| -> Vec<bytes::Bytes> {
        stream
            .iter()
            .filter(|m| m.kind() == kind && *m.channel().unwrap() == channel)
            .map(|m| m.payload().unwrap().clone())
            .collect()
    };
    let log = on(&streams[0], "log", "message");
    let audit = on(&streams[0], "audit", "message");
    assert_eq!(log.len() + audit.len(), writers * per_writer);
    assert_eq!(on(&streams[1], "log", "pmessage"), log);
    assert_eq!(on(&streams[2], "log", "pmessage"), log);
    assert_eq!(on(&streams[2], "audit", "message"), audit);
    assert_eq!(on(&streams[2], "audit", "pmessage"), audit);
    assert_eq!(on(&streams[3], "audit", "pmessage"), audit);
    // The writers really interleaved, or this test proves nothing.
    let switches = log
        .windows(2)
        .filter(|w| unstamp(&w[0]).0 != unstamp(&w[1]).0)
        .count();
    assert!(switches > 0 || cfg!(miri), "publishers never interleaved");
}

#[test]
fn replicas_applying_one_channel_converge() {
    // Two replicas fold non-commutative updates (x = x * 31 + v) from one
    // channel published by several threads: equal results need equal order.
    let broker = Broker::new();
    let replicas: Vec<_> = (0..3).map(|_| broker.subscriber()).collect();
    replicas[0].subscribe(["state"]).unwrap();
    replicas[1].psubscribe(["st*"]).unwrap();
    replicas[2].psubscribe(["*te"]).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|w| {
            let broker = broker.clone();
            thread::spawn(move || {
                for seq in 0..scaled(3_000) {
                    broker.publish("state", stamp(w, seq));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let folded: Vec<u64> = replicas
        .iter()
        .map(|r| {
            deliveries_on(r, "state").iter().fold(0u64, |x, p| {
                let (w, seq) = unstamp(p);
                x.wrapping_mul(31)
                    .wrapping_add((w * 1_000_003 + seq) as u64)
            })
        })
        .collect();
    assert_eq!(folded[0], folded[1]);
    assert_eq!(folded[1], folded[2]);
}

// ---- guarantee 5: a silent subscriber never blocks publishers ---------------

#[test]
fn a_subscriber_that_never_reads_does_not_block_publishers() {
    let broker = Broker::new();
    let silent = broker.subscriber();
    silent.subscribe(["firehose"]).unwrap();
    let n = scaled(200_000);
    let publisher = {
        let broker = broker.clone();
        thread::spawn(move || {
            (0..n)
                .map(|i| broker.publish("firehose", i.to_string()))
                .sum::<usize>()
        })
    };
    assert_eq!(publisher.join().unwrap(), n);
    assert_eq!(
        silent.len(),
        n + 1,
        "every message queued, plus the confirmation"
    );
}

// ---- handles are shareable ------------------------------------------------

#[test]
fn public_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Broker>();
    send_sync::<Subscriber>();
    send_sync::<Message>();
    send_sync::<Name>();
    send_sync::<channelcast::Glob>();
    send::<channelcast::Dispatcher<'static>>();
    send_sync::<channelcast::Stopper>();
    send_sync::<channelcast::DispatcherThread>();
}

#[test]
fn one_thread_receives_while_another_changes_subscriptions() {
    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber());
    let reader = {
        let sub = Arc::clone(&sub);
        thread::spawn(move || {
            let mut counts = Vec::new();
            while let Ok(msg) = sub.recv() {
                if let Some(count) = msg.count() {
                    counts.push(count);
                }
                if counts.len() == 200 {
                    break;
                }
            }
            counts
        })
    };
    for i in 0..100 {
        sub.subscribe([format!("c{i}")]).unwrap();
    }
    for i in 0..100 {
        sub.unsubscribe([format!("c{i}")]).unwrap();
    }
    let counts = reader.join().unwrap();
    let expected: Vec<usize> = (1..=100).chain((0..100).rev()).collect();
    assert_eq!(counts, expected);
}
