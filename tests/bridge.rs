//! Tests for the Redis bridge (feature `redis`) against real `redis-server`s
//! started by the tests: exchange between brokers, loop prevention,
//! foreign publishers, and every way a message can go missing, each of
//! which must be counted, never silent.
//!
//! The tests that need `redis-server` are `#[ignore]`d so that a plain
//! `cargo test` lists them as such; run them with
//! `cargo test --features redis --test bridge -- --include-ignored`. Every
//! wait is time-boxed, so a hang fails.

#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis_support;

#[path = "common/wait.rs"]
mod wait;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use wait::{deliveries, eventually, nothing_more};

use channelcast::{Bridge, BridgeError, BridgeOverflow, Broker, ConnectError, Message, Overflow};
use redis_support::{Reply, Server};

const PATIENCE: Duration = Duration::from_secs(10);

fn bridged(url: &str) -> (Broker, Bridge) {
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, url)
        .channels(["chat"])
        .patterns(["news.*", "n*"])
        .start()
        .unwrap();
    assert!(bridge.wait_connected(PATIENCE), "the bridge connects");
    (broker, bridge)
}

fn payloads(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.payload_str().unwrap().to_owned())
        .collect()
}

#[test]
#[ignore = "needs redis-server"]
fn two_brokers_exchange_messages_in_order_without_echoes() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (a, bridge_a) = bridged(&server.url());
    let (b, bridge_b) = bridged(&server.url());
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
    assert_eq!(
        payloads(&got),
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

    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!((stats.sent, stats.lost, stats.unknown), (201, 0, 0));
    assert_eq!(bridge_b.stats().received, 201);
    assert_eq!(bridge_b.stats().missed, 0);
    assert_eq!(stats.received, 0, "its own messages are not counted back");
}

#[test]
#[ignore = "needs redis-server"]
fn messages_from_other_redis_clients_arrive_once_and_unchanged() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (broker, bridge) = bridged(&server.url());
    let sub = broker.subscriber();
    sub.subscribe(["chat"]).unwrap();
    sub.psubscribe(["n*"]).unwrap();
    let mut cli = server.conn();
    cli.call(&[b"PUBLISH", b"chat", b"from redis-cli"]).unwrap();
    cli.call(&[b"PUBLISH", b"news.x", b"headline"]).unwrap();
    // Foreign payloads that start like an envelope (this version's marker
    // and the old one) are delivered byte for byte.
    let mut lookalike = b"\x00ccast\x02\x00".to_vec();
    lookalike.extend_from_slice(&[0xAB; 60]);
    let mut old = b"\x00ccast\x01\x00".to_vec();
    old.extend_from_slice(&[0xCD; 30]);
    cli.call(&[b"PUBLISH", b"chat", &lookalike]).unwrap();
    cli.call(&[b"PUBLISH", b"chat", &old]).unwrap();
    let got = deliveries(&sub, 4);
    assert_eq!(
        got[0],
        Message::Message {
            channel: "chat".into(),
            payload: "from redis-cli".into()
        }
    );
    assert_eq!(got[1].kind(), "pmessage");
    assert_eq!(got[1].payload_str(), Some("headline"));
    assert_eq!(got[2].payload().unwrap()[..], lookalike[..]);
    assert_eq!(got[3].payload().unwrap()[..], old[..]);
    nothing_more(&sub);
    assert_eq!(bridge.stats().received, 4);
}

