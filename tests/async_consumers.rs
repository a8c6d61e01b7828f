//! Tests for async consumers on tokio's current-thread and multi-thread
//! runtimes: many tasks awaiting subscribers, cancellation mid-await, runtime
//! shutdown with brokers alive, the delivery guarantees through
//! `recv_async`, the end of `stream()`, and publishers that meet a blocking
//! subscriber.
//!
//! Every wait is time-boxed (a tokio timeout inside the runtime, or a thread
//! and `recv_timeout` around it), so a hang fails the test instead of
//! hanging the run.

#[path = "common/wait.rs"]
mod wait;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{mpsc, Arc, Barrier};
use std::task::Poll;
use std::thread;
use std::time::Duration;
use wait::within;

use channelcast::{Broker, Message, MessageStream, Overflow, RecvError, Subscriber};
use futures_core::{FusedStream, Stream};
use tokio::runtime::{Builder, Runtime};

/// Long enough for a loaded 2-core machine, short enough that a hang fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Both runtime flavours, each with timers enabled.
fn runtimes() -> [(&'static str, Runtime); 2] {
    let current = Builder::new_current_thread().enable_time().build();
    let multi = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build();
    [
        ("current-thread", current.expect("a runtime")),
        ("multi-thread", multi.expect("a runtime")),
    ]
}

/// Runs `test` to completion on each runtime flavour, failing if it takes
/// longer than [`PATIENCE`].
fn on_both_runtimes<F: Future<Output = ()>>(test: impl Fn() -> F) {
    for (flavour, runtime) in runtimes() {
        let outcome = runtime.block_on(async { tokio::time::timeout(PATIENCE, test()).await });
        assert!(
            outcome.is_ok(),
            "{flavour} runtime: did not finish within {PATIENCE:?}"
        );
    }
}

/// The next item of a stream (`StreamExt::next`, without futures-util).
async fn next(stream: &mut MessageStream<'_>) -> Option<Message> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Receives with `recv_async` until the stream ends; returns the payloads of
/// the deliveries as text.
async fn payloads_until_the_end(sub: &Subscriber) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(msg) = sub.recv_async().await {
        if let Some(text) = msg.payload_str() {
            seen.push(text.to_owned());
        }
    }
    seen
}

// ---- many tasks -------------------------------------------------------------

#[test]
fn many_tasks_each_awaiting_a_subscriber_receive_everything_in_order() {
    const TASKS: usize = 200;
    const MESSAGES: usize = 300;
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let mut tasks = Vec::new();
        for i in 0..TASKS {
            let sub = broker.subscriber_builder().confirmations(false).build();
            if i % 3 == 0 {
                sub.psubscribe(["feed.*"]).unwrap();
            } else {
                sub.subscribe(["feed.1"]).unwrap();
            }
            tasks.push(tokio::spawn(
                async move { payloads_until_the_end(&sub).await },
            ));
        }
        // The publisher is a plain thread, as a request handler would be.
        let publisher = thread::spawn(move || {
            for n in 0..MESSAGES {
                assert_eq!(broker.publish("feed.1", n.to_string()), TASKS);
                if n % 50 == 0 {
                    thread::yield_now();
                }
            }
            // Dropping the last broker ends every task's stream.
        });
        let expected: Vec<String> = (0..MESSAGES).map(|n| n.to_string()).collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), expected);
        }
        publisher.join().unwrap();
    });
}

// ---- cancellation -----------------------------------------------------------

#[test]
fn a_recv_async_cancelled_by_a_timeout_or_select_loses_no_message() {
    const MESSAGES: usize = 2_000;
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let sub = broker.subscriber_builder().confirmations(false).build();
        sub.subscribe(["c"]).unwrap();
        let publisher = thread::spawn(move || {
            for n in 0..MESSAGES {
                broker.publish("c", n.to_string());
                if n % 100 == 0 {
                    thread::sleep(Duration::from_millis(2)); // let waits time out
                }
            }
        });
        let (mut got, mut cancelled) = (Vec::new(), 0);
        loop {
            // Alternate the two ways a task drops a pending receive.
            let received = if got.len() % 2 == 0 {
                tokio::time::timeout(Duration::from_micros(200), sub.recv_async())
                    .await
                    .ok()
            } else {
                tokio::select! {
                    msg = sub.recv_async() => Some(msg),
                    () = tokio::time::sleep(Duration::from_micros(200)) => None,
                }
            };
            match received {
                None => cancelled += 1,
                Some(Ok(msg)) => got.push(msg.payload_str().unwrap().parse::<usize>().unwrap()),
                Some(Err(RecvError::Disconnected)) => break,
                Some(Err(other)) => panic!("{other}"),
            }
        }
        publisher.join().unwrap();
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>(), "lost or reordered");
        assert!(cancelled > 0, "no receive was ever cancelled");
    });
}

