//! No thread is starved of a subscriber's or a stripe's lock by another
//! that takes it in a tight loop (`len`, `stats`, `numsub`): the crate's
//! short-held locks spin, and a plain spin lock lets a thread that releases
//! and retakes it at once win it nearly every time. Each case must finish
//! far within its budget (about 30 times what it takes on a 2-core machine),
//! and within `PATIENCE` at all. (The lock's own unit tests check that it
//! excludes; these check what starvation would break, end to end: seen
//! failing, or passing only just, before starving threads went first.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/wait.rs"]
mod wait;
use wait::{within, PATIENCE};

use channelcast::{Broker, Overflow, Subscriber};

/// Far more than any case needs when nobody is starved (each takes 0.1 to
/// 0.3 s on a 2-core machine; starved, 9 s to over 30).
const BUDGET: Duration = Duration::from_secs(5);

/// Runs `work` while another thread calls `poll` in a loop; returns how
/// long `work` took.
fn beside_a_poller(poll: impl Fn() + Send + 'static, work: impl FnOnce()) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                poll();
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    work();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    poller.join().expect("the poller does not panic");
    took
}

#[test]
fn a_len_poller_does_not_starve_the_receiver() {
    let took = within("a receiver beside a len() poller", || {
        let broker = Broker::new();
        let sub = Arc::new(broker.subscriber_builder().confirmations(false).build());
        sub.subscribe(["c"]).unwrap();
        for i in 0..100_000 {
            broker.publish("c", format!("{i}"));
        }
        let polled = Arc::clone(&sub);
        beside_a_poller(
            move || {
                std::hint::black_box(polled.len());
            },
            || {
                for i in 0..100_000 {
                    let message = sub.recv_timeout(PATIENCE).expect("queued");
                    assert_eq!(message.payload(), Some(&format!("{i}").into()));
                }
            },
        )
    });
    assert!(took < BUDGET, "receiving took {took:?}");
}

#[test]
fn a_stats_poller_does_not_starve_a_blocking_pair() {
    let took = within("a Block publisher and its receiver beside stats()", || {
        let broker = Broker::new();
        let sub: Arc<Subscriber> = Arc::new(
            broker
                .subscriber_builder()
                .capacity(1)
                .overflow(Overflow::Block)
                .confirmations(false)
                .build(),
        );
        sub.subscribe(["c"]).unwrap();
        let polled = Arc::clone(&sub);
        beside_a_poller(
            move || {
                std::hint::black_box(polled.stats());
            },
            || {
                let receiver = {
                    let sub = Arc::clone(&sub);
                    thread::spawn(move || {
                        for _ in 0..20_000 {
                            sub.recv_timeout(PATIENCE).expect("published");
                        }
                    })
                };
                for i in 0..20_000 {
                    assert_eq!(broker.publish("c", format!("{i}")), 1);
                }
                receiver.join().expect("the receiver does not panic");
            },
        )
    });
    assert!(took < BUDGET, "20,000 messages took {took:?}");
}

#[test]
fn a_broker_stats_poller_does_not_starve_publishers() {
    let took = within("a publisher beside broker.stats()", || {
        // One stripe: the poller takes the publisher's lock every time.
        let broker: Broker = Broker::with_lock_stripes(1);
        let sub = broker.subscriber_builder().confirmations(false).build();
        sub.subscribe(["c"]).unwrap();
        let polled = broker.clone();
        beside_a_poller(
            move || {
                std::hint::black_box(polled.stats());
            },
            || {
                for i in 0..100_000 {
                    assert_eq!(broker.publish("c", format!("{i}")), 1);
                }
            },
        )
    });
    assert!(took < BUDGET, "100,000 publishes took {took:?}");
}
