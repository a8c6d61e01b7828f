//! Tests for dispatcher loops: stopping them from another thread (also when
//! a handler holds a `Broker`), the spawned form, why a loop ended, and lag
//! and eviction always reaching a handler or the report.

#[path = "common/wait.rs"]
mod wait;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;
use wait::within;

use channelcast::{Broker, Dispatcher, Ended, Message, Overflow, RunReport, Stopper};

/// Long enough for a loaded 2-core machine, short enough that a hang fails.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn run_until_stops_a_loop_whose_handler_holds_a_broker() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let stopper = Stopper::new();
    let mut dispatcher = Dispatcher::new();
    let echo = broker.clone();
    dispatcher.on_channel("ping", move |_| {
        echo.publish("pong", "!");
    });
    dispatcher.subscribe(&sub).unwrap();
    let pongs = broker.subscriber();
    pongs.subscribe(["pong"]).unwrap();
    pongs.recv().unwrap();

    let stop = stopper.clone();
    let running = thread::spawn(move || dispatcher.run_until(&sub, &stop));
    for _ in 0..3 {
        broker.publish("ping", "?");
        assert!(pongs.recv_timeout(PATIENCE).unwrap().is_delivery());
    }
    stopper.stop();
    let report = within("the stopped loop", move || running.join().unwrap());
    assert_eq!(
        report,
        RunReport {
            ended: Ended::Stopped,
            handled: 3
        }
    );
}

#[test]
fn a_stopper_stopped_before_the_loop_starts_ends_it_at_once() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["c"]).unwrap();
    broker.publish("c", "left queued");
    let stopper = Stopper::new();
    stopper.stop();
    stopper.stop(); // twice is harmless
    let mut dispatcher = Dispatcher::new();
    dispatcher.on_channel("c", |_| panic!("stopped loops handle nothing"));
    let report = dispatcher.run_until(&sub, &stopper);
    assert_eq!(report.ended, Ended::Stopped);
    assert_eq!(report.handled, 0);
    // What was queued stays in the subscriber.
    assert_eq!(sub.try_iter().filter(Message::is_delivery).count(), 1);
}

#[test]
fn run_until_reports_disconnection_and_eviction() {
    // Disconnected: the broker is gone and the queue drained.
    let broker = Broker::new();
    let sub = broker.subscriber();
    let mut dispatcher = Dispatcher::new();
    dispatcher.on_channel("c", |_| {});
    dispatcher.subscribe(&sub).unwrap();
    broker.publish("c", "1");
    broker.publish("c", "2");
    drop(broker);
    let report = dispatcher.run_until(&sub, &Stopper::new());
    assert_eq!((report.ended, report.handled), (Ended::Disconnected, 2));

    // Overflowed: evicted, with the lag report handled first.
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(2)
        .overflow(Overflow::Disconnect)
        .build();
    let missed = Arc::new(AtomicU64::new(0));
    let mut dispatcher = Dispatcher::new();
    let counter = Arc::clone(&missed);
    dispatcher.on_channel("c", |_| {}).on_lagged(move |n| {
        counter.fetch_add(n, Ordering::Relaxed);
    });
    dispatcher.subscribe(&sub).unwrap();
    for i in 0..5 {
        broker.publish("c", i.to_string());
    }
    let run = dispatcher.run(&sub);
    assert_eq!(run.ended, Ended::Overflowed);
    assert_eq!(run.handled, 2 + 1, "two deliveries and the lag report");
    // The third publish overflowed; the later ones no longer reach an
    // evicted subscriber (as in Redis, it holds nothing any more).
    assert_eq!(missed.load(Ordering::Relaxed), 1);
    drop(broker); // the broker outlived the loop: eviction ended it
}

#[test]
fn the_dispatcher_sees_every_loss_capacity_3_drop_oldest_100_publishes() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(3)
        .overflow(Overflow::DropOldest)
        .build();
    let missed = AtomicU64::new(0);
    let kept = Mutex::new(Vec::new());
    let mut dispatcher = Dispatcher::new();
    dispatcher
        .on_channel("ticks", |m| {
            kept.lock()
                .unwrap()
                .push(m.payload_str().unwrap().to_owned());
        })
        .on_lagged(|n| {
            missed.fetch_add(n, Ordering::Relaxed);
        });
    dispatcher.subscribe(&sub).unwrap();
    for i in 0..100 {
        assert_eq!(broker.publish("ticks", i.to_string()), 1);
    }
    drop(broker);
    let report = dispatcher.run(&sub);
    drop(dispatcher);
    assert_eq!(missed.into_inner(), 97);
    assert_eq!(kept.into_inner().unwrap(), ["97", "98", "99"]);
    assert_eq!(report.ended, Ended::Disconnected);
}

#[test]
fn without_on_lagged_a_loss_goes_to_the_unhandled_handler() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::DropNewest)
        .build();
    let fallback = Mutex::new(Vec::new());
    let mut dispatcher = Dispatcher::new();
    dispatcher
        .on_channel("c", |_| {})
        .on_unhandled(|m| fallback.lock().unwrap().push(m.clone()));
    dispatcher.subscribe(&sub).unwrap();
    for _ in 0..4 {
        broker.publish("c", "x");
    }
    drop(broker);
    let report = dispatcher.run(&sub);
    drop(dispatcher);
    assert_eq!(report.handled, 1);
    assert_eq!(
        fallback.into_inner().unwrap(),
        [Message::Lagged { missed: 3 }]
    );
}