#[test]
fn a_woken_recv_async_dropped_before_its_next_poll_leaves_the_message_queued() {
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let sub = broker.subscriber_builder().confirmations(false).build();
        sub.subscribe(["c"]).unwrap();
        {
            let mut pending = pin!(sub.recv_async());
            let first = poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await;
            assert!(first.is_pending());
            broker.publish("c", "kept"); // wakes the future …
        } // … which is dropped without being polled again.
        assert_eq!(sub.try_recv().unwrap().payload_str(), Some("kept"));
        // A later receive still works and is woken by the next publish.
        let later = tokio::spawn({
            let broker = broker.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                broker.publish("c", "later");
            }
        });
        assert_eq!(sub.recv_async().await.unwrap().payload_str(), Some("later"));
        later.await.unwrap();
    });
}

// ---- runtime shutdown -------------------------------------------------------

#[test]
fn shutting_down_a_runtime_with_tasks_awaiting_live_brokers_does_not_hang() {
    for flavour in ["current-thread", "multi-thread"] {
        let broker = Broker::new();
        // Subscribers shared with the tasks, so they outlive the runtime.
        let subs: Vec<Arc<Subscriber>> = (0..20)
            .map(|_| {
                let sub = broker.subscriber_builder().confirmations(false).build();
                sub.subscribe(["c"]).unwrap();
                Arc::new(sub)
            })
            .collect();
        let for_tasks = subs.clone();
        let (awaiting_tx, awaiting) = mpsc::channel();
        within("dropping the runtime", move || {
            let runtime = match flavour {
                "current-thread" => Builder::new_current_thread().build(),
                _ => Builder::new_multi_thread().worker_threads(2).build(),
            }
            .unwrap();
            runtime.block_on(async {
                for sub in for_tasks {
                    let awaiting_tx = awaiting_tx.clone();
                    tokio::spawn(async move {
                        awaiting_tx.send(()).unwrap();
                        let _ = sub.recv_async().await; // never resolves here
                    });
                }
                let mut started = 0;
                while started < 20 {
                    started += awaiting.try_iter().count();
                    tokio::task::yield_now().await;
                }
                // Give every task the chance to register its waker.
                tokio::task::yield_now().await;
            });
            drop(runtime); // drops the pending futures
        });
        // The brokers are alive, the runtime is gone: publishing still works
        // and wakes nothing that is dead.
        assert_eq!(broker.publish("c", "after"), 20, "{flavour}");
        for sub in &subs {
            assert_eq!(
                sub.recv_timeout(PATIENCE).unwrap().payload_str(),
                Some("after")
            );
        }
    }
}

#[test]
fn a_runtime_dropped_mid_stream_with_subscribers_inside_its_tasks_unsubscribes_them() {
    let broker = Broker::new();
    let (subscribed_tx, subscribed) = mpsc::channel();
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for _ in 0..10 {
        let (broker, subscribed_tx) = (broker.clone(), subscribed_tx.clone());
        runtime.spawn(async move {
            let sub = broker.subscriber();
            sub.subscribe(["c"]).unwrap();
            drop(broker); // the task holds only its subscriber
            subscribed_tx.send(()).unwrap();
            let mut stream = sub.stream();
            while next(&mut stream).await.is_some() {}
        });
    }
    for _ in 0..10 {
        subscribed
            .recv_timeout(PATIENCE)
            .expect("every task subscribed");
    }
    assert_eq!(broker.publish("c", "x"), 10);
    within("shutting the runtime down", move || {
        runtime.shutdown_timeout(Duration::from_secs(5));
    });
    // The tasks' subscribers were dropped with them.
    assert_eq!(broker.numsub_one("c"), 0);
    assert_eq!(broker.publish("c", "y"), 0);
}

// ---- guarantees through the async path --------------------------------------

#[test]
fn async_subscribers_see_one_order_per_channel_and_each_publisher_in_order() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 250;
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let sub = broker.subscriber_builder().confirmations(false).build();
            match i % 3 {
                0 => sub.subscribe(["log"]).unwrap(),
                1 => sub.psubscribe(["l*"]).unwrap(),
                _ => sub.psubscribe(["?og"]).unwrap(),
            };
            tasks.push(tokio::spawn(
                async move { payloads_until_the_end(&sub).await },
            ));
        }
        let start = Arc::new(Barrier::new(PUBLISHERS));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (broker, start) = (broker.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    for n in 0..EACH {
                        broker.publish("log", format!("{p}:{n}"));
                    }
                })
            })
            .collect();
        drop(broker);
        let mut streams = Vec::new();
        for task in tasks {
            streams.push(task.await.unwrap());
        }
        for publisher in publishers {
            publisher.join().unwrap();
        }
        let reference = &streams[0];
        assert_eq!(reference.len(), PUBLISHERS * EACH);
        for stream in &streams[1..] {
            assert_eq!(stream, reference, "two subscribers disagree on the order");
        }
        for p in 0..PUBLISHERS {
            let own: Vec<usize> = (reference.iter())
                .filter_map(|m| m.strip_prefix(&format!("{p}:")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                own,
                (0..EACH).collect::<Vec<_>>(),
                "publisher {p} out of order"
            );
        }
    });
}

