//! Tests that memory stays bounded under a subscriber that never reads, and
//! returns to its baseline after heavy subscription churn, measured with a
//! counting global allocator (live and peak bytes).
//!
//! By default the loops are sized for a quick `cargo test` (500,000 messages,
//! 100,000 churn cycles); `CHANNELCAST_SOAK=1` runs the long versions the
//! README quotes (10,000,000 messages, 1,000,000 cycles), best with
//! `--release`: `CHANNELCAST_SOAK=1 cargo test --release --test memory_bounds
//! -- --nocapture`.

// The counting allocator needs `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use channelcast::{Broker, Overflow};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Peak live bytes above `base` while `work` runs.
fn peak_during(work: impl FnOnce()) -> usize {
    let base = live();
    PEAK.store(base, Ordering::Relaxed);
    work();
    PEAK.load(Ordering::Relaxed) - base
}

/// Whether `CHANNELCAST_SOAK` asks for the long versions.
fn soak() -> bool {
    std::env::var_os("CHANNELCAST_SOAK").is_some_and(|value| value != "0")
}

/// Messages sent to each silent subscriber.
fn messages() -> usize {
    match (cfg!(miri), soak()) {
        (true, _) => 1_000,
        (false, false) => 500_000,
        (false, true) => 10_000_000,
    }
}

/// Subscribe/unsubscribe cycles over distinct names.
fn cycles() -> usize {
    match (cfg!(miri), soak()) {
        (true, _) => 1_000,
        (false, false) => 100_000,
        (false, true) => 1_000_000,
    }
}

// Everything in one test: the counters are global to the binary, and tests
// running in parallel would disturb each other's figures.
#[test]
fn memory_is_bounded_by_capacity_and_returns_after_churn() {
    // ---- a subscriber that never reads, many more messages than fit ----
    let (messages, cycles) = (messages(), cycles());
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    for policy in [Overflow::DropNewest, Overflow::DropOldest] {
        let broker = Broker::new();
        let silent = broker
            .subscriber_builder()
            .capacity(1_000)
            .overflow(policy)
            .build();
        silent.subscribe(["firehose"]).unwrap();
        let peak = peak_during(|| {
            for _ in 0..messages {
                broker.publish("firehose", payload.clone());
            }
        });
        let stats = silent.stats();
        eprintln!(
            "{policy:?}: {messages} messages to a silent subscriber of capacity 1,000: \
             peak +{peak} B, {} queued, {} dropped",
            stats.queued, stats.dropped
        );
        assert!(stats.queued <= 1_002, "{stats:?}");
        assert_eq!(
            stats.dropped as usize,
            messages + 1 - stats.queued.min(1_001)
        );
        // 1,000 queued messages of ~72 B in blocks of 31 slots, plus slack:
        // a few hundred KiB, whatever the number of messages.
        assert!(
            peak < 512 * 1024,
            "peak {peak} B grows with the messages sent"
        );
    }

    // ---- subscribe/unsubscribe cycles over distinct names ----
    let broker = Broker::new();
    let sub = broker.subscriber();
    let watcher = broker.subscriber();
    watcher.psubscribe(["churn:*"]).unwrap();
    // Warm up thread-locals and the maps' first allocations.
    sub.subscribe(["warm"]).unwrap();
    sub.unsubscribe(["warm"]).unwrap();
    sub.try_iter().for_each(drop);
    let base = live();
    let mut peak_delta = 0;
    for i in 0..cycles {
        let name = format!("churn:{i}");
        sub.subscribe([name.as_str()]).unwrap();
        if i % 2 == 0 {
            sub.psubscribe([name.as_str()]).unwrap();
            sub.punsubscribe([name.as_str()]).unwrap();
        }
        sub.unsubscribe([name.as_str()]).unwrap();
        sub.try_iter().for_each(drop);
        peak_delta = peak_delta.max(live().saturating_sub(base));
    }
    let after = live();
    eprintln!("churn: {cycles} cycles, live bytes {base} -> {after}, peak +{peak_delta} B");
    assert!(
        after <= base + 16 * 1024,
        "churn left {} B behind",
        after - base
    );
    assert!(broker.channels().is_empty());
    assert_eq!(broker.numpat(), 1);

    // ---- shard channels that come and go leave no map behind ----
    // Each stripe makes its shard-channel map on its first shard channel;
    // the map (and its box) goes with the last, so 1,000 names spread over
    // every stripe leave nothing (128 empty boxes, about 8 KiB, before).
    sub.ssubscribe(["warm"]).unwrap();
    sub.sunsubscribe(["warm"]).unwrap();
    sub.try_iter().for_each(drop);
    let base = live();
    for i in 0..1_000 {
        let name = format!("shard:{i}");
        sub.ssubscribe([name.as_str()]).unwrap();
        sub.sunsubscribe([name.as_str()]).unwrap();
        sub.try_iter().for_each(drop);
    }
    let after = live();
    eprintln!("shard churn: 1000 names, live bytes {base} -> {after}");
    assert!(
        after <= base + 512,
        "shard channels left {} B behind",
        after.saturating_sub(base)
    );
    assert!(broker.shard_channels().is_empty());
}
