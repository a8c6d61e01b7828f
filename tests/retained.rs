//! Tests for retained messages and late joiners (beyond Redis): the exact
//! hand-over under concurrent publishers, pattern joiners, clearing, the
//! total limits, bounded joiners, and memory given back.
//!
//! Every wait is time-boxed, so a hang fails the test instead of stalling
//! the suite. The memory figures come from a counting allocator that counts
//! per thread, so the other tests of this binary, running in parallel, do
//! not disturb them; see them with
//! `cargo test --release --test retained -- --nocapture memory`.

// `GlobalAlloc` is an unsafe trait: implementing it is the only unsafe code
// here, and it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channelcast::{Broker, Message, Name, Overflow, RecvTimeoutError, Source, Subscriber};

// ---- a per-thread counting allocator --------------------------------------------

thread_local! {
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(delta: i64) {
    // During thread teardown the slot may be gone: those bytes are not ours.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn size(bytes: usize) -> i64 {
    i64::try_from(bytes).expect("fits in i64")
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments and
// only updates a thread-local counter on the side (a const-initialized
// `Cell`, which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add_live(size(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add_live(size(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        add_live(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add_live(size(new_size) - size(layout.size()));
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.with(Cell::get)
}

// ---- helpers ---------------------------------------------------------------------

/// The longest any single wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `work` on its own thread and returns a receiver for its result, so
/// that waiting for it can be time-boxed.
fn spawn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> crossbeam_channel::Receiver<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx
}

