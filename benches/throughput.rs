//! Throughput of channelcast next to the channels it is built on and the
//! broadcast channels it competes with.
//!
//! Every scenario is a criterion group whose contenders are measured in
//! exactly the same way, so the numbers to read are the ratios inside one
//! group of one run (the benchmark machine may be small and shared; absolute
//! times move from run to run, ratios much less). Run with
//! `cargo bench -p channelcast-benches --bench throughput`.
//!
//! # Scenarios
//!
//! - `one_to_one`: one publisher thread sends a batch of 10,000 messages
//!   (a 64-byte `Bytes`, cloned per send) on one channel and one subscriber
//!   thread receives all of them; `channelcast` publishes through a `Broker`
//!   to one `Subscriber`, `crossbeam` is the floor: a bare unbounded
//!   crossbeam channel with the same payload and the same two threads;
//!   `lookup_then_crossbeam` is the least a broker can do on top of it: a
//!   map lookup of the channel's name under a mutex, then a send of the name
//!   and the payload (also in `single_thread/1`).
//! - `fanout/N` (N = 1, 10, 100, 1000): one publisher thread publishes a
//!   batch of messages to N subscribers of one channel (10,000 messages for
//!   N ≤ 10, 1,000 for N = 100, 100 for N = 1000, so at most 100,000
//!   deliveries per batch) while a single drainer thread receives every
//!   delivery, subscriber after subscriber with blocking receives;
//!   throughput counts deliveries (messages × N). Contenders: `channelcast`
//!   (N subscribers of one channel), `crossbeam_per_subscriber` (one
//!   unbounded crossbeam channel per subscriber, the publisher sends N
//!   times), `tokio_broadcast` (`tokio::sync::broadcast` with a capacity of
//!   at least the batch, so no receiver ever lags; `blocking_recv`, no
//!   runtime) and `bus` (`bus::Bus` with a capacity of the batch,
//!   `Bus::broadcast` and `BusReader::recv`).
//! - `publish_only/P` (P = 1, 2, 4, 8, 16, up to the machine's core count):
//!   P threads each publish 10,000 messages on a channel of their own whose
//!   subscriber is not drained during the round (queues are emptied between
//!   rounds, untimed): how publishing alone scales with threads. Throughput
//!   counts messages; compare each P with 1. `crossbeam_floor`: each thread
//!   sends into an unbounded crossbeam channel of its own instead, which
//!   shows how far this machine lets threads that share nothing scale.
//!   The broker has 64 lock stripes per core (`Broker::with_lock_stripes`;
//!   the default, 128, on up to 2 cores). The publishers spin (yielding)
//!   between rounds instead of sleeping, so a round times publishing, not
//!   the wake-up and placement of threads.
//! - `publishers/P` (P = 1, 2, 4): P publisher threads each publish a batch
//!   of 10,000 messages (64-byte `Bytes`) while one drainer thread receives
//!   all P × 10,000; `distinct`: each publisher has its own channel with one
//!   subscriber (the drainer empties them one after the other), `shared`:
//!   all publishers publish on one channel with one subscriber. Throughput
//!   counts messages; compare each P with P = 1.
//! - `churn`: one cycle is `subscribe` to one new channel, `unsubscribe` from
//!   it, and receiving both confirmations, while 10,000 other channels are
//!   live; `10k_live_elsewhere`: another subscriber holds the 10,000
//!   channels, `10k_live_on_self`: the churning subscriber holds them itself.
//!   Throughput counts cycles.
//!
//! - `delivery_kind/{channel,pattern}`: one thread publishes 100 messages
//!   to one subscriber holding the channel, or only a matching pattern, and
//!   receives them: what a pattern delivery costs next to a channel one.
//! - `round_trip`: one thread publishes on `ping` and waits for the answer
//!   on `pong`; an echo thread receives each ping and publishes it back:
//!   the latency of a hand-off both ways, 1,000 round trips per
//!   iteration. `crossbeam`: the same over two bare crossbeam channels.
//! - `single_thread/N` (N = 1, 10, 100, 1000): one thread publishes 100 messages to N
//!   subscribers, then drains every queue; the same four contenders as
//!   `fanout`. No thread hand-off, so these ratios are the steadiest.
//!
//! # Method
//!
//! The threaded scenarios run in rounds: a round starts when the publisher
//! threads are told to go and ends at the instant the drainer has received
//! the last delivery, so each measured round is end to end and includes the
//! wake-up of the threads (a few microseconds against rounds of about a
//! millisecond or more). The same drainer design (one thread, blocking
//! receives, subscriber by subscriber) is used for every contender: on a
//! small machine, N receiving threads for N = 1000 would measure the
//! scheduler, not the channel. Between rounds every queue is empty again, so
//! bounded contenders never block and nothing piles up.
//!
//! Channels, subscribers and threads are set up per criterion sample,
//! outside the timed region, and every thread is joined before a sample
//! returns; all waits are on channels that disconnect when their other end
//! goes, so a panic on either side ends the sample instead of hanging it.
//! (`bus` starts a helper thread of its own per `Bus`; it exits when the
//! `Bus` is dropped, at the end of each sample.) A new `Broker` per sample
//! also means a new randomly seeded hasher, so in `publishers/P distinct`
//! two of the P channels may share a lock stripe in some samples, as they
//! may in real use.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channelcast::{Broker, Name, Subscriber};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use crossbeam_channel as cb;

