//! Tests for the Redis bridge's shard channels on a real Redis Cluster
//! (feature `redis`): three masters on loopback ports, started by each test
//! with `redis-cli --cluster create`.
//!
//! The tests are `#[ignore]`d so that a plain `cargo test` lists them as
//! such; run them with
//! `cargo test --features redis --test bridge_cluster -- --include-ignored`.
//! Every wait is time-boxed, so a hang fails.

#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis_support;

#[path = "common/wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};
use wait::{eventually, nothing_more};

use channelcast::{Bridge, Broker, Message, Subscriber};
use redis_support::{Cluster, Server};

const PATIENCE: Duration = Duration::from_secs(15);
/// Messages per channel in the exchange test.
const N: usize = 200;

/// Shard channels `s0`, `s1`, … grouped by the index of the master
/// serving them, `per_node` on each of the three masters.
fn spread(cluster: &Cluster, per_node: usize) -> Vec<Vec<String>> {
    let mut by_node = vec![Vec::new(); cluster.nodes.len()];
    for i in 0.. {
        let name = format!("s{i}");
        let node = cluster.owner(Bridge::key_slot(&name));
        if by_node[node].len() < per_node {
            by_node[node].push(name);
        }
        if by_node.iter().all(|names| names.len() == per_node) {
            break;
        }
    }
    by_node
}

fn bridged(url: &str, channels: &[String]) -> (Broker, Bridge) {
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, url)
        .shard_channels(channels.iter().map(String::as_str))
        .start()
        .unwrap();
    assert!(bridge.wait_connected(PATIENCE), "the bridge connects");
    (broker, bridge)
}

/// One subscriber per channel: `Lagged` reports carry no channel name.
fn subscribers(broker: &Broker, channels: &[String]) -> BTreeMap<String, Subscriber> {
    channels
        .iter()
        .map(|channel| {
            let sub = broker.subscriber();
            sub.ssubscribe([channel.as_str()]).unwrap();
            (channel.clone(), sub)
        })
        .collect()
}

/// What one subscriber received: payloads, and deliveries reported missed.
#[derive(Debug, Default)]
struct Got {
    payloads: Vec<String>,
    missed: u64,
}

