//! Throughput through a real Redis server (feature `redis`).
//!
//! Group `bridge/100000`: each iteration moves 100,000 messages of 64
//! bytes from one side to the other and waits until the last arrives.
//!
//! - `channelcast_bridge`: broker A publishes on a bridged channel; broker
//!   B, bridged to the same server, delivers to a local subscriber. The
//!   bridge pipelines its `PUBLISH`es (many per write, replies read in
//!   bulk).
//! - `redis_rs_pipelined`: the reference: one redis-rs connection sends
//!   the same messages as pipelined `PUBLISH`es (batches of 1,000), another,
//!   subscribed, receives them with `get_message`.
//!
//! Group `tap`: the cost of a local publish on a name the bridge does not
//! bridge, with 10,000 bridged channels, next to the same publish on a
//! broker without a bridge.
//!
//! The bench starts its own `redis-server` on a free loopback port (it must
//! be on the PATH). Run with `cargo bench -p channelcast-benches --features redis --bench bridge`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channelcast::{Bridge, Broker};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MESSAGES: usize = 100_000;
const PIPELINE: usize = 1_000;

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        // The bench's subscribers read as fast as they can, but a burst
        // may pass the default 8 MB soft limit.
        .args(["--client-output-buffer-limit", "pubsub 0 0 0"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on the PATH");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_connection().is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    Server(child, port)
}

fn bench(c: &mut Criterion) {
    let server = start_server();
    let url = format!("redis://127.0.0.1:{}/", server.1);
    let payload = Bytes::from(vec![b'x'; 64]);
    let mut group = c.benchmark_group(format!("bridge/{MESSAGES}"));
    group
        .throughput(Throughput::Elements(MESSAGES as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    let (a, b) = (Broker::new(), Broker::new());
    let bridge_a = Bridge::builder(&a, &url)
        .channels(["bench"])
        .queue_capacity(1 << 20)
        .start()
        .unwrap();
    let bridge_b = Bridge::builder(&b, &url)
        .channels(["bench"])
        .start()
        .unwrap();
    assert!(bridge_a.wait_connected(Duration::from_secs(10)));
    assert!(bridge_b.wait_connected(Duration::from_secs(10)));
    let sub = b.subscriber();
    sub.subscribe(["bench"]).unwrap();
    sub.recv().unwrap();
    group.bench_function("channelcast_bridge", |bencher| {
        bencher.iter(|| {
            for _ in 0..MESSAGES {
                a.publish("bench", payload.clone());
            }
            for _ in 0..MESSAGES {
                sub.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        });
    });
    let stats = bridge_a.close(Duration::from_secs(10));
    assert_eq!((stats.lost, stats.unknown), (0, 0), "{stats:?}");
    drop(bridge_b);

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut publisher = client.get_connection().unwrap();
    let mut subscriber = client.get_connection().unwrap();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("plain").unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..PIPELINE {
        pipe.cmd("PUBLISH").arg("plain").arg(&payload[..]);
    }
    group.bench_function("redis_rs_pipelined", |bencher| {
        bencher.iter(|| {
            thread::scope(|scope| {
                scope.spawn(|| {
                    for _ in 0..MESSAGES / PIPELINE {
                        let _: Vec<i64> = pipe.query(&mut publisher).unwrap();
                    }
                });
                for _ in 0..MESSAGES {
                    pubsub.get_message().unwrap();
                }
            });
        });
    });
    group.finish();

    let mut group = c.benchmark_group("tap");
    let bridged = Broker::new();
    let channels: Vec<String> = (0..10_000).map(|i| format!("bridged.{i}")).collect();
    let _bridge = Bridge::builder(&bridged, &url)
        .channels(channels)
        .start()
        .unwrap();
    let plain = Broker::new();
    group.bench_function("unbridged_name_10000_bridged_channels", |bencher| {
        bencher.iter(|| bridged.publish("local.only", payload.clone()));
    });
    group.bench_function("no_bridge", |bencher| {
        bencher.iter(|| plain.publish("local.only", payload.clone()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