fn join<T>(done: &crossbeam_channel::Receiver<T>, what: &str) -> T {
    done.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

/// Waits (time-boxed) until `ready` holds.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// The stream as short strings: `r:channel=payload` for a retained message,
/// `channel=payload` for a live one, `lag:N`, or `kind:name`.
fn stream(sub: &Subscriber) -> Vec<String> {
    sub.try_iter().map(|m| show(&m)).collect()
}

fn show(m: &Message) -> String {
    match m {
        Message::Lagged { missed } => format!("lag:{missed}"),
        Message::Retained {
            channel, payload, ..
        } => format!("r:{channel}={}", std::str::from_utf8(payload).unwrap()),
        m if m.is_delivery() => format!("{}={}", m.channel().unwrap(), m.payload_str().unwrap()),
        m => format!(
            "{}:{}",
            m.kind(),
            m.channel()
                .or(m.pattern())
                .map_or("-".into(), Name::to_string)
        ),
    }
}

fn payloads(items: &[Bytes]) -> Vec<&str> {
    items
        .iter()
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect()
}

// ---- the basics --------------------------------------------------------------------

#[test]
fn a_late_joiner_gets_the_retained_messages_right_after_its_confirmation() {
    let broker = Broker::new();
    broker.retain_last("config", 2);
    for v in ["v1", "v2", "v3"] {
        assert_eq!(broker.publish("config", v), 0);
    }
    let late = broker.subscriber();
    assert_eq!(late.subscribe_with_history(["config", "other"]).unwrap(), 2);
    broker.publish("config", "v4");
    assert_eq!(
        stream(&late),
        [
            "subscribe:config",
            "r:config=v2",
            "r:config=v3",
            "subscribe:other",
            "config=v4"
        ]
    );
    // Marked, and sourced from the subscription that asked for them.
    late.unsubscribe(["other"]).unwrap();
    late.try_iter().for_each(drop);
    let again = broker.subscriber();
    again.subscribe_with_history(["config"]).unwrap();
    again.recv().unwrap();
    let retained = again.recv().unwrap();
    assert!(retained.is_retained() && retained.is_delivery());
    assert_eq!(retained.kind(), "retained");
    assert_eq!(retained.source(), Some(Source::Channel("config".into())));
    assert_eq!(retained.payload_str(), Some("v3"));
    assert_eq!(retained.pattern(), None);
}

#[test]
fn retention_is_off_by_default_and_plain_subscribes_get_no_history() {
    let broker = Broker::new();
    broker.publish("c", "gone");
    let sub = broker.subscriber();
    sub.subscribe_with_history(["c"]).unwrap();
    sub.psubscribe_with_history(["*"]).unwrap();
    assert_eq!(stream(&sub), ["subscribe:c", "psubscribe:*"]);
    let stats = broker.stats();
    assert_eq!(
        (stats.retained, stats.retained_channels, stats.replayed),
        (0, 0, 0)
    );

    broker.retain_last("c", 5);
    broker.publish("c", "kept");
    let plain = broker.subscriber();
    plain.subscribe(["c"]).unwrap();
    plain.psubscribe(["*"]).unwrap();
    assert_eq!(stream(&plain), ["subscribe:c", "psubscribe:*"]);
}

#[test]
fn retention_makes_no_channel_active() {
    let broker = Broker::new();
    broker.retain_last_matching("*", 3);
    broker.publish("a", "1");
    broker.spublish("s", "1");
    assert!(broker.channels().is_empty());
    assert_eq!(broker.numsub(["a"]), [("a".into(), 0)]);
    assert!(broker.shard_channels().is_empty());
    assert_eq!(broker.numpat(), 0);
    assert_eq!(broker.stats().retained, 1); // glob rules cover channels only
}

#[test]
fn a_name_already_held_is_confirmed_again_without_history() {
    let broker = Broker::new();
    broker.retain_last("c", 3);
    broker.publish("c", "1");
    let sub = broker.subscriber();
    sub.subscribe_with_history(["c"]).unwrap();
    sub.subscribe_with_history(["c"]).unwrap();
    sub.psubscribe_with_history(["c*"]).unwrap();
    sub.psubscribe_with_history(["c*"]).unwrap();
    assert_eq!(
        stream(&sub),
        [
            "subscribe:c",
            "r:c=1",
            "subscribe:c",
            "psubscribe:c*",
            "r:c=1",
            "psubscribe:c*"
        ]
    );
}

#[test]
fn the_largest_count_among_covering_rules_applies_and_changes_trim_at_once() {
    let broker = Broker::new();
    broker.retain_last_matching("news.*", 2);
    broker.retain_last("news.art", 4);
    for i in 0..6 {
        broker.publish("news.art", i.to_string());
        broker.publish("news.sport", i.to_string());
    }
    assert_eq!(payloads(&broker.retained("news.art")), ["2", "3", "4", "5"]);
    assert_eq!(payloads(&broker.retained("news.sport")), ["4", "5"]);
    broker.retain_last("news.art", 0); // the glob rule still covers it
    assert_eq!(payloads(&broker.retained("news.art")), ["4", "5"]);
    broker.retain_last_matching("news.*", 1);
    assert_eq!(payloads(&broker.retained("news.sport")), ["5"]);
    broker.retain_last_matching("news.*", 0);
    assert!(broker.retained("news.art").is_empty());
    assert_eq!(broker.stats().retained_channels, 0);
    broker.publish("news.art", "after");
    assert!(broker.retained("news.art").is_empty());
}

#[test]
fn shard_channels_retain_in_their_own_namespace() {
    let broker = Broker::new();
    broker.retain_last_shard("orders", 2);
    broker.spublish("orders", "s1");
    broker.spublish("orders", "s2");
    broker.spublish("orders", "s3");
    broker.publish("orders", "not a shard publish");
    assert!(broker.retained("orders").is_empty());
    let sub = broker.subscriber();
    sub.ssubscribe_with_history(["orders"]).unwrap();
    sub.subscribe_with_history(["orders"]).unwrap();
    broker.spublish("orders", "s4");
    let items: Vec<_> = sub.try_iter().collect();
    assert_eq!(
        items.iter().map(show).collect::<Vec<_>>(),
        [
            "ssubscribe:orders",
            "r:orders=s2",
            "r:orders=s3",
            "subscribe:orders",
            "orders=s4"
        ]
    );
    assert_eq!(items[1].source(), Some(Source::Shard("orders".into())));
    assert_eq!(broker.clear_retained_shard("orders"), 2);
    assert_eq!(broker.stats().retained, 0);
}

// ---- patterns ----------------------------------------------------------------------

#[test]
fn a_pattern_joiner_gets_every_matching_retained_channel_exactly_once() {
    let broker = Broker::new();
    broker.retain_last_matching("*", 3);
    for i in (0..50).rev() {
        for n in 0..i % 5 {
            broker.publish(format!("room.{i:02}"), format!("{i}:{n}"));
        }
        broker.publish(format!("hall.{i:02}"), "not matched");
    }
    let sub = broker.subscriber();
    sub.psubscribe_with_history(["room.*", "room.1?"]).unwrap();
    let items: Vec<_> = sub.try_iter().collect();

    let mut expected = vec!["psubscribe:room.*".to_string()];
    for i in 0..50_usize {
        for n in (i % 5).saturating_sub(3)..i % 5 {
            expected.push(format!("r:room.{i:02}={i}:{n}"));
        }
    }
    expected.push("psubscribe:room.1?".into());
    for i in 10..20_usize {
        for n in (i % 5).saturating_sub(3)..i % 5 {
            expected.push(format!("r:room.{i:02}={i}:{n}"));
        }
    }
    assert_eq!(items.iter().map(show).collect::<Vec<_>>(), expected);
    let sources: Vec<_> = items
        .iter()
        .filter(|m| m.is_retained())
        .map(|m| m.pattern().unwrap().to_string())
        .collect();
    let second: usize = (10..20_usize).map(|i| (i % 5).min(3)).sum();
    let (all, tens) = sources.split_at(sources.len() - second);
    assert!(all.iter().all(|p| p == "room.*"));
    assert!(tens.iter().all(|p| p == "room.1?"));
    assert_eq!(broker.stats().replayed, expected.len() as u64 - 2);
}

// ---- clearing --------------------------------------------------------------------

#[test]
fn clearing_drops_what_is_retained_and_keeps_the_rules() {
    let broker = Broker::new();
    broker.retain_last_matching("c.*", 10);
    for i in 0..4 {
        broker.publish("c.a", i.to_string());
        broker.publish("c.b", i.to_string());
    }
    assert_eq!(broker.stats().retained, 8);
    assert_eq!(broker.clear_retained("c.a"), 4);
    assert_eq!(broker.clear_retained("c.a"), 0);
    assert_eq!(broker.clear_retained("unknown"), 0);
    let sub = broker.subscriber();
    sub.subscribe_with_history(["c.a"]).unwrap();
    assert_eq!(stream(&sub), ["subscribe:c.a"]);

    broker.publish("c.a", "again");
    assert_eq!(payloads(&broker.retained("c.a")), ["again"]);
    assert_eq!(broker.clear_all_retained(), 5);
    let stats = broker.stats();
    assert_eq!((stats.retained, stats.retained_channels), (0, 0));
    assert!(broker.retained("c.b").is_empty());
}

// ---- limits ------------------------------------------------------------------------

#[test]
fn the_count_limit_makes_a_channel_give_up_its_own_oldest() {
    let broker = Broker::new();
    broker.retain_last_matching("*", 5);
    broker.limit_retained(4);
    for i in 0..3 {
        broker.publish("a", format!("a{i}"));
    }
    broker.publish("b", "b0");
    // Full: "b" can only grow by giving up its own messages.
    broker.publish("b", "b1");
    assert_eq!(payloads(&broker.retained("a")), ["a0", "a1", "a2"]);
    assert_eq!(payloads(&broker.retained("b")), ["b1"]);
    broker.publish("c", "c0"); // nothing of its own to give up: not retained
    assert!(broker.retained("c").is_empty());
    let stats = broker.stats();
    assert_eq!(
        (
            stats.retained,
            stats.retained_channels,
            stats.retained_evicted
        ),
        (4, 2, 2)
    );

    // Lowering the cap evicts at once; raising it lets stores grow again.
    broker.limit_retained(2);
    assert_eq!(broker.stats().retained, 2);
    broker.limit_retained(usize::MAX);
    broker.publish("c", "c1");
    assert_eq!(payloads(&broker.retained("c")), ["c1"]);

    // What a channel keeps under the cap is still its latest publishes.
    broker.limit_retained(3);
    broker.clear_all_retained();
    for i in 0..10 {
        broker.publish("d", format!("d{i}"));
    }
    let sub = broker.subscriber();
    sub.subscribe_with_history(["d"]).unwrap();
    assert_eq!(stream(&sub), ["subscribe:d", "r:d=d7", "r:d=d8", "r:d=d9"]);
}

#[test]
fn the_byte_limit_weighs_payloads_and_reports_bytes() {
    let broker = Broker::new();
    broker.retain_last_matching("*", 100);
    broker.publish("a", "12345");
    broker.limit_retained_bytes(10); // counts what is already retained
    assert_eq!(broker.stats().retained_bytes, 5);
    broker.publish("a", "6789");
    assert_eq!(broker.stats().retained_bytes, 9);
    broker.publish("a", "ab"); // 11 > 10: "a" gives up "12345"
    assert_eq!(payloads(&broker.retained("a")), ["6789", "ab"]);
    broker.publish("b", "far too large for the cap");
    assert!(broker.retained("b").is_empty());
    let stats = broker.stats();
    assert_eq!(
        (stats.retained, stats.retained_bytes, stats.retained_evicted),
        (2, 6, 2)
    );
    assert_eq!(broker.clear_retained("a"), 2);
    assert_eq!(broker.stats().retained_bytes, 0);
}

// ---- bounded joiners -----------------------------------------------------------------

fn bounded(broker: &Broker, capacity: usize, policy: Overflow) -> Subscriber {
    broker
        .subscriber_builder()
        .capacity(capacity)
        .overflow(policy)
        .build()
}

#[test]
fn retained_messages_count_against_the_bound_and_lag_is_reported() {
    let broker = Broker::new();
    broker.retain_last("c", 5);
    for i in 0..5 {
        broker.publish("c", i.to_string());
    }

    let newest = bounded(&broker, 2, Overflow::DropNewest);
    newest.subscribe_with_history(["c"]).unwrap();
    assert_eq!(stream(&newest), ["subscribe:c", "r:c=0", "r:c=1", "lag:3"]);
    assert_eq!(newest.stats().dropped, 3);
    assert_eq!(newest.stats().received, 2);

    let oldest = bounded(&broker, 2, Overflow::DropOldest);
    oldest.subscribe_with_history(["c"]).unwrap();
    assert_eq!(stream(&oldest), ["subscribe:c", "lag:3", "r:c=3", "r:c=4"]);
    assert_eq!(oldest.stats().dropped, 3);

    // A blocking policy never makes the joiner's own call wait, and a
    // Disconnect subscriber is not evicted by its history.
    let mut kept: std::collections::VecDeque<String> = (0..5).map(|i| i.to_string()).collect();
    let mut counted = 0;
    for policy in [
        Overflow::Block,
        Overflow::BlockFor(Duration::from_secs(30)),
        Overflow::Disconnect,
    ] {
        let sub = bounded(&broker, 2, policy);
        let done = spawn({
            let sub = Arc::new(sub);
            move || {
                sub.subscribe_with_history(["c"]).unwrap();
                sub
            }
        });
        let sub = join(&done, "a bounded joiner's subscribe");
        assert_eq!(
            stream(&sub),
            [
                "subscribe:c".to_string(),
                format!("r:c={}", kept[0]),
                format!("r:c={}", kept[1]),
                "lag:3".into()
            ]
        );
        assert_eq!(broker.numsub(["c"])[0].1, 3);
        counted += broker.publish("c", "live");
        kept.pop_front();
        kept.push_back("live".into());
        assert_eq!(stream(&sub), ["c=live"]);
    }

    // The pattern form goes through the same bound.
    let pattern = bounded(&broker, 1, Overflow::DropNewest);
    pattern.psubscribe_with_history(["c*"]).unwrap();
    assert_eq!(stream(&pattern), ["psubscribe:c*", "r:c=3", "lag:4"]);

    // Replays are counted apart from publishes, and everything adds up.
    let stats = broker.stats();
    assert_eq!(counted, 9);
    assert_eq!(stats.replayed, 5 + 5 + 3 * 5 + 5);
    assert_eq!(
        stats.delivered + stats.dropped,
        counted as u64 + stats.replayed
    );
}

// ---- a publish that waits for a bounded subscriber ---------------------------------

/// Checks one subscription's view of one channel against the channel's
/// publishes `all`: retained messages first, then live ones, together a
/// run of consecutive publishes; returns (first index, retained count).
fn check_run(all: &[Bytes], sequence: &[(bool, Bytes)], what: &str) -> (usize, usize) {
    let first = all
        .iter()
        .position(|p| *p == sequence[0].1)
        .unwrap_or_else(|| panic!("{what}: a delivery nobody published"));
    let want = all[first..].iter().map(Some).chain(std::iter::repeat(None));
    if let Some((at, ((_, got), want))) = sequence
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, ((_, got), want))| Some(got) != *want)
    {
        panic!("{what}: not a run of consecutive publishes: item {at} is {got:?}, not {want:?}");
    }
    let retained = sequence.iter().take_while(|(r, _)| *r).count();
    assert!(
        sequence[retained..].iter().all(|(r, _)| !r),
        "{what}: a retained message after a live one"
    );
    (first, retained)
}

