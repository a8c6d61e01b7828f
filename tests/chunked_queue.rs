//! Stress tests of an unbounded subscriber's chunked queue (`src/batch.rs`)
//! and of receivers that look again before they sleep: bursts around the
//! chunk sizes, several threads receiving from one subscriber by every
//! method, async receivers, the readiness handle, moving between a channel
//! log and the queue, confirmations, counts, drops and deadlines, each
//! through multi-chunk backlogs. Every wait is time-boxed.

#[path = "common/wait.rs"]
mod wait;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use channelcast::{Broker, Message, Overflow, RecvTimeoutError, TryRecvError};

/// Receives from `sub` on a thread of its own until `stop` is set and a
/// receive then times out; returns everything received, in order.
fn collect_until_stopped(
    sub: Arc<channelcast::Subscriber>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Message>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match sub.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => seen.push(m),
                Err(RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        seen
    })
}

fn num(m: &Message) -> usize {
    m.payload_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{m:?}"))
}

/// Several threads receive from one subscriber (mixing `recv`, `recv_timeout(0)`,
/// `try_recv_many`, `recv_many`) while one publisher streams. Each thread's own
/// sequence must increase, the union must be exactly 0..N, counts exact.
#[test]
fn shared_receivers_mixed_methods_exact() {
    wait::within(module_path!(), || {
        for round in 0..6 {
            const N: usize = 60_000;
            let broker = Broker::new();
            let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
            sub.subscribe(["s"]).unwrap();
            let got = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let mut hs = Vec::new();
            for t in 0..3 {
                let sub = Arc::clone(&sub);
                let _got = Arc::clone(&got);
                let done = Arc::clone(&done);
                hs.push(thread::spawn(move || {
                    let mut mine = Vec::new();
                    let mut buf = Vec::new();
                    let mut k = 0usize;
                    while !done.load(Ordering::Acquire) {
                        k += 1;
                        let mode = (k + t + round) % 4;
                        match mode {
                            0 => match sub.recv_timeout(Duration::from_millis(2)) {
                                Ok(m) => mine.push(num(&m)),
                                Err(RecvTimeoutError::Timeout) => {}
                                Err(e) => panic!("{e:?}"),
                            },
                            1 => match sub.recv_timeout(Duration::ZERO) {
                                Ok(m) => mine.push(num(&m)),
                                Err(RecvTimeoutError::Timeout) => {}
                                Err(e) => panic!("{e:?}"),
                            },
                            2 => {
                                buf.clear();
                                sub.try_recv_many(&mut buf, 1 + k % 200).unwrap();
                                mine.extend(buf.iter().map(num));
                            }
                            _ => match sub.try_recv() {
                                Ok(m) => mine.push(num(&m)),
                                Err(TryRecvError::Empty) => {}
                                Err(e) => panic!("{e:?}"),
                            },
                        }
                    }
                    mine
                }));
            }
            // Simpler termination: the publisher publishes N, then we wait
            // until stats say everything was received.
            for i in 0..N {
                broker.publish("s", i.to_string());
                if i % 5000 == 0 {
                    thread::yield_now();
                }
            }
            let start = Instant::now();
            while sub.stats().received < N as u64 {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "stuck: {:?}",
                    sub.stats()
                );
                thread::sleep(Duration::from_millis(1));
            }
            done.store(true, Ordering::Release);
            let mut all = Vec::new();
            for h in hs {
                let mine = h.join().unwrap();
                for w in mine.windows(2) {
                    assert!(
                        w[0] < w[1],
                        "per-thread order broke: {} then {}",
                        w[0],
                        w[1]
                    );
                }
                all.extend(mine);
            }
            assert_eq!(all.len(), N, "lost or doubled");
            let set: HashSet<_> = all.iter().copied().collect();
            assert_eq!(set.len(), N);
            let st = sub.stats();
            assert_eq!((st.queued, st.received, st.dropped), (0, N as u64, 0));
            assert_eq!(sub.len(), 0);
            let bs = broker.stats();
            assert_eq!(bs.delivered, N as u64);
        }
    });
}

