//! Fan-out to async tasks: channelcast's `recv_async` next to
//! `tokio::sync::broadcast`, both received in tokio tasks.
//!
//! Run with `cargo bench -p channelcast-benches --bench async_fanout`. The
//! numbers to read are the ratios inside one group of one run (the machine
//! may be small and shared).
//!
//! # Scenario
//!
//! - `async_fanout/N` (N = 1, 10, 100, 1000, the sizes of the sync `fanout`
//!   groups in `throughput.rs`): N receiving tasks, one per subscriber, run
//!   on a current-thread tokio runtime that has a thread of its own; the
//!   bench thread publishes a batch (10,000 messages for N ≤ 10, 1,000 for
//!   N = 100, 100 for N = 1000: at most 100,000 deliveries) of 64-byte
//!   `Bytes` on one channel. A round ends when the last task has received
//!   the whole batch; throughput counts deliveries (messages × N).
//!   Contenders: `channelcast` (N subscribers of one channel, each task
//!   awaiting `Subscriber::recv_async`) and `tokio_broadcast` (one
//!   `tokio::sync::broadcast` channel with a capacity of the batch, so no
//!   receiver ever lags; each task awaiting `Receiver::recv`).
//!
//! # Method
//!
//! The tasks live for a whole criterion sample and receive round after
//! round; each reports the end of its batch on a crossbeam channel, and the
//! round's time runs from just before the first publish to the arrival of
//! the last report. Publishers run outside the runtime, as a thread handling
//! requests would, so the runtime thread does nothing but receive. When a
//! sample ends the sender side is dropped, every task sees the end of its
//! stream, and the runtime thread is joined: a failure ends the sample
//! instead of hanging it.

use std::future::Future;
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channelcast::Broker;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel as cb;

/// Subscriber (task) counts, as in the sync `fanout` groups.
const FANOUT: [usize; 4] = [1, 10, 100, 1000];
/// Size of every payload.
const PAYLOAD_LEN: usize = 64;
const CHANNEL: &str = "fanout";

/// Messages per round for N tasks: at most 100,000 deliveries, at least 100
/// messages, at most 10,000.
fn batch_for(n: usize) -> usize {
    (100_000 / n).clamp(100, 10_000)
}

/// Runs `tasks` on a current-thread runtime in a thread of its own, and
/// `iters` rounds of `publish` on this thread; returns the summed round
/// times. Each task must send one `()` on its reporter per batch received,
/// and end when its stream ends (once `sender` is dropped).
fn rounds<S, F>(
    iters: u64,
    sender: S,
    tasks: Vec<F>,
    done: &cb::Receiver<()>,
    mut publish: impl FnMut(&S),
) -> Duration
where
    F: Future<Output = ()> + Send + 'static,
{
    let n = tasks.len();
    let runtime = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
            for handle in handles {
                handle.await.expect("a receiving task panicked");
            }
        });
    });
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        publish(&sender);
        for _ in 0..n {
            done.recv_timeout(Duration::from_secs(30))
                .expect("every task received its batch");
        }
        total += start.elapsed();
    }
    drop(sender);
    runtime.join().expect("the runtime thread");
    total
}

fn channelcast_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let broker = Broker::new();
    let (report, done) = cb::unbounded();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let sub = broker.subscriber();
            sub.subscribe([CHANNEL]).expect("broker alive");
            sub.recv().expect("subscribe confirmation");
            let report = report.clone();
            async move {
                loop {
                    for _ in 0..batch {
                        match sub.recv_async().await {
                            Ok(message) => _ = black_box(message),
                            Err(_) => return, // the broker is gone: the sample ended
                        }
                    }
                    report.send(()).expect("the bench thread is waiting");
                }
            }
        })
        .collect();
    let payload = Bytes::from(vec![0xA5; PAYLOAD_LEN]);
    rounds(iters, broker, tasks, &done, |broker| {
        for _ in 0..batch {
            black_box(broker.publish(CHANNEL, payload.clone()));
        }
    })
}

fn tokio_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let (sender, first) = tokio::sync::broadcast::channel::<Bytes>(batch);
    let mut receivers = vec![first];
    receivers.extend((1..n).map(|_| sender.subscribe()));
    let (report, done) = cb::unbounded();
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|mut rx| {
            let report = report.clone();
            async move {
                loop {
                    for _ in 0..batch {
                        match rx.recv().await {
                            Ok(message) => _ = black_box(message),
                            Err(_) => return, // closed: the sample ended
                        }
                    }
                    report.send(()).expect("the bench thread is waiting");
                }
            }
        })
        .collect();
    let payload = Bytes::from(vec![0xA5; PAYLOAD_LEN]);
    rounds(iters, sender, tasks, &done, |sender| {
        for _ in 0..batch {
            black_box(sender.send(payload.clone()).expect("receivers alive"));
        }
    })
}

fn async_fanout(c: &mut Criterion) {
    for n in FANOUT {
        let batch = batch_for(n);
        let mut group = c.benchmark_group(format!("async_fanout/{n}"));
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10)
            .throughput(Throughput::Elements((batch * n) as u64));
        group.bench_function("channelcast", |b| {
            b.iter_custom(|iters| channelcast_fanout(iters, n, batch));
        });
        group.bench_function("tokio_broadcast", |b| {
            b.iter_custom(|iters| tokio_fanout(iters, n, batch));
        });
        group.finish();
    }
}

criterion_group!(benches, async_fanout);
criterion_main!(benches);