/// Messages per round in `one_to_one` and per publisher in `publishers`.
const BATCH: usize = 10_000;
/// Size of every payload.
const PAYLOAD_LEN: usize = 64;
/// Subscriber counts of the `fanout` groups.
const FANOUT: [usize; 4] = [1, 10, 100, 1000];
/// Publisher thread counts of the `publishers` groups.
const PUBLISHERS: [usize; 3] = [1, 2, 4];
/// Publisher threads of the `publish_only` groups (those up to the
/// machine's core count run).
const PUBLISH_ONLY: [usize; 5] = [1, 2, 4, 8, 16];
/// Live channels present during `churn`.
const LIVE_CHANNELS: usize = 10_000;

fn payload() -> Bytes {
    Bytes::from(vec![0xA5; PAYLOAD_LEN])
}

fn elements(n: usize) -> Throughput {
    Throughput::Elements(u64::try_from(n).expect("fits in u64"))
}

/// Messages per round for `fanout/n`: at most 100,000 deliveries, at least
/// 100 messages.
fn fanout_batch(n: usize) -> usize {
    (100_000 / n).clamp(100, BATCH)
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    group
}

// ---- the round driver -------------------------------------------------------

/// Runs `iters` rounds of `publish` on this thread against `drain` on one
/// drainer thread and returns the summed round times.
///
/// A round starts just before the drainer is told to go and ends when the
/// drainer reports that it has received everything. `sender` is dropped
/// before the drainer is joined, so a drainer blocked on a receive sees a
/// disconnection instead of waiting forever, even if `publish` panics.
fn rounds<S, R>(
    iters: u64,
    sender: S,
    receivers: R,
    mut publish: impl FnMut(&mut S),
    mut drain: impl FnMut(&mut R) + Send,
) -> Duration
where
    R: Send,
{
    let (go_tx, go_rx) = cb::bounded::<()>(1);
    let (done_tx, done_rx) = cb::bounded::<Instant>(1);
    let mut sender = sender;
    let mut receivers = receivers;
    thread::scope(move |scope| {
        scope.spawn(move || {
            while go_rx.recv().is_ok() {
                drain(&mut receivers);
                if done_tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            go_tx.send(()).expect("the drainer is waiting");
            publish(&mut sender);
            let end = done_rx.recv().expect("the drainer finished its round");
            total += end.saturating_duration_since(start);
        }
        drop(go_tx);
        drop(sender);
        total
    })
}

// ---- fanout contenders (one_to_one is fanout with N = 1) --------------------

const FANOUT_CHANNEL: &str = "fanout";

fn channelcast_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let broker = Broker::new();
    let subscribers: Vec<Subscriber> = (0..n)
        .map(|_| {
            let sub = broker.subscriber();
            sub.subscribe([FANOUT_CHANNEL]).expect("broker alive");
            sub.recv().expect("subscribe confirmation");
            sub
        })
        .collect();
    let payload = payload();
    rounds(
        iters,
        broker,
        subscribers,
        |broker| {
            for _ in 0..batch {
                black_box(broker.publish(FANOUT_CHANNEL, payload.clone()));
            }
        },
        |subscribers| {
            for sub in subscribers.iter() {
                for _ in 0..batch {
                    black_box(sub.recv().expect("a delivery"));
                }
            }
        },
    )
}

fn crossbeam_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let (senders, receivers): (Vec<cb::Sender<Bytes>>, Vec<cb::Receiver<Bytes>>) =
        (0..n).map(|_| cb::unbounded()).unzip();
    let payload = payload();
    rounds(
        iters,
        senders,
        receivers,
        |senders| {
            for _ in 0..batch {
                for tx in senders.iter() {
                    tx.send(payload.clone()).expect("receiver alive");
                }
            }
        },
        |receivers| {
            for rx in receivers.iter() {
                for _ in 0..batch {
                    black_box(rx.recv().expect("a delivery"));
                }
            }
        },
    )
}