/// A backlog of many chunks: `len()` and `stats().queued` exact at every step
/// while receiving single items and batches.
#[test]
fn len_exact_through_multi_chunk_backlog() {
    wait::within(module_path!(), || {
        const N: usize = 40_000;
        let broker = Broker::new();
        let sub = broker.subscriber();
        sub.subscribe(["c"]).unwrap();
        for i in 0..N {
            broker.publish("c", i.to_string());
        }
        assert_eq!(sub.len(), N + 1);
        assert_eq!(sub.recv().unwrap().kind(), "subscribe");
        let mut next = 0;
        let mut buf = Vec::new();
        while next < N {
            assert_eq!(sub.len(), N - next);
            assert_eq!(sub.stats().queued, N - next);
            assert_eq!(sub.stats().received, next as u64);
            if next % 3 == 0 {
                buf.clear();
                let k = sub.try_recv_many(&mut buf, 777).unwrap();
                for m in &buf {
                    assert_eq!(num(m), next);
                    next += 1;
                }
                assert_eq!(k, buf.len());
            } else {
                let m = sub.recv().unwrap();
                assert_eq!(num(&m), next);
                next += 1;
            }
            // Interleave more publishes sometimes
        }
        assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Publisher and receiver race with bursts of sizes around chunk edges;
/// the receiver mixes `recv_many` and `recv_timeout`.
#[test]
fn bursts_around_chunk_sizes_keep_order() {
    wait::within(module_path!(), || {
        let broker = Broker::new();
        let sub = broker.subscriber_builder().confirmations(false).build();
        sub.subscribe(["b"]).unwrap();
        let bursts: Vec<usize> = (0..400)
            .map(|i| [1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 500, 8191, 8193][i % 13])
            .collect();
        let total: usize = bursts.iter().sum();
        let b2 = broker.clone();
        let p = thread::spawn(move || {
            let mut n = 0usize;
            for (k, b) in bursts.into_iter().enumerate() {
                for _ in 0..b {
                    b2.publish("b", n.to_string());
                    n += 1;
                }
                if k % 7 == 0 {
                    thread::sleep(Duration::from_micros(50));
                }
            }
        });
        let mut next = 0;
        let mut buf = Vec::new();
        let mut k = 0;
        while next < total {
            k += 1;
            match k % 3 {
                0 => {
                    buf.clear();
                    sub.recv_many(&mut buf, 100).unwrap();
                    for m in &buf {
                        assert_eq!(num(m), next);
                        next += 1;
                    }
                }
                1 => match sub.recv_timeout(Duration::from_micros(100)) {
                    Ok(m) => {
                        assert_eq!(num(&m), next);
                        next += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(e) => panic!("{e:?}"),
                },
                _ => {
                    let m = sub.recv().unwrap();
                    assert_eq!(num(&m), next);
                    next += 1;
                }
            }
        }
        p.join().unwrap();
        assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(sub.stats().received, total as u64);
    });
}

/// Async receivers (multi-thread runtime, several tasks on one subscriber)
/// during a stream with multi-chunk backlogs.
#[test]
fn async_receivers_through_chunks() {
    wait::within(module_path!(), || {
        const N: usize = 100_000;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let broker = Broker::new();
        let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
        sub.subscribe(["a"]).unwrap();
        let b2 = broker.clone();
        let p = thread::spawn(move || {
            for i in 0..N {
                b2.publish("a", i.to_string());
            }
        });
        let got = Arc::new(AtomicUsize::new(0));
        let results = rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let sub = Arc::clone(&sub);
                let got = Arc::clone(&got);
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        if got.load(Ordering::Acquire) >= N {
                            break;
                        }
                        match tokio::time::timeout(Duration::from_millis(20), sub.recv_async())
                            .await
                        {
                            Ok(Ok(m)) => {
                                mine.push(num(&m));
                                got.fetch_add(1, Ordering::AcqRel);
                            }
                            Ok(Err(e)) => panic!("{e:?}"),
                            Err(_) => {}
                        }
                    }
                    mine
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                let mine = t.await.unwrap();
                for w in mine.windows(2) {
                    assert!(w[0] < w[1]);
                }
                all.extend(mine);
            }
            all
        });
        p.join().unwrap();
        assert_eq!(results.len(), N);
        assert_eq!(results.iter().copied().collect::<HashSet<_>>().len(), N);
        assert_eq!(sub.stats().received, N as u64);
        assert_eq!(sub.len(), 0);
    });
}