#[test]
#[ignore = "needs redis-server"]
fn publishes_made_while_the_server_is_down_are_sent_after_it_returns() {
    let Some(mut server) = Server::start(&[]) else {
        return;
    };
    let (a, bridge_a) = bridged(&server.url());
    let (b, bridge_b) = bridged(&server.url());
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    a.publish("chat", "before");
    assert_eq!(payloads(&deliveries(&on_b, 1)), ["before"]);
    assert_eq!(
        bridge_a.stats().reconnects,
        0,
        "the first connection is no reconnection"
    );

    server.kill();
    eventually("A notices the server is gone", || {
        a.publish("chat", "probe");
        thread::sleep(Duration::from_millis(20));
        !bridge_a.is_connected()
    });
    // Local delivery keeps working while Redis is down.
    let local = a.subscriber();
    local.subscribe(["chat"]).unwrap();
    for i in 0..10 {
        assert_eq!(a.publish("chat", format!("down{i}")), 1);
    }
    assert_eq!(deliveries(&local, 10).len(), 10);
    assert!(matches!(
        bridge_a.last_error(),
        Some(ConnectError::Refused { .. } | ConnectError::Io { .. })
    ));

    // A plain subscriber, there before the bridge can reconnect: the server
    // comes back refusing the default user (the bridges' connections) until
    // the subscriber, another user, is subscribed.
    server.restart_with(&[
        "--user", "admin", "on", ">secret", "~*", "&*", "+@all", "--user", "default", "off",
    ]);
    let mut sub = server.conn();
    let auth = sub.call(&[b"AUTH", b"admin", b"secret"]).unwrap();
    assert_eq!(auth, Reply::Simple(b"OK".to_vec()));
    sub.call(&[b"SUBSCRIBE", b"chat"]).unwrap();
    let mut admin = server.conn();
    admin.call(&[b"AUTH", b"admin", b"secret"]).unwrap();
    let opened = admin
        .call(&[
            b"ACL", b"SETUSER", b"default", b"on", b"nopass", b"~*", b"&*", b"+@all",
        ])
        .unwrap();
    assert_eq!(opened, Reply::Simple(b"OK".to_vec()));
    assert!(bridge_a.wait_connected(PATIENCE), "A reconnects");
    assert!(
        bridge_b.wait_connected(PATIENCE),
        "B reconnects and subscribes again"
    );
    a.publish("chat", "after");
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    // Every publish is accounted for: a probe written into the dying
    // connection is unknown, none is lost, and the ten made while down
    // were queued and sent.
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert!(stats.unknown <= 1, "{stats:?}");
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("after") {
        let push = sub.read_reply().unwrap();
        let payload = push.items().unwrap()[2].bulk().unwrap();
        got.push(String::from_utf8_lossy(&payload[48..]).into_owned());
    }
    let tail: Vec<String> = (0..10)
        .map(|i| format!("down{i}"))
        .chain(["after".into()])
        .collect();
    assert!(got.ends_with(&tail), "{got:?}");
    // B is back too (it may or may not have been in time for the others).
    while payloads(&deliveries(&on_b, 1)) != ["after"] {}
    // Both connections of each bridge, once (the idle outbound one of B
    // too: the bridge watches it).
    assert_eq!(bridge_a.stats().reconnects, 2);
    eventually("B's idle outbound connection is back", || {
        bridge_b.stats().reconnects == 2
    });
}

#[test]
#[ignore = "needs redis-server"]
fn reconnections_of_both_connections_are_counted() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (a, bridge) = bridged(&server.url());
    assert_eq!(bridge.stats().reconnects, 0);
    let mut cli = server.conn();
    // Kills the publishing connection and the subscribed one.
    cli.call(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]).unwrap();
    eventually("the inbound side reconnects", || {
        bridge.is_connected() && bridge.stats().reconnects == 1
    });
    let killed = cli
        .call(&[b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"yes"])
        .unwrap();
    assert!(killed.integer() >= Some(1), "{killed:?}");
    // The outbound side notices when it next has something to send.
    thread::sleep(Duration::from_millis(50));
    a.publish("chat", "x");
    assert!(bridge.flush(PATIENCE));
    eventually("the outbound side reconnects", || {
        bridge.stats().reconnects == 2
    });
    let stats = bridge.close(PATIENCE);
    assert_eq!(
        (stats.sent, stats.lost, stats.unknown),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn close_and_drop_send_what_is_queued() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (b, _bridge_b) = bridged(&server.url());
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();

    let (a, bridge_a) = bridged(&server.url());
    for i in 0..20_000 {
        a.publish("chat", format!("{i}"));
    }
    let stats = bridge_a.close(PATIENCE);
    assert_eq!(
        (stats.sent, stats.lost, stats.unknown),
        (20_000, 0, 0),
        "{stats:?}"
    );
    assert_eq!(deliveries(&on_b, 20_000).len(), 20_000);

    // Dropping does the same, within the close timeout.
    let a = Broker::new();
    let bridge_a = Bridge::builder(&a, &server.url())
        .channels(["chat"])
        .close_timeout(PATIENCE)
        .start()
        .unwrap();
    assert!(bridge_a.wait_connected(PATIENCE));
    for i in 0..20_000 {
        a.publish("chat", format!("{i}"));
    }
    drop(bridge_a);
    let got = deliveries(&on_b, 20_000);
    assert_eq!(got.last().unwrap().payload_str(), Some("19999"));
    nothing_more(&on_b);
}