fn tokio_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let (sender, first) = tokio::sync::broadcast::channel::<Bytes>(batch);
    let mut receivers = vec![first];
    receivers.extend((1..n).map(|_| sender.subscribe()));
    let payload = payload();
    rounds(
        iters,
        sender,
        receivers,
        |sender| {
            for _ in 0..batch {
                black_box(sender.send(payload.clone()).expect("receivers alive"));
            }
        },
        |receivers| {
            for rx in receivers.iter_mut() {
                for _ in 0..batch {
                    black_box(rx.blocking_recv().expect("a delivery, never lagged"));
                }
            }
        },
    )
}

fn bus_fanout(iters: u64, n: usize, batch: usize) -> Duration {
    let mut bus = bus::Bus::<Bytes>::new(batch);
    let readers: Vec<bus::BusReader<Bytes>> = (0..n).map(|_| bus.add_rx()).collect();
    let payload = payload();
    rounds(
        iters,
        bus,
        readers,
        |bus| {
            for _ in 0..batch {
                bus.broadcast(payload.clone());
            }
        },
        |readers| {
            for rx in readers.iter_mut() {
                for _ in 0..batch {
                    black_box(rx.recv().expect("a delivery"));
                }
            }
        },
    )
}

/// The least a broker can do per publish to one subscriber: find the
/// channel by name in a map under a lock, then send the channel's name and
/// the payload into that subscriber's crossbeam channel. No confirmations,
/// bounds, patterns, counters or guarantees beyond the channel's own.
struct LookupThenCrossbeam {
    channels: std::sync::Mutex<MinimalMap>,
}

/// Channel name → that channel's one subscriber.
type MinimalMap =
    std::collections::HashMap<Name, cb::Sender<(Name, Bytes)>, foldhash::fast::RandomState>;

impl LookupThenCrossbeam {
    fn new(channel: &str) -> (Self, cb::Receiver<(Name, Bytes)>) {
        let (tx, rx) = cb::unbounded();
        let mut channels = std::collections::HashMap::default();
        channels.insert(Name::from(channel), tx);
        let broker = LookupThenCrossbeam {
            channels: std::sync::Mutex::new(channels),
        };
        (broker, rx)
    }

    fn publish(&self, channel: &str, payload: Bytes) -> usize {
        let channels = self.channels.lock().expect("not poisoned");
        match channels.get_key_value(channel.as_bytes()) {
            Some((name, tx)) => usize::from(tx.send((name.clone(), payload)).is_ok()),
            None => 0,
        }
    }
}

fn lookup_then_crossbeam_one_to_one(iters: u64, batch: usize) -> Duration {
    let (broker, rx) = LookupThenCrossbeam::new(FANOUT_CHANNEL);
    let payload = payload();
    rounds(
        iters,
        broker,
        rx,
        |broker| {
            for _ in 0..batch {
                black_box(broker.publish(FANOUT_CHANNEL, payload.clone()));
            }
        },
        |rx| {
            for _ in 0..batch {
                black_box(rx.recv().expect("a delivery"));
            }
        },
    )
}