#[test]
fn through_recv_async_confirmations_bracket_each_channels_messages() {
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let sub = Arc::new(broker.subscriber());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publisher = {
            let (broker, stop) = (broker.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0_u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    broker.publish(format!("ch{}", n % 4), n.to_string());
                    n += 1;
                }
            })
        };
        // Subscribe and unsubscribe while messages flow, receiving async.
        let changer = {
            let sub = Arc::clone(&sub);
            thread::spawn(move || {
                for round in 0..20 {
                    let name = format!("ch{}", round % 4);
                    sub.subscribe([name.as_str()]).unwrap();
                    thread::sleep(Duration::from_micros(300));
                    sub.unsubscribe([name.as_str()]).unwrap();
                }
            })
        };
        let mut held = std::collections::HashSet::new();
        let mut confirmations = 0;
        let mut messages = 0;
        while confirmations < 40 {
            let msg = tokio::time::timeout(PATIENCE, sub.recv_async())
                .await
                .expect("a confirmation or message in time")
                .unwrap();
            match msg {
                Message::Subscribe { channel, .. } => {
                    confirmations += 1;
                    held.insert(channel);
                }
                Message::Unsubscribe { channel, .. } => {
                    confirmations += 1;
                    held.remove(&channel.unwrap());
                }
                Message::Message { channel, .. } => {
                    messages += 1;
                    assert!(
                        held.contains(&channel),
                        "{channel}: a message outside its brackets"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        changer.join().unwrap();
        publisher.join().unwrap();
        // Anything after the last unsubscribe is a bug too.
        assert!(sub.try_iter().all(|m| !m.is_delivery()));
        assert!(messages > 0, "the test saw no message at all");
    });
}

// ---- the stream -------------------------------------------------------------

#[test]
fn the_stream_ends_after_the_last_broker_is_dropped_and_the_queue_is_drained() {
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let sub = broker.subscriber();
        sub.subscribe(["news"]).unwrap();
        for n in 0..5 {
            broker.publish("news", n.to_string());
        }
        let late = broker.clone();
        drop(broker);
        let mut stream = sub.stream();
        let dropper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            late.publish("news", "last");
            drop(late); // the last handle, while the stream is pending
        });
        let mut items = Vec::new();
        while let Some(msg) = next(&mut stream).await {
            items.push(msg.to_string());
        }
        dropper.join().unwrap();
        assert_eq!(
            items,
            [
                "subscribe news (1)",
                "message news: 0",
                "message news: 1",
                "message news: 2",
                "message news: 3",
                "message news: 4",
                "message news: last",
            ]
        );
        assert!(stream.is_terminated());
        assert!(next(&mut stream).await.is_none(), "stays ended");
        assert_eq!(sub.try_recv(), Err(channelcast::TryRecvError::Disconnected));
    });
}

#[test]
fn the_stream_of_an_evicted_subscriber_ends_after_its_lag_report() {
    on_both_runtimes(|| async {
        let broker = Broker::new();
        let sub = broker
            .subscriber_builder()
            .capacity(2)
            .overflow(Overflow::Disconnect)
            .confirmations(false)
            .build();
        sub.subscribe(["feed"]).unwrap();
        for n in 0..3 {
            broker.publish("feed", n.to_string());
        }
        let mut stream = sub.stream();
        let mut items = Vec::new();
        while let Some(msg) = next(&mut stream).await {
            items.push(msg);
        }
        assert_eq!(items.len(), 3);
        assert_eq!(items[2], Message::Lagged { missed: 1 });
        assert_eq!(sub.try_recv(), Err(channelcast::TryRecvError::Overflowed));
        drop(broker);
    });
}

// ---- publishers that may meet a blocking subscriber -------------------------

#[test]
fn spawn_blocking_publishers_feed_a_block_subscriber_on_a_current_thread_runtime() {
    const MESSAGES: usize = 200;
    let runtime = Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let broker = Broker::new();
        // Capacity 1 with Block: a publish waits until the consumer task
        // makes room. On a current-thread runtime a publish made on the
        // runtime thread would wait for a task that can never run;
        // spawn_blocking moves the waiting to the blocking pool.
        let sub = broker
            .subscriber_builder()
            .capacity(1)
            .overflow(Overflow::Block)
            .confirmations(false)
            .build();
        sub.subscribe(["jobs"]).unwrap();
        let consumer = tokio::spawn(async move { payloads_until_the_end(&sub).await });
        let producer = tokio::task::spawn_blocking(move || {
            for n in 0..MESSAGES {
                broker.publish("jobs", n.to_string());
            }
        });
        let both = async {
            producer.await.unwrap();
            consumer.await.unwrap()
        };
        let got = tokio::time::timeout(PATIENCE, both)
            .await
            .expect("no deadlock");
        assert_eq!(
            got,
            (0..MESSAGES).map(|n| n.to_string()).collect::<Vec<_>>()
        );
    });
}