#[test]
#[ignore = "needs redis-server"]
fn what_close_abandons_is_counted_lost() {
    let Some(mut server) = Server::start(&[]) else {
        return;
    };
    let (a, bridge) = bridged(&server.url());
    server.kill();
    let mut published = 0;
    eventually("the bridge notices the server is gone", || {
        a.publish("chat", "probe");
        published += 1;
        thread::sleep(Duration::from_millis(20));
        !bridge.is_connected()
    });
    for _ in 0..100 {
        a.publish("chat", "queued");
    }
    published += 100;
    assert!(bridge.queued() >= 100, "{}", bridge.queued());
    assert!(
        !bridge.flush(Duration::from_millis(100)),
        "nothing can be sent"
    );
    let stats = bridge.close(Duration::from_millis(200));
    // Each publish is accounted for exactly once; the probe written into
    // the dead connection (if any) is unknown, everything queued is lost.
    assert_eq!(stats.queued, 0);
    assert_eq!(
        stats.sent + stats.unknown + stats.lost,
        published,
        "{stats:?}"
    );
    assert!(stats.lost >= 100, "{stats:?}");
    assert!(stats.unknown <= 1, "{stats:?}");
}

#[test]
#[ignore = "needs redis-server"]
fn slow_replies_are_waited_for_not_counted_lost() {
    let Some(server) = Server::start(&["--enable-debug-command", "yes"]) else {
        return;
    };
    let (b, _bridge_b) = bridged(&server.url());
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    let (a, bridge_a) = bridged(&server.url());

    // DEBUG SLEEP: Redis answers 0.3 s late.
    let mut cli = server.conn();
    cli.send(&[b"DEBUG", b"SLEEP", b"0.3"]).unwrap();
    for i in 0..100 {
        a.publish("chat", format!("{i}"));
    }
    assert_eq!(cli.read_reply().unwrap(), Reply::Simple(b"OK".to_vec()));
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!(
        (stats.sent, stats.lost, stats.unknown),
        (100, 0, 0),
        "{stats:?}"
    );
    assert_eq!(deliveries(&on_b, 100).len(), 100);

    // SIGSTOP for 1 s: still within the reply timeout.
    server.pause();
    for i in 0..100 {
        a.publish("chat", format!("{i}"));
    }
    thread::sleep(Duration::from_secs(1));
    server.resume();
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!(
        (stats.sent, stats.lost, stats.unknown),
        (200, 0, 0),
        "{stats:?}"
    );
    assert_eq!(deliveries(&on_b, 100).len(), 100);
}

#[test]
#[ignore = "needs redis-server"]
fn unanswered_publishes_are_unknown_not_lost() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (b, _bridge_b) = bridged(&server.url());
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    let a = Broker::new();
    let bridge_a = Bridge::builder(&a, &server.url())
        .channels(["chat"])
        .reply_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    assert!(bridge_a.wait_connected(PATIENCE));
    server.pause();
    for i in 0..50 {
        a.publish("chat", format!("{i}"));
    }
    eventually("the bridge gives up waiting", || !bridge_a.is_connected());
    server.resume();
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    // Written but never answered: unknown, not lost. Redis did run them.
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert_eq!(stats.sent + stats.unknown, 50, "{stats:?}");
    assert!(stats.unknown > 0, "{stats:?}");
    assert_eq!(deliveries(&on_b, 50).len(), 50);
}