/// `ready()` after a multi-chunk backlog, with a publisher still running:
/// the select-and-drain loop must see every item and never hang.
#[test]
fn ready_after_multi_chunk_backlog() {
    wait::within(module_path!(), || {
        const N: usize = 50_000;
        let broker = Broker::new();
        let a = broker.subscriber_builder().confirmations(false).build();
        let b = broker.subscriber_builder().confirmations(false).build();
        a.subscribe(["r"]).unwrap();
        b.subscribe(["r"]).unwrap(); // both on the log
        for i in 0..N / 2 {
            broker.publish("r", i.to_string());
        }
        let b2 = broker.clone();
        let p = thread::spawn(move || {
            for i in N / 2..N {
                b2.publish("r", i.to_string());
            }
        });
        let ready = a.ready().clone();
        let mut next = 0;
        while next < N {
            crossbeam_channel::select! {
                recv(ready) -> _ => loop {
                    match a.try_recv() {
                        Ok(m) => { assert_eq!(num(&m), next); next += 1; }
                        Err(TryRecvError::Empty) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                },
                default(Duration::from_secs(5)) => panic!("ready never fired; next={next} len={}", a.len()),
            }
        }
        p.join().unwrap();
        assert_eq!(a.stats().received, N as u64);
        assert_eq!(b.len(), N);
        let mut next = 0;
        for m in b.try_iter() {
            assert_eq!(num(&m), next);
            next += 1;
        }
        assert_eq!(next, N);
    });
}

/// A log reader with a long unread log subscribes to a second channel while
/// a receiver thread is busy receiving: `leave_log` moves the log into the
/// queue (many chunks). Order, confirmation placement, counts.
#[test]
fn leave_log_with_long_backlog_and_live_receiver() {
    wait::within(module_path!(), || {
        for _ in 0..20 {
            const N: usize = 30_000;
            let broker = Broker::new();
            let a = Arc::new(broker.subscriber());
            let b = broker.subscriber_builder().confirmations(false).build();
            a.subscribe(["x"]).unwrap();
            b.subscribe(["x"]).unwrap();
            for i in 0..N {
                broker.publish("x", i.to_string());
            }
            let stop = Arc::new(AtomicBool::new(false));
            let r = collect_until_stopped(Arc::clone(&a), Arc::clone(&stop));
            thread::sleep(Duration::from_micros(300));
            a.subscribe(["y"]).unwrap();
            for i in N..N + 1000 {
                broker.publish("x", i.to_string());
                broker.publish("y", "y");
            }
            stop.store(true, Ordering::Release);
            let seen = r.join().unwrap();
            let mut next = 0;
            let mut ys = 0;
            let mut confirmed_y = false;
            let mut kinds = Vec::new();
            for m in &seen {
                match m.kind() {
                    "subscribe" => {
                        if m.channel().unwrap() == "y" {
                            assert_eq!(next, N, "y confirmed at the wrong place");
                            confirmed_y = true;
                        }
                    }
                    "message" if m.channel().unwrap() == "x" => {
                        assert_eq!(num(m), next);
                        next += 1;
                    }
                    "message" => {
                        assert!(confirmed_y);
                        ys += 1;
                    }
                    k => kinds.push(k.to_string()),
                }
            }
            assert!(kinds.is_empty(), "{kinds:?}");
            assert_eq!(next, N + 1000);
            assert_eq!(ys, 1000);
            assert_eq!(a.stats().received, (N + 2000) as u64);
            assert_eq!(a.len(), 0);
        }
    });
}

/// Dropping a subscriber with a multi-chunk backlog frees every payload.
#[test]
fn drop_with_multi_chunk_backlog_frees_payloads() {
    #[derive(Clone)]
    struct P(#[allow(dead_code)] Arc<()>);
    impl From<Arc<()>> for P {
        fn from(a: Arc<()>) -> Self {
            P(a)
        }
    }
    wait::within(module_path!(), || {
        let token = Arc::new(());
        let broker = Broker::with_payload::<P>();
        let sub = broker.subscriber();
        sub.subscribe(["d"]).unwrap();
        for _ in 0..50_000 {
            broker.publish("d", Arc::clone(&token));
        }
        // Take part of it so the batch holds some, the queue the rest.
        for _ in 0..1000 {
            sub.recv().unwrap();
        }
        assert_eq!(Arc::strong_count(&token), 1 + 50_000 - 999);
        drop(sub);
        assert_eq!(Arc::strong_count(&token), 1);
    });
}

/// Subscribe/unsubscribe confirmations interleaved with a multi-chunk
/// backlog, while a receiver drains on another thread: no message of a
/// name before its subscribe or after its unsubscribe confirmation.
#[test]
fn confirmations_bracket_messages_across_chunks() {
    wait::within(module_path!(), || {
        let broker = Broker::new();
        let sub = Arc::new(broker.subscriber());
        sub.subscribe(["keep"]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let r = collect_until_stopped(Arc::clone(&sub), Arc::clone(&stop));
        let b2 = broker.clone();
        let p = thread::spawn(move || {
            for i in 0..150_000usize {
                b2.publish("keep", i.to_string());
                b2.publish("flip", i.to_string());
            }
        });
        for _ in 0..300 {
            sub.subscribe(["flip"]).unwrap();
            thread::sleep(Duration::from_micros(100));
            sub.unsubscribe(["flip"]).unwrap();
            thread::sleep(Duration::from_micros(100));
        }
        p.join().unwrap();
        stop.store(true, Ordering::Release);
        let seen = r.join().unwrap();
        let mut held = false;
        let mut next_keep = 0;
        let mut last_flip: Option<usize> = None;
        for m in &seen {
            match (m.kind(), m.channel().map(ToString::to_string)) {
                ("subscribe", Some(c)) if c == "flip" => {
                    assert!(!held);
                    held = true;
                }
                ("unsubscribe", Some(c)) if c == "flip" => {
                    assert!(held);
                    held = false;
                }
                ("message", Some(c)) if c == "flip" => {
                    assert!(held, "flip message outside its brackets");
                    let n = num(m);
                    assert!(last_flip.map_or(true, |l| n > l));
                    last_flip = Some(n);
                }
                ("message", Some(c)) if c == "keep" => {
                    assert_eq!(num(m), next_keep);
                    next_keep += 1;
                }
                ("subscribe", _) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(next_keep, 150_000);
        assert_eq!(sub.len(), 0);
    });
}

/// Broker dropped while receivers look (stream flowing, then the last
/// broker handle goes): every receiver ends with Disconnected after draining.
#[test]
fn broker_drop_while_receivers_look() {
    wait::within(module_path!(), || {
        for _ in 0..50 {
            let broker = Broker::new();
            let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
            sub.subscribe(["z"]).unwrap();
            let total = Arc::new(AtomicUsize::new(0));
            let mut hs = Vec::new();
            for _ in 0..2 {
                let sub = Arc::clone(&sub);
                let total = Arc::clone(&total);
                hs.push(thread::spawn(move || loop {
                    match sub.recv() {
                        Ok(_) => {
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }));
            }
            for i in 0..3000 {
                broker.publish("z", i.to_string());
            }
            drop(broker);
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(total.load(Ordering::Relaxed), 3000);
        }
    });
}

/// `recv_timeout` honours its deadline while nothing arrives, on a bounded
/// and on an unbounded subscriber, with CPU hogs on both cores.
#[test]
fn recv_timeout_deadline_under_load() {
    wait::within(module_path!(), || {
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&stop);
                thread::spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let broker = Broker::new();
        let u = broker.subscriber_builder().confirmations(false).build();
        let b = broker
            .subscriber_builder()
            .confirmations(false)
            .capacity(100)
            .overflow(Overflow::DropNewest)
            .build();
        u.subscribe(["t"]).unwrap();
        b.subscribe(["t"]).unwrap();
        let mut worst = Duration::ZERO;
        for sub in [&u, &b] {
            for _ in 0..20 {
                let t = Instant::now();
                assert!(sub.recv_timeout(Duration::from_millis(5)).is_err());
                worst = worst.max(t.elapsed());
            }
        }
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
        eprintln!("worst recv_timeout(5ms): {worst:?}");
        assert!(worst < Duration::from_millis(60), "{worst:?}");
    });
}
