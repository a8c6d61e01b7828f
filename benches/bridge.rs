//! Throughput through a real Redis server (feature `redis`).
//!
//! Scenarios (group `bridge/1000`, each iteration moves 1,000 messages of
//! 64 bytes from one side to the other and waits until the last arrives):
//!
//! - `channelcast_bridge`: broker A publishes on a bridged channel; broker B,
//!   bridged to the same server, delivers to a local subscriber.
//! - `redis_rs`: the floor: one redis-rs connection `PUBLISH`es, another,
//!   subscribed, receives with `get_message`.
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

const MESSAGES: usize = 1_000;

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
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let (a, b) = (Broker::new(), Broker::new());
    let bridge_a = Bridge::builder(&a, &url)
        .channels(["bench"])
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

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut publisher = client.get_connection().unwrap();
    let mut subscriber = client.get_connection().unwrap();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("plain").unwrap();
    group.bench_function("redis_rs", |bencher| {
        bencher.iter(|| {
            for _ in 0..MESSAGES {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg("plain")
                    .arg(&payload[..])
                    .query(&mut publisher)
                    .unwrap();
            }
            for _ in 0..MESSAGES {
                pubsub.get_message().unwrap();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