#[test]
#[ignore = "needs redis-server"]
fn the_queue_is_bounded_and_its_drops_are_counted() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let mut cli = server.conn();
    let mut sub = server.conn();
    sub.call(&[b"SUBSCRIBE", b"chat"]).unwrap();
    for policy in [BridgeOverflow::DropNewest, BridgeOverflow::DropOldest] {
        let a = Broker::new();
        let bridge = Bridge::builder(&a, &server.url())
            .channels(["chat"])
            .queue_capacity(100)
            .overflow(policy)
            .start()
            .unwrap();
        assert!(bridge.wait_connected(PATIENCE));
        // Redis holds every PUBLISH for a while: the bridge's first batch
        // waits for its replies and the queue fills up behind it.
        let paused = cli.call(&[b"CLIENT", b"PAUSE", b"3000", b"WRITE"]).unwrap();
        assert_eq!(paused, Reply::Simple(b"OK".to_vec()));
        for i in 0..1_000 {
            a.publish("chat", format!("{i}"));
        }
        assert_eq!(bridge.queued(), 100);
        cli.call(&[b"CLIENT", b"UNPAUSE"]).unwrap();
        assert!(bridge.flush(PATIENCE));
        let stats = bridge.close(PATIENCE);
        assert_eq!(stats.sent + stats.lost, 1_000, "{policy:?} {stats:?}");
        assert_eq!(stats.overflowed, stats.lost, "{policy:?} {stats:?}");
        // The batch in flight when the queue filled, then the queue.
        let in_flight = stats.sent - 100;
        let kept: Vec<String> = match policy {
            BridgeOverflow::DropNewest => (0..stats.sent).map(|i| i.to_string()).collect(),
            _ => (0..in_flight)
                .chain(900..1000)
                .map(|i| i.to_string())
                .collect(),
        };
        let got: Vec<String> = (0..kept.len())
            .map(|_| {
                let push = sub.read_reply().unwrap();
                let payload = push.items().unwrap()[2].bulk().unwrap();
                String::from_utf8_lossy(&payload[48..]).into_owned()
            })
            .collect();
        assert_eq!(got, kept, "{policy:?}");
    }
}