#[test]
fn a_spawned_dispatcher_stops_and_joins_with_its_report() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let (seen_tx, seen) = mpsc::channel();
    let mut dispatcher = Dispatcher::new();
    let echo = broker.clone(); // keeps the broker alive from inside
    dispatcher.on_pattern("job.*", move |m| {
        echo.publish("done", "ok");
        seen_tx.send(m.channel().unwrap().to_string()).unwrap();
    });
    dispatcher.subscribe(&sub).unwrap();
    let running = dispatcher.spawn(sub);
    for i in 0..10 {
        broker.publish(format!("job.{i}"), "go");
    }
    for i in 0..10 {
        assert_eq!(seen.recv_timeout(PATIENCE).unwrap(), format!("job.{i}"));
    }
    assert!(!running.is_finished());
    let stopper = running.stopper();
    stopper.stop();
    let report = within("the spawned dispatcher", move || running.join());
    assert_eq!((report.ended, report.handled), (Ended::Stopped, 10));
    assert!(stopper.is_stopped());
}

#[test]
fn a_spawned_dispatcher_ends_by_itself_when_the_broker_goes() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let count = Arc::new(AtomicUsize::new(0));
    let mut dispatcher = Dispatcher::new();
    let counter = Arc::clone(&count);
    dispatcher.on_channel("c", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    dispatcher.subscribe(&sub).unwrap();
    let running = dispatcher.spawn(sub);
    for _ in 0..50 {
        broker.publish("c", "x");
    }
    drop(broker);
    let report = within("the dispatcher thread", move || running.join());
    assert_eq!((report.ended, report.handled), (Ended::Disconnected, 50));
    assert_eq!(count.load(Ordering::Relaxed), 50);
}

#[test]
fn dropping_the_thread_handle_stops_the_thread() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let mut dispatcher = Dispatcher::new();
    let held = broker.clone();
    dispatcher.on_channel("c", move |_| {
        held.publish("elsewhere", "x");
    });
    dispatcher.subscribe(&sub).unwrap();
    drop(dispatcher.spawn(sub));
    // The thread ends and drops its subscriber: "c" loses its subscriber.
    within("the dropped dispatcher thread", move || {
        while broker.numsub_one("c") != 0 {
            thread::sleep(Duration::from_millis(1));
        }
    });
}

#[test]
fn a_stop_is_prompt_while_publishers_flood_the_loop() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let mut dispatcher = Dispatcher::new();
    dispatcher.on_channel("flood", |_| {});
    dispatcher.subscribe(&sub).unwrap();
    let running = dispatcher.spawn(sub);
    let stopper = Stopper::new();
    let flood = {
        let (broker, stopper) = (broker.clone(), stopper.clone());
        thread::spawn(move || {
            let mut sent = 0_u64;
            while !stopper.is_stopped() {
                broker.publish("flood", "x");
                sent += 1;
            }
            sent
        })
    };
    thread::sleep(Duration::from_millis(50));
    running.stop();
    let report = within("a flooded dispatcher", move || running.join());
    stopper.stop();
    let sent = flood.join().unwrap();
    assert_eq!(report.ended, Ended::Stopped);
    assert!(report.handled as u64 <= sent);
}

#[test]
fn join_reraises_a_handler_panic() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let mut dispatcher = Dispatcher::new();
    dispatcher.on_channel("c", |_| panic!("handler failed on purpose"));
    dispatcher.subscribe(&sub).unwrap();
    let running = dispatcher.spawn(sub);
    broker.publish("c", "boom");
    let outcome = within("the panicking dispatcher", move || {
        panic::catch_unwind(AssertUnwindSafe(move || running.join()))
    });
    let panic = outcome.expect_err("join re-raises the handler's panic");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"handler failed on purpose")
    );
}

#[test]
fn a_plain_loop_stops_through_select_on_ready_and_the_signal() {
    use channelcast::crossbeam_channel::select;
    use channelcast::TryRecvError;

    let broker = Broker::new();
    let sub = Arc::new(broker.subscriber());
    sub.subscribe(["c"]).unwrap();
    let stopper = Stopper::new();
    let worker = {
        let (sub, signal, held) = (Arc::clone(&sub), stopper.clone(), broker.clone());
        thread::spawn(move || {
            let _keeps_the_broker_alive = held;
            let mut got = 0;
            loop {
                select! {
                    recv(signal.signal()) -> _ => return got,
                    recv(sub.ready()) -> _ => loop {
                        match sub.try_recv() {
                            Ok(msg) => got += usize::from(msg.is_delivery()),
                            Err(TryRecvError::Empty) => break,
                            Err(_) => return got,
                        }
                    },
                }
            }
        })
    };
    for _ in 0..5 {
        broker.publish("c", "x");
    }
    within("the worker draining", {
        let sub = Arc::clone(&sub);
        move || {
            while sub.stats().received < 5 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    stopper.stop();
    let got = within("the stopped plain loop", move || worker.join().unwrap());
    assert_eq!(got, 5);
}

#[test]
fn retained_messages_reach_the_handler_of_the_name_that_asked_for_them() {
    let broker = Broker::new();
    broker.retain_last("status.a", 1);
    broker.publish("status.a", "up");
    let sub = broker.subscriber();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut dispatcher = Dispatcher::new();
    let log = Arc::clone(&seen);
    dispatcher.on_pattern("status.*", move |msg: &Message| {
        log.lock()
            .unwrap()
            .push(format!("{}:{}", msg.kind(), msg.payload_str().unwrap()));
    });
    sub.psubscribe_with_history(["status.*"]).unwrap();
    broker.publish("status.a", "down");
    while let Ok(msg) = sub.try_recv() {
        dispatcher.dispatch(&msg);
    }
    assert_eq!(*seen.lock().unwrap(), ["retained:up", "pmessage:down"]);
}