/// Per subscription and channel: (retained?, payload), in stream order.
fn by_source(items: &[Message]) -> HashMap<(Source, Name), Vec<(bool, Bytes)>> {
    let mut seen: HashMap<(Source, Name), Vec<(bool, Bytes)>> = HashMap::new();
    for m in items {
        assert!(!matches!(m, Message::Lagged { .. }), "nothing may be lost");
        if m.is_delivery() {
            let key = (m.source().unwrap(), m.channel().unwrap().clone());
            seen.entry(key)
                .or_default()
                .push((m.is_retained(), m.payload().unwrap().clone()));
        }
    }
    seen
}

#[test]
fn a_pattern_joiner_during_a_publish_still_delivering_gets_it_once() {
    let broker = Broker::new();
    broker.retain_last("c", 10);
    // `full` makes the next publish on "c" wait, after it recorded itself.
    let full = Arc::new(bounded(&broker, 1, Overflow::Block));
    full.subscribe(["c"]).unwrap();
    full.recv().unwrap();
    // Queue-fed (bounded), so the waiting publish delivers to it too.
    let joiner = bounded(&broker, 1_000, Overflow::DropNewest);
    joiner.subscribe(["c"]).unwrap();
    broker.publish("c", "0");
    assert_eq!(stream(&joiner), ["subscribe:c", "c=0"]);

    let publisher = spawn({
        let broker = broker.clone();
        move || broker.publish("c", "1")
    });
    // Reads `full` a while later, whatever happens here, so the publish
    // always ends.
    let reader = spawn({
        let full = Arc::clone(&full);
        move || {
            thread::sleep(Duration::from_millis(100));
            for _ in 0..2 {
                full.recv_timeout(PATIENCE).unwrap();
            }
        }
    });
    wait_for("the publish to record itself", || {
        broker.retained("c").len() == 2
    });
    // The publish of "1" is retained, and waits for `full` before it
    // delivers to `joiner`: "1" must come once through the pattern (in its
    // history), not twice.
    joiner.psubscribe_with_history(["c*"]).unwrap();
    assert_eq!(join(&publisher, "the waiting publish"), 2);
    join(&reader, "the reader");
    let items: Vec<_> = joiner.try_iter().collect();
    let all = [Bytes::from("0"), Bytes::from("1")];
    for ((source, channel), sequence) in by_source(&items) {
        let (first, _) = check_run(&all, &sequence, &format!("{source:?} {channel}"));
        assert_eq!(first + sequence.len(), 2, "{source:?}: {sequence:?}");
    }
    assert_eq!(
        items.iter().map(show).collect::<Vec<_>>(),
        ["psubscribe:c*", "r:c=0", "r:c=1", "c=1"]
    );
}