#[test]
#[ignore = "needs redis-server"]
fn the_queue_bounds_memory_by_bytes_too() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let a = Broker::new();
    let bridge = Bridge::builder(&a, &server.url())
        .channels(["chat"])
        .queue_bytes(10_000)
        .start()
        .unwrap();
    assert!(bridge.wait_connected(PATIENCE));
    server.pause();
    let payload = channelcast::bytes::Bytes::from(vec![b'x'; 200]);
    for _ in 0..100_000 {
        a.publish("chat", payload.clone());
    }
    assert!(bridge.queued() <= 50, "{}", bridge.queued());
    let stats = bridge.stats();
    server.resume();
    assert!(stats.overflowed > 90_000, "{stats:?}");
    assert!(bridge.flush(PATIENCE));
    let stats = bridge.stats();
    assert_eq!(
        stats.sent + stats.lost + stats.unknown,
        100_000,
        "{stats:?}"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn gaps_from_an_evicted_subscriber_connection_are_counted_exactly() {
    const N: u64 = 10_000;
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let mut cli = server.conn();
    // Redis evicts a subscriber connection with 256 KiB of output pending.
    let limit = cli
        .call(&[
            b"CONFIG",
            b"SET",
            b"client-output-buffer-limit",
            b"pubsub 256kb 0 0",
        ])
        .unwrap();
    assert_eq!(limit, Reply::Simple(b"OK".to_vec()));
    let (a, bridge_a) = bridged(&server.url());
    let (b, bridge_b) = bridged(&server.url());
    // A blocking subscriber that nobody reads stalls B's inbound thread, so
    // its connection's output buffer grows in Redis until it is evicted.
    let stuck = b
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    stuck.subscribe(["chat"]).unwrap();
    // An ordinary subscriber beside it, told in band what went missing.
    let watcher = b.subscriber_builder().confirmations(false).build();
    watcher.subscribe(["chat"]).unwrap();
    watcher.psubscribe(["ch*"]).unwrap();
    let payload = vec![b'p'; 4096];
    for _ in 0..N {
        a.publish("chat", payload.clone());
    }
    assert!(bridge_a.flush(PATIENCE));
    assert_eq!(bridge_a.stats().sent, N);
    drop(stuck);
    eventually("B reconnects after the eviction", || {
        bridge_b.is_connected() && bridge_b.stats().reconnects >= 1
    });
    a.publish("chat", "last");
    assert!(bridge_a.flush(PATIENCE));
    eventually("B receives the last message", || {
        let stats = bridge_b.stats();
        stats.received + stats.missed == N + 1
    });
    let stats = bridge_b.stats();
    assert!(stats.missed > 0, "{stats:?}");
    eprintln!("eviction: {stats:?}");
    // The watcher holds the channel and a matching pattern: two deliveries
    // per publish, and its lag reports count both, in band.
    let (mut delivered, mut missed) = (0u64, 0u64);
    while let Ok(message) = watcher.try_recv() {
        match message {
            Message::Lagged { missed: m } => missed += m,
            m if m.is_delivery() => delivered += 1,
            _ => {}
        }
    }
    assert_eq!(missed, 2 * stats.missed, "{stats:?}");
    assert_eq!(delivered + missed, 2 * (N + 1), "{stats:?}");
}

#[test]
#[ignore = "needs redis-server"]
fn local_and_remote_subscribers_see_one_order() {
    const EACH: usize = 20_000;
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (a, bridge_a) = bridged(&server.url());
    let (b, _bridge_b) = bridged(&server.url());
    let on_a = a.subscriber();
    on_a.subscribe(["chat"]).unwrap();
    let on_b = b.subscriber();
    on_b.subscribe(["chat"]).unwrap();
    let start = Arc::new(Barrier::new(2));
    let publishers: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|who| {
            let (a, start) = (a.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..EACH {
                    a.publish("chat", format!("{who}{i}"));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    assert!(bridge_a.flush(PATIENCE));
    assert_eq!(bridge_a.stats().sent, 2 * EACH as u64);
    let local = payloads(&deliveries(&on_a, 2 * EACH));
    let remote = payloads(&deliveries(&on_b, 2 * EACH));
    let switches = local
        .windows(2)
        .filter(|w| w[0].as_bytes()[0] != w[1].as_bytes()[0])
        .count();
    assert_eq!(local, remote, "one order for local and remote subscribers");
    eprintln!("one order: {switches} switches between the two publishers");
}

#[test]
#[ignore = "needs redis-server"]
fn dropping_the_bridge_does_not_wait_for_a_blocked_subscriber() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let (b, bridge_b) = bridged(&server.url());
    let stuck = b
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    stuck.subscribe(["chat"]).unwrap();
    let mut cli = server.conn();
    for _ in 0..10 {
        cli.call(&[b"PUBLISH", b"chat", b"x"]).unwrap();
    }
    eventually("the inbound thread is stuck", || {
        bridge_b.stats().received >= 2
    });
    let start = Instant::now();
    drop(bridge_b);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(stuck); // lets the stuck thread finish
}

#[test]
#[ignore = "needs redis-server"]
fn passwords_and_acl_users() {
    let Some(server) = Server::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    let broker = Broker::new();
    let start = |url: String| Bridge::builder(&broker, &url).channels(["chat"]).start();
    // No password, or a wrong one: start fails at once, saying why.
    for url in [
        format!("redis://127.0.0.1:{port}/"),
        format!("redis://:wrong@127.0.0.1:{port}/"),
        format!("redis://nobody:s3cret@127.0.0.1:{port}/"),
    ] {
        match start(url.clone()) {
            Err(BridgeError::Misconfigured(ConnectError::Auth { .. })) => {}
            other => panic!("{url}: {other:?}"),
        }
    }
    let bridge = start(format!("redis://:s3cret@127.0.0.1:{port}/")).unwrap();
    assert!(bridge.wait_connected(PATIENCE));
    assert_eq!(bridge.close(PATIENCE).lost, 0);

    let mut cli = server.conn();
    cli.call(&[b"AUTH", b"s3cret"]).unwrap();
    let created = cli
        .call(&[
            b"ACL", b"SETUSER", b"bridge", b"on", b">pw", b"~*", b"&*", b"+@all",
        ])
        .unwrap();
    assert_eq!(created, Reply::Simple(b"OK".to_vec()));
    let bridge = start(format!("redis://bridge:pw@127.0.0.1:{port}/")).unwrap();
    assert!(bridge.wait_connected(PATIENCE));
    let sub = broker.subscriber();
    sub.subscribe(["chat"]).unwrap();
    cli.call(&[b"PUBLISH", b"chat", b"hi"]).unwrap();
    assert_eq!(payloads(&deliveries(&sub, 1)), ["hi"]);
    drop(bridge);

    // A server restarted with a password while the bridge runs: not
    // connected, and the reason is known.
    let Some(mut open) = Server::start(&[]) else {
        return;
    };
    let (_c, bridge) = bridged(&open.url());
    open.restart_with(&["--requirepass", "x"]);
    eventually("the bridge reports the password", || {
        matches!(bridge.last_error(), Some(ConnectError::Auth { .. }))
    });
    assert!(!bridge.is_connected());
}

/// Which connection error a case expects.
type Expected = fn(&ConnectError) -> bool;

/// A loopback listener that runs `serve` on every connection.
fn fake_server(serve: fn(std::net::TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    port
}

#[test]
fn why_the_bridge_is_not_connected_is_told() {
    let broker = Broker::new();
    assert!(matches!(
        Bridge::builder(&broker, "not a url").start(),
        Err(BridgeError::InvalidUrl { .. })
    ));
    let start = |url: &str| {
        Bridge::builder(&broker, url)
            .channels(["c"])
            .connect_timeout(Duration::from_millis(300))
            .start()
    };

    // An HTTP server: definitely not Redis.
    let http = fake_server(|mut stream| {
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    match start(&format!("redis://127.0.0.1:{http}/")) {
        Err(BridgeError::Misconfigured(ConnectError::NotRedis { got, .. })) => {
            assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        }
        other => panic!("{other:?}"),
    }

    // Nothing listening, a server that never answers, an unknown host:
    // started, not connected, and `last_error` says which.
    let silent = fake_server(|stream| {
        thread::sleep(Duration::from_secs(30));
        drop(stream);
    });
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cases: [(String, Expected); 3] = [
        (format!("redis://127.0.0.1:{refused}/"), |e| {
            matches!(e, ConnectError::Refused { .. })
        }),
        (format!("redis://127.0.0.1:{silent}/"), |e| {
            matches!(e, ConnectError::NoAnswer { .. })
        }),
        ("redis://no-such-host.invalid:6379/".to_owned(), |e| {
            matches!(e, ConnectError::UnknownHost { .. })
        }),
    ];
    for (url, expected) in cases {
        let bridge = start(&url).unwrap();
        assert!(!bridge.wait_connected(Duration::from_millis(200)), "{url}");
        let error = bridge
            .last_error()
            .unwrap_or_else(|| panic!("{url}: no error"));
        assert!(expected(&error), "{url}: {error:?}");
        // Local delivery is not affected.
        let sub = broker.subscriber();
        sub.subscribe(["c"]).unwrap();
        assert_eq!(broker.publish("c", "still local"), 1);
        let stats = bridge.close(Duration::from_millis(50));
        assert_eq!(stats.lost, 1, "{url}: {stats:?}");
    }

    let bridge = start(&format!("redis://127.0.0.1:{refused}/")).unwrap();
    assert!(matches!(
        start(&format!("redis://127.0.0.1:{refused}/")),
        Err(BridgeError::AlreadyBridged)
    ));
    drop(bridge);
    // Detached: the broker can be bridged again.
    assert!(start(&format!("redis://127.0.0.1:{refused}/")).is_ok());
}