/// Reads `sub` until `done` holds for what it received (time-boxed).
fn read_until(sub: &Subscriber, got: &mut Got, done: impl Fn(&Got) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done(got) {
        let msg = sub
            .recv_deadline(deadline)
            .unwrap_or_else(|e| panic!("{e}: got {got:?}"));
        match msg {
            Message::Lagged { missed } => got.missed += missed,
            msg if msg.is_delivery() => {
                assert_eq!(msg.kind(), "smessage");
                got.payloads.push(msg.payload_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
}

#[test]
#[ignore = "needs redis-server"]
fn the_slot_function_equals_cluster_keyslot() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let mut names: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"foo".to_vec(),
        b"{user1000}.following".to_vec(),
        b"{}".to_vec(),
        b"{}x".to_vec(),
        b"x{}{y}".to_vec(),
        b"{{a}}".to_vec(),
        b"a{b}c{d}".to_vec(),
        b"}{".to_vec(),
        b"{unclosed".to_vec(),
        vec![0, 255, b'{', 1, b'}', 7],
    ];
    for i in 0..2_000u32 {
        let mut name = format!("chan:{i}").into_bytes();
        match i % 4 {
            1 => name = format!("{{room{}}}.{i}", i % 37).into_bytes(),
            2 => name.extend_from_slice(&i.to_le_bytes()),
            3 => name = format!("x{{}}{{t{i}}}").into_bytes(),
            _ => {}
        }
        names.push(name);
    }
    for name in &names {
        assert_eq!(
            Bridge::key_slot(name),
            cluster.keyslot(name),
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
#[ignore = "needs redis-server"]
fn two_brokers_exchange_shard_messages_over_every_master_in_order() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let by_node = spread(&cluster, 4);
    let channels: Vec<String> = by_node.concat();
    // Different entry nodes: each finds the others from the slot map.
    let (a, bridge_a) = bridged(&cluster.nodes[0].url(), &channels);
    let (b, bridge_b) = bridged(&cluster.nodes[1].url(), &channels);
    assert!(bridge_a.is_cluster() && bridge_b.is_cluster());
    let on_a = subscribers(&a, &channels);
    let on_b = subscribers(&b, &channels);

    // Each bridge holds its subscriptions at the master serving the slot.
    for (node, names) in by_node.iter().enumerate() {
        for (other, server) in cluster.nodes.iter().enumerate() {
            let reply = server
                .conn()
                .call(&[b"PUBSUB", b"SHARDNUMSUB", names[0].as_bytes()])
                .unwrap();
            let count = reply.items().unwrap()[1].integer().unwrap();
            assert_eq!(count, if other == node { 2 } else { 0 }, "{names:?}");
        }
    }
    let before: Vec<u64> = (0..3).map(|i| cluster.spublish_calls(i)).collect();

    for i in 0..N {
        for channel in &channels {
            assert_eq!(a.spublish(channel, format!("{channel}/{i}")), 1);
        }
    }
    for (channel, sub) in &on_b {
        let mut got = Got::default();
        read_until(sub, &mut got, |g| g.payloads.len() == N);
        let expected: Vec<String> = (0..N).map(|i| format!("{channel}/{i}")).collect();
        assert_eq!(got.payloads, expected);
        assert_eq!(got.missed, 0);
    }
    // A's own subscribers saw each message once: locally, not again.
    for sub in on_a.values() {
        let mut got = Got::default();
        read_until(sub, &mut got, |g| g.payloads.len() == N);
        nothing_more(sub);
    }
    assert!(bridge_a.flush(PATIENCE));
    // Every master ran the SPUBLISHes of its own slots, and only those.
    for (node, names) in by_node.iter().enumerate() {
        let calls = cluster.spublish_calls(node) - before[node];
        assert_eq!(calls, (names.len() * N) as u64, "master {node}");
    }

    // And back the other way.
    b.spublish(&channels[0], "reply");
    let mut got = Got::default();
    read_until(&on_a[&channels[0]], &mut got, |g| g.payloads.len() == 1);
    assert_eq!(got.payloads, ["reply"]);

    let stats = bridge_a.stats();
    let total = (channels.len() * N) as u64;
    assert_eq!((stats.sent, stats.lost, stats.unknown), (total, 0, 0));
    assert_eq!(stats.redirected, 0);
    assert_eq!(stats.received, 1);
    let stats = bridge_b.close(PATIENCE);
    assert_eq!((stats.received, stats.missed), (total, 0));
    assert_eq!((stats.sent, stats.lost, stats.unknown), (1, 0, 0));
}

#[test]
#[ignore = "needs redis-server"]
fn a_killed_master_stops_only_its_slots_and_every_loss_is_counted() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let by_node = spread(&cluster, 3);
    let channels: Vec<String> = by_node.concat();
    let (a, bridge_a) = bridged(&cluster.url(), &channels);
    let (b, bridge_b) = bridged(&cluster.url(), &channels);
    let on_b = subscribers(&b, &channels);
    let mut got: BTreeMap<&str, Got> = channels
        .iter()
        .map(|c| (c.as_str(), Got::default()))
        .collect();
    let mut published: BTreeMap<String, usize> = BTreeMap::new();
    let publish_round = |published: &mut BTreeMap<String, usize>, round: &str| {
        for channel in &channels {
            let n = published.entry(channel.clone()).or_default();
            a.spublish(channel, format!("{round}{n}"));
            *n += 1;
        }
    };

    for _ in 0..20 {
        publish_round(&mut published, "up");
    }
    for (channel, sub) in &on_b {
        let g = got.get_mut(channel.as_str()).unwrap();
        read_until(sub, g, |g| g.payloads.len() == 20);
    }

    // Master 2 dies: its slots stop, the others keep flowing.
    let dead = 2;
    let dead_port = cluster.nodes[dead].port().to_string();
    cluster.nodes[dead].kill();
    eventually("both bridges report the dead master", || {
        [&bridge_a, &bridge_b].iter().all(|bridge| {
            !bridge.is_connected()
                && bridge
                    .last_error()
                    .is_some_and(|e| e.to_string().contains(&dead_port))
        })
    });
    for _ in 0..30 {
        publish_round(&mut published, "down");
    }
    for node in [0, 1] {
        for channel in &by_node[node] {
            let g = got.get_mut(channel.as_str()).unwrap();
            read_until(&on_b[channel], g, |g| g.payloads.len() == 50);
            assert_eq!(g.missed, 0);
        }
    }
    // The dead master's publishes wait for it (none was delivered).
    for channel in &by_node[dead] {
        nothing_more(&on_b[channel]);
    }
    let stats = bridge_a.stats();
    let total: usize = published.values().sum();
    assert_eq!(
        stats.sent + stats.lost + stats.unknown + stats.queued,
        total as u64,
        "{stats:?}"
    );
    assert!(stats.queued >= 3 * 30 - 3, "{stats:?}");

    // It comes back (same node id, same slots): both bridges recover.
    cluster.nodes[dead].restart();
    cluster.wait_ok();
    assert!(bridge_a.wait_connected(PATIENCE), "A reconnects");
    assert!(bridge_b.wait_connected(PATIENCE), "B subscribes again");
    assert!(bridge_a.flush(PATIENCE), "what waited is sent");
    for _ in 0..5 {
        publish_round(&mut published, "back");
    }
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    let total: usize = published.values().sum();
    assert_eq!(
        stats.sent + stats.lost + stats.unknown,
        total as u64,
        "{stats:?}"
    );
    assert_eq!(stats.queued, 0);

    // On every channel, B received each message or had it reported
    // missing, in order; the last ones after the restart arrive.
    let (delivered, reported) = received_or_reported(&on_b, &mut got, &published);
    let stats_b = bridge_b.stats();
    assert_eq!(stats_b.received, delivered);
    assert_eq!(stats_b.missed, reported);
    // What B missed is what A lost, what it may have lost, or what it sent
    // while B was not subscribed again yet.
    assert!(reported <= stats.lost + stats.unknown + 3 * 30, "{stats:?}");
    assert!(stats_b.reconnects >= 1, "{stats_b:?}");
    eprintln!("A: {stats:?}\nB: {stats_b:?}");
}

/// Reads each channel's subscriber until the last message published there
/// (`back<n-1>`); checks that every message was delivered, in order, or
/// reported missing. Returns the deliveries and the reported losses.
fn received_or_reported(
    subs: &BTreeMap<String, Subscriber>,
    got: &mut BTreeMap<&str, Got>,
    published: &BTreeMap<String, usize>,
) -> (u64, u64) {
    let mut delivered = 0;
    let mut reported = 0;
    for (channel, sub) in subs {
        let n = published[channel];
        let g = got.get_mut(channel.as_str()).unwrap();
        let last = format!("back{}", n - 1);
        read_until(sub, g, |g| g.payloads.last() == Some(&last));
        assert_eq!(
            g.payloads.len() as u64 + g.missed,
            n as u64,
            "{channel}: {g:?}"
        );
        let numbers: Vec<usize> = g
            .payloads
            .iter()
            .map(|p| p.trim_start_matches(char::is_alphabetic).parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{channel}: {g:?}");
        delivered += g.payloads.len() as u64;
        reported += g.missed;
    }
    (delivered, reported)
}

#[test]
#[ignore = "needs redis-server"]
fn a_migrated_slot_is_followed_by_both_sides() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let by_node = spread(&cluster, 1);
    let channel = by_node[0][0].clone();
    let (a, bridge_a) = bridged(&cluster.url(), std::slice::from_ref(&channel));
    let (b, bridge_b) = bridged(&cluster.url(), std::slice::from_ref(&channel));
    let on_b = subscribers(&b, std::slice::from_ref(&channel));
    let sub = &on_b[&channel];
    let mut got = Got::default();
    let mut n = 0u64;
    for _ in 0..10 {
        a.spublish(&channel, format!("m{n}"));
        n += 1;
    }
    read_until(sub, &mut got, |g| g.payloads.len() == 10);

    // Move the channel's slot from master 0 to master 1.
    let slot = Bridge::key_slot(&channel).to_string();
    let id = |i: usize| {
        let reply = cluster.nodes[i]
            .conn()
            .call(&[b"CLUSTER", b"MYID"])
            .unwrap();
        reply.bulk().unwrap().to_vec()
    };
    let (from, to) = (id(0), id(1));
    let ok = |reply: redis_support::Reply| {
        assert_eq!(reply, redis_support::Reply::Simple(b"OK".to_vec()));
    };
    let setslot = |node: &Server, args: &[&[u8]]| {
        let mut command: Vec<&[u8]> = vec![b"CLUSTER", b"SETSLOT", slot.as_bytes()];
        command.extend_from_slice(args);
        ok(node.conn().call(&command).unwrap());
    };
    setslot(&cluster.nodes[1], &[b"IMPORTING", &from]);
    setslot(&cluster.nodes[0], &[b"MIGRATING", &to]);
    setslot(&cluster.nodes[1], &[b"NODE", &to]);
    setslot(&cluster.nodes[0], &[b"NODE", &to]);
    setslot(&cluster.nodes[2], &[b"NODE", &to]);
    assert_eq!(cluster.owner(Bridge::key_slot(&channel)), 1);

    // Publish until B hears from the new master.
    let deadline = Instant::now() + PATIENCE;
    loop {
        a.spublish(&channel, format!("m{n}"));
        n += 1;
        thread::sleep(Duration::from_millis(20));
        while let Ok(msg) = sub.try_recv() {
            match msg {
                Message::Lagged { missed } => got.missed += missed,
                msg if msg.is_delivery() => got.payloads.push(msg.payload_str().unwrap().into()),
                _ => {}
            }
        }
        if got.payloads.len() > 12 && bridge_b.is_connected() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never heard again: {got:?} {:?} {:?} {:?} {:?}",
            bridge_a.stats(),
            bridge_a.last_error(),
            bridge_b.stats(),
            bridge_b.last_error()
        );
    }
    let last = format!("m{n}");
    a.spublish(&channel, last.clone());
    n += 1;
    read_until(sub, &mut got, |g| g.payloads.last() == Some(&last));
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!(stats.sent + stats.lost + stats.unknown, n, "{stats:?}");
    assert_eq!((stats.lost, stats.unknown), (0, 0), "{stats:?}");
    assert!(
        stats.redirected >= 1,
        "A was told the slot moved: {stats:?}"
    );
    assert_eq!(got.payloads.len() as u64 + got.missed, n, "{got:?}");
    // Every SPUBLISH now goes to master 1.
    let calls = cluster.spublish_calls(1);
    a.spublish(&channel, "direct");
    assert!(bridge_a.flush(PATIENCE));
    assert_eq!(cluster.spublish_calls(1), calls + 1);
}

#[test]
#[ignore = "needs redis-server"]
fn shard_channels_work_on_a_plain_server_too() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let channels = vec!["s1".to_owned(), "{t}s2".to_owned()];
    let (a, bridge_a) = bridged(&server.url(), &channels);
    let (b, bridge_b) = bridged(&server.url(), &channels);
    assert!(!bridge_a.is_cluster());
    let on_b = subscribers(&b, &channels);
    // A plain channel of the same name is another namespace.
    let plain = b.subscriber();
    plain.subscribe(["s1"]).unwrap();
    for i in 0..50 {
        for channel in &channels {
            a.spublish(channel, format!("{i}"));
        }
    }
    for sub in on_b.values() {
        let mut got = Got::default();
        read_until(sub, &mut got, |g| g.payloads.len() == 50);
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(got.payloads, expected);
    }
    nothing_more(&plain);
    assert!(bridge_a.flush(PATIENCE));
    assert_eq!(bridge_a.stats().sent, 100);
    assert_eq!(bridge_b.stats().received, 100);
}

#[test]
#[ignore = "needs redis-server"]
fn gaps_on_a_shard_channel_are_reported_in_band_where_they_are() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let by_node = spread(&cluster, 1);
    let channel = by_node[1][0].clone();
    let (a, bridge_a) = bridged(&cluster.url(), std::slice::from_ref(&channel));
    let (b, bridge_b) = bridged(&cluster.url(), std::slice::from_ref(&channel));
    let sub = b.subscriber();
    sub.ssubscribe([channel.as_str()]).unwrap();
    // The master evicts every subscribed connection, again and again,
    // while A publishes: B is not subscribed for a moment each time.
    let mut admin = cluster.nodes[1].conn();
    // B knows A's sequence on the channel from here on.
    a.spublish(&channel, "0");
    let mut first = Got::default();
    read_until(&sub, &mut first, |g| g.payloads.len() == 1);
    let mut n = 1u64;
    let deadline = Instant::now() + PATIENCE;
    while bridge_b.stats().missed == 0 {
        assert!(
            Instant::now() < deadline,
            "no gap in {n} messages: {:?} {:?}",
            bridge_b.stats(),
            bridge_b.last_error()
        );
        admin
            .call(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
            .unwrap();
        // Some while B is away, some after it is back (they show the gap).
        for pause in [0, 300] {
            thread::sleep(Duration::from_millis(pause));
            for _ in 0..100 {
                a.spublish(&channel, n.to_string());
                n += 1;
            }
            assert!(bridge_a.flush(PATIENCE));
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(bridge_b.wait_connected(PATIENCE));
    a.spublish(&channel, n.to_string());
    n += 1;
    // Each `Lagged` stands exactly where its messages are missing.
    let mut expected = 1u64;
    let mut missed = 0;
    while expected < n {
        match sub.recv_deadline(deadline).unwrap() {
            Message::Lagged { missed: k } => {
                expected += k;
                missed += k;
            }
            msg if msg.is_delivery() => {
                assert_eq!(msg.payload_str().unwrap(), expected.to_string());
                expected += 1;
            }
            _ => {}
        }
    }
    assert_eq!(expected, n);
    assert!(bridge_a.flush(PATIENCE));
    let stats = bridge_a.stats();
    assert_eq!((stats.sent, stats.lost, stats.unknown), (n, 0, 0));
    let stats = bridge_b.stats();
    assert_eq!(stats.missed, missed);
    assert_eq!(stats.received + stats.missed, n);
    assert!(stats.reconnects >= 1);
}