// ---- the hand-over under concurrency ----------------------------------------------------

const CHANNELS: [&str; 3] = ["ch.0", "ch.1", "ch.2"];
/// What each channel retains: "ch.1" keeps everything, the others the
/// last few.
const DEPTH: [usize; 3] = [4, 100_000, 1];

/// How a joiner joins.
#[derive(Debug, Clone, Copy)]
enum Join {
    /// `subscribe_with_history` on two channels.
    Channels,
    /// `psubscribe_with_history("ch.*")`.
    Pattern,
    /// Both, on one subscriber.
    Both,
    /// A `Block` subscriber holding "ch.1" (so publishes on it wait and
    /// deliver after letting go of their locks) that then joins a pattern
    /// with history while those publishes are in flight.
    BlockedThenPattern,
}

/// What a joiner saw and when it joined.
struct Joined {
    how: Join,
    items: Vec<Message>,
    /// Per channel: publishes finished before the join started, and
    /// started before it returned.
    finished_before: [usize; 3],
    started_by_end: [usize; 3],
}

/// Per channel, counters of publishes started and finished.
#[derive(Default)]
struct Progress {
    started: [AtomicUsize; 3],
    finished: [AtomicUsize; 3],
}

impl Progress {
    fn snapshot(counters: &[AtomicUsize; 3]) -> [usize; 3] {
        std::array::from_fn(|c| counters[c].load(Ordering::SeqCst))
    }
}

