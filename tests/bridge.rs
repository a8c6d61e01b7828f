//! Tests for the Redis bridge (feature `redis`): two brokers joined through
//! one real `redis-server`, loop prevention, foreign publishers, and a
//! server that goes away and comes back.

mod common;

use std::time::{Duration, Instant};

use channelcast::{Bridge, Broker, Message, Subscriber};
use common::RedisServer;

const PATIENCE: Duration = Duration::from_secs(10);

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

fn bridged(port: u16) -> (Broker, Bridge) {
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, &url(port))
        .channels(["chat"])
        .patterns(["news.*", "n*"])
        .start()
        .unwrap();
    assert!(bridge.wait_connected(PATIENCE), "the bridge connects");
    (broker, bridge)
}

/// Receives deliveries until `n` have arrived (confirmations skipped).
fn deliveries(sub: &Subscriber, n: usize) -> Vec<Message> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        let msg = sub
            .recv_deadline(deadline)
            .unwrap_or_else(|e| panic!("{e}: got {} of {n}: {got:?}", got.len()));
        if msg.is_delivery() {
            got.push(msg);
        }
    }
    got
}

/// Asserts nothing more arrives for a short while.
fn nothing_more(sub: &Subscriber) {
    let extra: Vec<_> = std::iter::from_fn(|| sub.recv_timeout(Duration::from_millis(200)).ok())
        .filter(Message::is_delivery)
        .collect();
    assert!(extra.is_empty(), "unexpected: {extra:?}");
}

#[test]
fn two_brokers_exchange_messages_in_order_without_echoes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, bridge_a) = bridged(server.port());
    let (b, bridge_b) = bridged(server.port());
    let on_a = a.subscriber();
    on_a.subscribe(["chat"]).unwrap();
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    on_b.psubscribe(["news.*"]).unwrap();

    for i in 0..200 {
        // Local count only: the Redis side is asynchronous.
        assert_eq!(a.publish("chat", format!("a{i}")), 1);
    }
    let got = deliveries(&on_b, 200);
    let payloads: Vec<_> = got
        .iter()
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..200).map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|m| m.kind() == "message"));
    // A's own subscriber saw each message once: locally, not again via Redis.
    assert_eq!(deliveries(&on_a, 200).len(), 200);
    nothing_more(&on_a);

    // A pattern-bridged channel: B's pattern subscriber gets a pmessage,
    // once, although the bridge's Redis side matches it with two patterns.
    a.publish("news.art", "Monet");
    let got = deliveries(&on_b, 1);
    assert_eq!(got[0].pattern().unwrap(), "news.*");
    assert_eq!(got[0].channel().unwrap(), "news.art");
    nothing_more(&on_b);

    // Names that are not bridged stay local.
    let local = b.subscriber();
    local.subscribe(["private"]).unwrap();
    a.publish("private", "secret");
    nothing_more(&local);

    assert_eq!(bridge_a.stats().sent, 201);
    assert_eq!(bridge_b.stats().received, 201);
    assert_eq!(
        bridge_a.stats().received,
        0,
        "its own messages are not counted back"
    );
}

#[test]
fn messages_from_other_redis_clients_arrive_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (broker, bridge) = bridged(server.port());
    let sub = broker.subscriber();
    sub.subscribe(["chat"]).unwrap();
    sub.psubscribe(["n*"]).unwrap();
    let mut redis_cli = server.connect();
    redis_cli
        .call(&[b"PUBLISH", b"chat", b"from redis-cli"])
        .unwrap();
    redis_cli
        .call(&[b"PUBLISH", b"news.x", b"headline"])
        .unwrap();
    let got = deliveries(&sub, 2);
    assert_eq!(
        got[0],
        Message::Message {
            channel: "chat".into(),
            payload: "from redis-cli".into()
        }
    );
    assert_eq!(got[1].kind(), "pmessage");
    assert_eq!(got[1].payload_str(), Some("headline"));
    nothing_more(&sub);
    assert_eq!(bridge.stats().received, 2);
}

#[test]
fn the_bridge_reconnects_and_reports_what_it_could_not_send() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let port = server.port();
    let (a, bridge_a) = bridged(port);
    let (b, bridge_b) = bridged(port);
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    a.publish("chat", "before");
    assert_eq!(deliveries(&on_b, 1)[0].payload_str(), Some("before"));

    drop(server); // the server goes away
    let deadline = Instant::now() + PATIENCE;
    while bridge_a.is_connected() && Instant::now() < deadline {
        a.publish("chat", "probe");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !bridge_a.is_connected(),
        "the bridge notices the server is gone"
    );
    // Local delivery keeps working while Redis is down.
    let local = a.subscriber();
    local.subscribe(["chat"]).unwrap();
    for i in 0..10 {
        assert_eq!(a.publish("chat", format!("down{i}")), 1);
    }
    assert_eq!(deliveries(&local, 10).len(), 10);

    let _server = RedisServer::restart_on(port);
    assert!(bridge_a.wait_connected(PATIENCE), "A reconnects");
    assert!(
        bridge_b.wait_connected(PATIENCE),
        "B reconnects and subscribes again"
    );
    let lost = bridge_a.stats().lost;
    assert!(
        lost >= 10,
        "the 10 publishes made while down are reported: {lost}"
    );
    assert!(bridge_a.stats().reconnects >= 1);

    // Drain whatever probes got through before the server died, then check
    // that traffic flows again.
    while on_b.try_recv().is_ok() {}
    a.publish("chat", "after");
    let got = deliveries(&on_b, 1);
    assert_eq!(got[0].payload_str(), Some("after"));
    eprintln!(
        "reconnect test: {} lost while down, {} reconnections",
        lost,
        bridge_a.stats().reconnects
    );
}

#[test]
fn an_unreachable_server_is_not_an_error_and_a_bad_url_is() {
    let broker = Broker::new();
    assert!(matches!(
        Bridge::builder(&broker, "not a url").start(),
        Err(channelcast::BridgeError::InvalidUrl { .. })
    ));
    // Port 1 on loopback: nothing listens there.
    let bridge = Bridge::builder(&broker, "redis://127.0.0.1:1/")
        .channels(["c"])
        .start()
        .unwrap();
    assert!(!bridge.wait_connected(Duration::from_millis(200)));
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    assert_eq!(broker.publish("c", "still local"), 1);
    assert!(matches!(
        Bridge::builder(&broker, "redis://127.0.0.1:1/").start(),
        Err(channelcast::BridgeError::AlreadyBridged)
    ));
    drop(bridge);
    // Detached: the broker can be bridged again.
    assert!(Bridge::builder(&broker, "redis://127.0.0.1:1/")
        .start()
        .is_ok());
    assert_eq!(broker.publish("c", "local again"), 1);
}