fn one_to_one(c: &mut Criterion) {
    let mut group = group(c, "one_to_one");
    group.throughput(elements(BATCH));
    group.bench_function("channelcast", |b| {
        b.iter_custom(|iters| channelcast_fanout(iters, 1, BATCH));
    });
    group.bench_function("crossbeam", |b| {
        b.iter_custom(|iters| crossbeam_fanout(iters, 1, BATCH));
    });
    group.bench_function("lookup_then_crossbeam", |b| {
        b.iter_custom(|iters| lookup_then_crossbeam_one_to_one(iters, BATCH));
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    for n in FANOUT {
        let batch = fanout_batch(n);
        let mut group = group(c, &format!("fanout/{n}"));
        group.throughput(elements(batch * n));
        group.bench_function("channelcast", |b| {
            b.iter_custom(|iters| channelcast_fanout(iters, n, batch));
        });
        group.bench_function("crossbeam_per_subscriber", |b| {
            b.iter_custom(|iters| crossbeam_fanout(iters, n, batch));
        });
        group.bench_function("tokio_broadcast", |b| {
            b.iter_custom(|iters| tokio_fanout(iters, n, batch));
        });
        group.bench_function("bus", |b| {
            b.iter_custom(|iters| bus_fanout(iters, n, batch));
        });
        group.finish();
    }
}

// ---- publishers ---------------------------------------------------------------

/// `iters` rounds of `p` publisher threads publishing `BATCH` messages each,
/// on distinct channels or on one shared channel, against one drainer.
fn publishers_rounds(iters: u64, p: usize, shared: bool) -> Duration {
    let broker = Broker::new();
    let channels: Vec<Name> = (0..p)
        .map(|i| {
            if shared {
                Name::from("shared")
            } else {
                Name::from(format!("distinct:{i}"))
            }
        })
        .collect();
    let subscribed: &[Name] = if shared { &channels[..1] } else { &channels };
    let subscribers: Vec<Subscriber> = subscribed
        .iter()
        .map(|channel| {
            let sub = broker.subscriber();
            sub.subscribe([channel]).expect("broker alive");
            sub.recv().expect("subscribe confirmation");
            sub
        })
        .collect();
    let per_subscriber = p * BATCH / subscribers.len();
    let payload = payload();

    thread::scope(move |scope| {
        let mut go_publishers = Vec::with_capacity(p);
        for channel in channels {
            let (go_tx, go_rx) = cb::bounded::<()>(1);
            go_publishers.push(go_tx);
            let broker = broker.clone();
            let payload = payload.clone();
            scope.spawn(move || {
                while go_rx.recv().is_ok() {
                    for _ in 0..BATCH {
                        black_box(broker.publish(&channel, payload.clone()));
                    }
                }
            });
        }
        let (go_drainer, go_rx) = cb::bounded::<()>(1);
        let (done_tx, done_rx) = cb::bounded::<Instant>(1);
        scope.spawn(move || {
            while go_rx.recv().is_ok() {
                for sub in &subscribers {
                    for _ in 0..per_subscriber {
                        black_box(sub.recv().expect("a delivery"));
                    }
                }
                if done_tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            go_drainer.send(()).expect("the drainer is waiting");
            for go in &go_publishers {
                go.send(()).expect("the publisher is waiting");
            }
            let end = done_rx.recv().expect("the drainer finished its round");
            total += end.saturating_duration_since(start);
        }
        // Publishers stop when their go channel disconnects and drop their
        // broker clones; with this last one gone, a drainer still blocked
        // (after a panic) sees the broker closed.
        drop(go_publishers);
        drop(go_drainer);
        drop(broker);
        total
    })
}

/// `publish_only/P`: P threads each publish `BATCH` messages on a channel of
/// their own, whose one (unbounded) subscriber nobody drains during the
/// round; the queues are emptied between rounds, untimed. Measures how
/// publishing itself scales with threads, without the consumer's work.
///
/// The publishers wait for a round by spinning (yielding the CPU while
/// they wait), not by sleeping: a sleeping thread's wake-up, and the
/// scheduler placing both woken publishers on one core for part of a
/// round, cost tens of microseconds that vary from round to round and
/// belong to the operating system, not to publishing. Each publisher
/// publishes its own payload: clones of one shared `Bytes` would make its
/// reference count a cache line that every publish of both threads writes.
fn publish_only_rounds(iters: u64, p: usize, floor: bool) -> Duration {
    // A broker set up for many publishers on distinct channels: 64 lock
    // stripes per core (the default, 128, on up to 2 cores).
    let cores = thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let broker: Broker = Broker::with_lock_stripes((64 * cores).max(128));
    let channels: Vec<Name> = (0..p).map(|i| Name::from(format!("alone:{i}"))).collect();
    let subscribers: Vec<Subscriber> = channels
        .iter()
        .map(|channel| {
            let sub = broker.subscriber_builder().confirmations(false).build();
            sub.subscribe([channel]).expect("broker alive");
            sub
        })
        .collect();
    // The floor: each publisher sends into a crossbeam channel of its own.
    let floors: Vec<(cb::Sender<Bytes>, cb::Receiver<Bytes>)> =
        (0..p).map(|_| cb::unbounded()).collect();
    let payload = payload();
    let round = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        // However this scope ends (a panic included), the publishers stop
        // spinning, so the scope's join cannot hang.
        let _stop = StopOnDrop(&stop);
        let (done_tx, done_rx) = cb::unbounded::<()>();
        for (channel, (floor_tx, _)) in channels.iter().zip(&floors) {
            let own = own_payload(&payload);
            let (broker, done_tx, round, stop) = (&broker, done_tx.clone(), &round, &stop);
            scope.spawn(move || {
                let mut seen = 0;
                while let Some(now) = wait_for_round(round, seen, stop) {
                    seen = now;
                    for _ in 0..BATCH {
                        if floor {
                            floor_tx.send(own.clone()).expect("the receiver is held");
                        } else {
                            black_box(broker.publish(channel, own.clone()));
                        }
                    }
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        let mut total = Duration::ZERO;
        let mut drained = Vec::with_capacity(BATCH);
        for _ in 0..iters {
            let start = Instant::now();
            round.fetch_add(1, Ordering::Release);
            for _ in 0..p {
                done_rx
                    .recv_timeout(Duration::from_mins(1))
                    .expect("a publisher finished its round");
            }
            total += start.elapsed();
            for sub in &subscribers {
                while sub
                    .try_recv_many(&mut drained, BATCH)
                    .expect("broker alive")
                    > 0
                {
                    drained.clear();
                }
            }
            for (_, rx) in &floors {
                rx.try_iter().for_each(drop);
            }
        }
        total
    })
}

/// A copy of `payload` whose reference count is on cache lines of its
/// own. Two `Bytes` made one after the other can have their counts on one
/// line (their shared headers are small allocations, made side by side),
/// and each publisher's clones then write the line the other's clones
/// write: that measures the allocator's placement, not the publishers.
fn own_payload(payload: &[u8]) -> Bytes {
    Bytes::from_owner(LineOwned(payload.to_vec().into_boxed_slice()))
}

/// A payload's bytes, in an owner aligned (and so sized) to two cache
/// lines: `Bytes::from_owner` keeps the reference count next to it, so
/// nothing else shares the count's lines.
#[repr(align(128))]
struct LineOwned(Box<[u8]>);

impl AsRef<[u8]> for LineOwned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Spins (yielding) until `round` passes `seen`; `None` once `stop` is set.
fn wait_for_round(round: &AtomicU64, seen: u64, stop: &AtomicBool) -> Option<u64> {
    loop {
        if stop.load(Ordering::Acquire) {
            return None;
        }
        let now = round.load(Ordering::Acquire);
        if now != seen {
            return Some(now);
        }
        thread::yield_now();
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn publish_only(c: &mut Criterion) {
    // As many publishers as the machine has cores, at most: on a 2-core
    // machine, 1 and 2; on 16 cores, the whole curve.
    let cores = thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    for p in PUBLISH_ONLY.into_iter().filter(|&p| p == 1 || p <= cores) {
        let mut group = group(c, &format!("publish_only/{p}"));
        group.throughput(elements(p * BATCH));
        group.bench_function("distinct", |b| {
            b.iter_custom(|iters| publish_only_rounds(iters, p, false));
        });
        group.bench_function("crossbeam_floor", |b| {
            b.iter_custom(|iters| publish_only_rounds(iters, p, true));
        });
        group.finish();
    }
}

fn publishers(c: &mut Criterion) {
    for p in PUBLISHERS {
        let mut group = group(c, &format!("publishers/{p}"));
        group.throughput(elements(p * BATCH));
        group.bench_function("distinct", |b| {
            b.iter_custom(|iters| publishers_rounds(iters, p, false));
        });
        group.bench_function("shared", |b| {
            b.iter_custom(|iters| publishers_rounds(iters, p, true));
        });
        group.finish();
    }
}

// ---- churn ----------------------------------------------------------------------

/// Subscribes `sub` to `channel`, unsubscribes it, and receives both
/// confirmations.
fn cycle(sub: &Subscriber, channel: &Name) {
    black_box(sub.subscribe([channel]).expect("broker alive"));
    black_box(sub.unsubscribe([channel]).expect("broker alive"));
    black_box(sub.try_recv().expect("subscribe confirmation"));
    black_box(sub.try_recv().expect("unsubscribe confirmation"));
}

fn churn(c: &mut Criterion) {
    let broker = Broker::new();
    let holder = broker.subscriber();
    holder
        .subscribe((0..LIVE_CHANNELS).map(|i| format!("live:{i}")))
        .expect("broker alive");
    holder.try_iter().for_each(drop);
    // Channels that are never among the live ones, rotated so that the
    // cycles touch different stripes and buckets.
    let fresh: Vec<Name> = (0..1024)
        .map(|i| Name::from(format!("churn:{i}")))
        .collect();

    let mut group = group(c, "churn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("10k_live_elsewhere", |b| {
        let sub = broker.subscriber();
        let mut names = fresh.iter().cycle();
        b.iter(|| cycle(&sub, names.next().expect("endless")));
    });
    group.bench_function("10k_live_on_self", |b| {
        let mut names = fresh.iter().cycle();
        b.iter(|| cycle(&holder, names.next().expect("endless")));
    });
    group.finish();
    assert_eq!(broker.channels().len(), LIVE_CHANNELS);
}

// ---- single thread -------------------------------------------------------------

/// One thread publishes a batch of 100 messages to N subscribers, then drains
/// every queue: the cost per delivery without any thread hand-off, so the
/// ratios are not blurred by threads going to sleep and waking up.
/// `delivery_kind`: one thread publishes 100 messages to one subscriber and
/// receives them, the subscriber holding the channel itself (`channel`) or
/// only a pattern that matches it (`pattern`, the channel has no exact
/// subscriber). Compares the cost of a pattern delivery with a channel one.
fn delivery_kind(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let mut group = group(c, "delivery_kind");
    group.throughput(elements(MESSAGES));
    let payload = payload();
    for (name, pattern) in [("channel", false), ("pattern", true)] {
        let broker = Broker::new();
        let sub = broker.subscriber_builder().confirmations(false).build();
        if pattern {
            sub.psubscribe(["fan*"]).unwrap();
        } else {
            sub.subscribe([FANOUT_CHANNEL]).unwrap();
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..MESSAGES {
                    broker.publish(FANOUT_CHANNEL, payload.clone());
                }
                for _ in 0..MESSAGES {
                    black_box(sub.try_recv().unwrap());
                }
            });
        });
    }
    group.finish();
}

fn single_thread(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    for n in [1, 10, 100, 1000] {
        let mut group = group(c, &format!("single_thread/{n}"));
        group.throughput(elements(MESSAGES * n));
        let payload = payload();

        let broker = Broker::new();
        let subs: Vec<Subscriber> = (0..n).map(|_| broker.subscriber()).collect();
        for sub in &subs {
            sub.subscribe([FANOUT_CHANNEL]).unwrap();
            sub.recv().unwrap();
        }
        group.bench_function("channelcast", |b| {
            b.iter(|| {
                for _ in 0..MESSAGES {
                    broker.publish(FANOUT_CHANNEL, payload.clone());
                }
                for sub in &subs {
                    for _ in 0..MESSAGES {
                        black_box(sub.try_recv().unwrap());
                    }
                }
            });
        });

        let channels: Vec<(cb::Sender<Bytes>, cb::Receiver<Bytes>)> =
            (0..n).map(|_| cb::unbounded()).collect();
        group.bench_function("crossbeam_per_subscriber", |b| {
            b.iter(|| {
                for _ in 0..MESSAGES {
                    for (tx, _) in &channels {
                        tx.send(payload.clone()).unwrap();
                    }
                }
                for (_, rx) in &channels {
                    for _ in 0..MESSAGES {
                        black_box(rx.try_recv().unwrap());
                    }
                }
            });
        });

        let (tx, _keep) = tokio::sync::broadcast::channel::<Bytes>(MESSAGES);
        let mut receivers: Vec<_> = (0..n).map(|_| tx.subscribe()).collect();
        group.bench_function("tokio_broadcast", |b| {
            b.iter(|| {
                for _ in 0..MESSAGES {
                    tx.send(payload.clone()).unwrap();
                }
                for rx in &mut receivers {
                    for _ in 0..MESSAGES {
                        black_box(rx.try_recv().unwrap());
                    }
                }
            });
        });

        if n == 1 {
            let (minimal, rx) = LookupThenCrossbeam::new(FANOUT_CHANNEL);
            group.bench_function("lookup_then_crossbeam", |b| {
                b.iter(|| {
                    for _ in 0..MESSAGES {
                        minimal.publish(FANOUT_CHANNEL, payload.clone());
                    }
                    for _ in 0..MESSAGES {
                        black_box(rx.try_recv().unwrap());
                    }
                });
            });
        }

        let mut bus = bus::Bus::<Bytes>::new(MESSAGES);
        let mut readers: Vec<_> = (0..n).map(|_| bus.add_rx()).collect();
        group.bench_function("bus", |b| {
            b.iter(|| {
                for _ in 0..MESSAGES {
                    bus.broadcast(payload.clone());
                }
                for rx in &mut readers {
                    for _ in 0..MESSAGES {
                        black_box(rx.try_recv().unwrap());
                    }
                }
            });
        });
        group.finish();
    }
}

// ---- round_trip ----------------------------------------------------------------

/// Round trips per timed iteration of `round_trip`.
const ROUND_TRIPS: usize = 1_000;

/// `iters` × [`ROUND_TRIPS`] round trips: this thread publishes on `ping`
/// and waits for the answer on `pong`; an echo thread receives each ping
/// and publishes it back on `pong`.
fn channelcast_round_trips(iters: u64) -> Duration {
    let broker = Broker::new();
    let echo_sub = broker.subscriber_builder().confirmations(false).build();
    echo_sub.subscribe(["ping"]).expect("broker alive");
    let answers = broker.subscriber_builder().confirmations(false).build();
    answers.subscribe(["pong"]).expect("broker alive");
    let payload = payload();
    thread::scope(|scope| {
        let echo = broker.clone();
        scope.spawn(move || {
            // An empty ping ends it (it holds a broker handle, so the
            // subscription never disconnects); so does a receive that
            // fails, which a panic on the timing side would need.
            while let Ok(message) = echo_sub.recv_timeout(Duration::from_mins(1)) {
                let payload = message.into_payload().expect("a delivery");
                if payload.is_empty() {
                    break;
                }
                echo.publish("pong", payload);
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..ROUND_TRIPS {
                broker.publish("ping", payload.clone());
                black_box(answers.recv().expect("the echo answers"));
            }
        }
        let elapsed = start.elapsed();
        broker.publish("ping", Bytes::new());
        elapsed
    })
}

/// [`channelcast_round_trips`] over two bare crossbeam channels.
fn crossbeam_round_trips(iters: u64) -> Duration {
    let (ping_tx, ping_rx) = cb::unbounded::<Bytes>();
    let (pong_tx, pong_rx) = cb::unbounded::<Bytes>();
    let payload = payload();
    thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(payload) = ping_rx.recv() {
                if pong_tx.send(payload).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..ROUND_TRIPS {
                ping_tx.send(payload.clone()).expect("the echo is alive");
                black_box(pong_rx.recv().expect("the echo answers"));
            }
        }
        let elapsed = start.elapsed();
        drop(ping_tx);
        elapsed
    })
}

fn round_trip(c: &mut Criterion) {
    let mut group = group(c, "round_trip");
    group.throughput(elements(ROUND_TRIPS));
    group.bench_function("channelcast", |b| b.iter_custom(channelcast_round_trips));
    group.bench_function("crossbeam", |b| b.iter_custom(crossbeam_round_trips));
    group.finish();
}

criterion_group!(
    benches,
    one_to_one,
    round_trip,
    fanout,
    single_thread,
    delivery_kind,
    publishers,
    publish_only,
    churn
);
criterion_main!(benches);