/// Drains `sub` on its own thread until `stop` is set and nothing more
/// arrives, so a blocked publisher can always go on.
fn drain_in_background(
    sub: Arc<Subscriber>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> crossbeam_channel::Receiver<Vec<Message>> {
    spawn(move || {
        let mut items = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match sub.recv_timeout(Duration::from_millis(20)) {
                Ok(message) => {
                    items.push(message);
                    thread::sleep(pause);
                }
                Err(RecvTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => break,
                Err(RecvTimeoutError::Timeout) => {
                    assert!(Instant::now() < deadline, "drainer ran past its time");
                }
                Err(end) => panic!("{end}"),
            }
        }
        items
    })
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, set up and checked top to bottom
fn the_hand_over_is_exact_under_concurrent_publishers() {
    const WRITERS: usize = 3;
    const PER_WRITER: usize = 1_500;
    const JOINERS: usize = 24;
    let broker = Broker::new();
    broker.retain_last_matching("ch.*", DEPTH[2]);
    broker.retain_last("ch.0", DEPTH[0]);
    broker.retain_last("ch.1", DEPTH[1]);

    // The reference: every publish, in each channel's one order.
    let reference = broker.subscriber();
    reference.subscribe(CHANNELS).unwrap();
    // A blocking subscriber on every channel: publishes take the path that
    // lets go of the locks before delivering.
    let stop = Arc::new(AtomicBool::new(false));
    let blocker = Arc::new(bounded(&broker, 2, Overflow::Block));
    blocker.psubscribe(["ch.*"]).unwrap();
    // It reads slowly, so that publishes are often still delivering when
    // a joiner comes.
    let blocker_items = drain_in_background(
        Arc::clone(&blocker),
        Arc::clone(&stop),
        Duration::from_micros(50),
    );

    let progress = Arc::new(Progress::default());
    let total = WRITERS * PER_WRITER;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (broker, progress) = (broker.clone(), Arc::clone(&progress));
            spawn(move || {
                for i in 0..PER_WRITER {
                    let c = (i + w) % CHANNELS.len();
                    progress.started[c].fetch_add(1, Ordering::SeqCst);
                    broker.publish(CHANNELS[c], format!("{w}:{i}"));
                    progress.finished[c].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let joiners: Vec<_> = (0..JOINERS)
        .map(|j| {
            let (broker, progress, stop) =
                (broker.clone(), Arc::clone(&progress), Arc::clone(&stop));
            spawn(move || {
                let how = [
                    Join::Channels,
                    Join::Pattern,
                    Join::Both,
                    Join::BlockedThenPattern,
                ][j % 4];
                // Spread the joins over the publishing.
                let at = total * j / JOINERS;
                wait_for("the publishers' progress", || {
                    Progress::snapshot(&progress.finished).iter().sum::<usize>() >= at
                });
                let may_wait = matches!(how, Join::BlockedThenPattern);
                let sub = Arc::new(if may_wait {
                    // Never full (its history must not be dropped), yet
                    // a publisher to it takes the path that may wait.
                    bounded(&broker, 1 << 20, Overflow::Block)
                } else {
                    broker.subscriber()
                });
                let drained = may_wait.then(|| {
                    sub.subscribe(["ch.1"]).unwrap();
                    drain_in_background(Arc::clone(&sub), Arc::clone(&stop), Duration::ZERO)
                });
                let finished_before = Progress::snapshot(&progress.finished);
                match how {
                    Join::Channels => {
                        sub.subscribe_with_history(["ch.0", "ch.2"]).unwrap();
                    }
                    Join::Pattern | Join::BlockedThenPattern => {
                        sub.psubscribe_with_history(["ch.*"]).unwrap();
                    }
                    Join::Both => {
                        sub.subscribe_with_history(CHANNELS).unwrap();
                        sub.psubscribe_with_history(["ch.[02]"]).unwrap();
                    }
                }
                let started_by_end = Progress::snapshot(&progress.started);
                (how, sub, drained, finished_before, started_by_end)
            })
        })
        .collect();

    for writer in &writers {
        join(writer, "a publisher");
    }
    let joiners: Vec<_> = joiners.iter().map(|j| join(j, "a joiner")).collect();
    stop.store(true, Ordering::SeqCst);
    join(&blocker_items, "the blocking subscriber's drainer");

    // The reference order of each channel.
    let mut order: HashMap<Name, Vec<Bytes>> = HashMap::new();
    for m in reference.try_iter() {
        if let Message::Message { channel, payload } = m {
            order.entry(channel).or_default().push(payload);
        }
    }
    assert_eq!(order.values().map(Vec::len).sum::<usize>(), total);

    let joined: Vec<Joined> = joiners
        .into_iter()
        .map(|(how, sub, drained, finished_before, started_by_end)| {
            let mut items = match drained {
                Some(drained) => join(&drained, "a joiner's drainer"),
                None => Vec::new(),
            };
            items.extend(sub.try_iter());
            Joined {
                how,
                items,
                finished_before,
                started_by_end,
            }
        })
        .collect();

    let mut checked = 0;
    for joiner in &joined {
        let seen = by_source(&joiner.items);
        for ((source, channel), sequence) in &seen {
            let c = CHANNELS.iter().position(|n| channel == n).unwrap();
            let all = &order[channel];
            let what = format!("{:?} via {source:?} on {channel}", joiner.how);
            let (first, retained) = check_run(all, sequence, &what);
            assert_eq!(first + sequence.len(), all.len(), "{what}: stops early");
            if matches!(source, Source::Channel(name) if name == "ch.1")
                && matches!(joiner.how, Join::BlockedThenPattern)
            {
                assert_eq!(retained, 0, "a plain subscribe has no history");
                continue;
            }
            // The join point: after every publish finished before the join
            // started, before every publish started after it returned.
            let joined_at = first + retained;
            assert!(
                joiner.finished_before[c] <= joined_at && joined_at <= joiner.started_by_end[c],
                "{:?} on {channel}: joined at {joined_at}, outside {}..={}",
                joiner.how,
                joiner.finished_before[c],
                joiner.started_by_end[c]
            );
            assert_eq!(
                retained,
                joined_at.min(DEPTH[c]),
                "{:?} on {channel}",
                joiner.how
            );
            checked += 1;
        }
        // Every subscription sees every channel it covers.
        let expected = match joiner.how {
            Join::Channels => 2,
            Join::Pattern => 3,
            Join::BlockedThenPattern => 4,
            Join::Both => 5,
        };
        assert_eq!(seen.len(), expected, "{:?}", joiner.how);
    }
    assert!(checked >= JOINERS, "only {checked} sequences checked");
}

/// Joiners that come and go, on a broker where their pattern is often the
/// only one: each stay's view of each channel is a run of consecutive
/// publishes, with the channel's last `DEPTH` before the join retained.
#[test]
fn joiners_coming_and_going_always_get_an_exact_hand_over() {
    churn(None);
}

/// The same while every publish waits for a slow bounded reader, and so
/// delivers after letting go of its locks.
#[test]
fn joiners_coming_and_going_during_waiting_publishes_get_an_exact_hand_over() {
    churn(Some(Duration::from_micros(100)));
}

fn churn(slow_reader: Option<Duration>) {
    const PER_CHANNEL: usize = 20_000;
    const STAYS: usize = 600;
    const DEPTH: usize = 3;
    let broker = Broker::new();
    broker.retain_last_matching("*", DEPTH);
    let stop = Arc::new(AtomicBool::new(false));
    // Exact subscriptions only: no pattern is live but the joiners'.
    let slow = slow_reader.map(|pause| {
        let slow = Arc::new(bounded(&broker, 2, Overflow::Block));
        slow.subscribe(["a", "b"]).unwrap();
        drain_in_background(slow, Arc::clone(&stop), pause)
    });
    // One publisher per channel: publish order is the numbering.
    let publishers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|channel| {
            let (broker, stop) = (broker.clone(), Arc::clone(&stop));
            spawn(move || {
                for i in 0..PER_CHANNEL {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    broker.publish(channel, i.to_string());
                }
            })
        })
        .collect();
    // 0: a pattern; 1: a channel; 2: a pattern, by a subscriber that also
    // holds "a" without history (so a publish still delivering to it may
    // find its pattern subscriptions changed).
    let joiners: Vec<_> = (0..3)
        .map(|kind| {
            let broker = broker.clone();
            spawn(move || {
                let sub = broker.subscriber();
                if kind == 2 {
                    sub.subscribe(["a"]).unwrap();
                }
                let mut stays = Vec::new();
                for _ in 0..STAYS {
                    if kind == 1 {
                        sub.subscribe_with_history(["a"]).unwrap();
                        thread::yield_now();
                        sub.unsubscribe(["a"]).unwrap();
                    } else {
                        sub.psubscribe_with_history(["*"]).unwrap();
                        thread::yield_now();
                        sub.punsubscribe(["*"]).unwrap();
                    }
                    let mut items: Vec<_> = sub.try_iter().collect();
                    if kind == 2 {
                        // Only the pattern's messages make up this stay.
                        items.retain(|m| m.source() != Some(Source::Channel("a".into())));
                        // Away a while: publishes planned meanwhile leave
                        // the pattern out, and may still be delivering
                        // when it comes back.
                        thread::sleep(Duration::from_micros(50));
                    }
                    stays.push(items);
                }
                stays
            })
        })
        .collect();
    let stays: Vec<_> = joiners.iter().flat_map(|j| join(j, "a joiner")).collect();
    stop.store(true, Ordering::Relaxed);
    for publisher in &publishers {
        join(publisher, "a publisher");
    }
    if let Some(slow) = slow {
        join(&slow, "the slow reader");
    }

    let all: Vec<Bytes> = (0..PER_CHANNEL)
        .map(|i| Bytes::from(i.to_string()))
        .collect();
    let mut retained_seen = 0;
    for items in &stays {
        for ((source, channel), sequence) in by_source(items) {
            let what = format!("{source:?} on {channel}");
            let (first, retained) = check_run(&all, &sequence, &what);
            assert_eq!(retained, (first + retained).min(DEPTH), "{what}");
            retained_seen += retained;
        }
    }
    assert!(retained_seen > 0);
}

// ---- memory ----------------------------------------------------------------------------

/// Runs every retention path once, so one-time allocations happen before a
/// baseline is taken.
fn warm_up(broker: &Broker) {
    broker.retain_last_matching("*", 2);
    broker.retain_last_shard("s", 1);
    broker.publish("warm", "x");
    broker.spublish("s", "x");
    let sub = broker.subscriber();
    sub.subscribe_with_history(["warm"]).unwrap();
    sub.psubscribe_with_history(["w*"]).unwrap();
    sub.try_iter().for_each(drop);
    drop(sub);
    broker.clear_all_retained();
    let _ = broker.stats();
}

#[test]
fn memory_per_retained_message_and_memory_returned_when_cleared() {
    const CHANNELS_N: usize = 10_000;
    const DEEP: usize = 10_000;
    let broker = Broker::new();
    warm_up(&broker);
    let names: Vec<String> = (0..CHANNELS_N).map(|i| format!("user:{i:05}")).collect();
    let payload = Bytes::from_static(b"static payload: no heap of its own");

    // One message in each of many channels (depth 1).
    let baseline = live();
    for name in &names {
        broker.publish(name, payload.clone());
    }
    let per_channel = (live() - baseline) / size(CHANNELS_N);
    assert_eq!(broker.stats().retained_channels, CHANNELS_N as u64);
    assert_eq!(broker.clear_all_retained(), CHANNELS_N);
    let left_after_clear = live() - baseline;

    // Many messages in one channel.
    broker.retain_last("deep", DEEP);
    let baseline_deep = live();
    for _ in 0..DEEP {
        broker.publish("deep", payload.clone());
    }
    let per_message = (live() - baseline_deep) / size(DEEP);
    assert_eq!(broker.clear_retained("deep"), DEEP);
    let left_after_deep = live() - baseline_deep;

    // Payloads with heap of their own are shared with subscribers, and
    // freed with the last copy.
    let with_heap = live();
    for name in &names[..1_000] {
        broker.publish(name, vec![7u8; 100]);
    }
    let per_heap_message = (live() - with_heap) / 1_000;
    broker.retain_last_matching("*", 0);
    broker.retain_last("deep", 0);
    let left_after_rules = live() - with_heap;

    println!(
        "memory per retained message: {per_channel} B each in its own channel \
         (name and store included), {per_message} B each in one deep channel, \
         +{} B for a 100-byte Vec payload's own heap; \
         left after clearing: {left_after_clear} B, {left_after_deep} B, \
         after removing the rules: {left_after_rules} B",
        per_heap_message - per_channel
    );
    assert!(per_channel < 400, "{per_channel} B per retained channel");
    assert!(per_message < 80, "{per_message} B per retained message");
    // Everything given back, up to the maps' floor capacity.
    assert!(
        left_after_clear < 4_096,
        "{left_after_clear} B kept after clearing"
    );
    assert!(
        left_after_deep < 1_024,
        "{left_after_deep} B kept after clearing"
    );
    assert!(
        left_after_rules < 4_096,
        "{left_after_rules} B kept after removing rules"
    );
}
