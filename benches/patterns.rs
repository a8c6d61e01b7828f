//! Pattern matching cost as non-matching patterns pile up. Run with
//! `cargo bench -p channelcast-benches --bench patterns`.
//!
//! Scenarios (each `patterns/<shape>/K` group holds both contenders):
//!
//! - `publish`: a broker holds K distinct live patterns that do not match the
//!   channel plus one that does (all on one subscriber); one iteration
//!   publishes one 16-byte message and receives the one `pmessage`.
//! - `linear_scan`: the same K + 1 patterns as compiled [`Glob`]s in a `Vec`;
//!   one iteration tests each against the channel, as Redis does on every
//!   `PUBLISH` (matching only: no delivery).
//!
//! Shapes: `prefix` (`user:<n>:*`, `news.<n>.sport`), `suffix`
//! (`*.<n>.error`), `mixed` (random globs of letters, `*`, `?` and
//! classes) and `mixed_wild_start` (the same, but four patterns in five
//! begin with `*`, `?` or a class). K ∈ {0, 100, 10,000, 100,000}.
//!
//! `patterns/pathological/*`: publishes against patterns built to make a
//! backtracking matcher or a set-of-states matcher explode (`*a` × 5,000;
//! `*a` × 1,000 against 5,000 `a`s; 100,000 patterns `*a*a*a*a*b<n>`; `*`
//! followed by 32,000 `a`s against 32,000 `a`s).
//!
//! `patterns/megabyte_channel`: one publish of a 1 MiB channel (random
//! letters and dots) against 100,000 `suffix` patterns, then against the
//! 100,000 `mixed_wild_start` patterns; criterion reports the throughput in
//! bytes per second.
//!
//! `psubscribe/100000/<shape>` times subscribing one subscriber to 100,000
//! patterns, and before the groups run the bench prints the heap bytes each
//! pattern costs (a counting allocator).

// Byte counts here are far below 2^52: the casts for reporting are exact.
#![allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use channelcast::{Broker, Glob};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Counts live heap bytes, to report memory per pattern.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZES: [usize; 4] = [0, 100, 10_000, 100_000];

#[derive(Clone, Copy)]
enum Shape {
    Prefix,
    Suffix,
    Mixed,
    MixedWildStart,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Prefix => "prefix",
            Shape::Suffix => "suffix",
            Shape::Mixed => "mixed",
            Shape::MixedWildStart => "mixed_wild_start",
        }
    }

    /// The published channel and the one pattern that matches it.
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Shape::Prefix => ("user:me:login", "user:me:*"),
            Shape::Suffix => ("svc.api.error", "*.api.error"),
            Shape::Mixed | Shape::MixedWildStart => ("metrics.cpu.host42", "metrics.*"),
        }
    }

    /// `count` distinct patterns of this shape that do not match the channel.
    fn non_matching(self, count: usize) -> Vec<String> {
        let (channel, _) = self.target();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut patterns = Vec::with_capacity(count);
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        while patterns.len() < count {
            n += 1;
            let pattern = match self {
                Shape::Prefix if n % 2 == 0 => format!("user:{n}:*"),
                Shape::Prefix => format!("news.{n}.sport"),
                Shape::Suffix => format!("*.{n}.error"),
                Shape::Mixed | Shape::MixedWildStart => {
                    const PIECES: [&str; 12] = [
                        "a", "m", "e", "t", "r", ".", "*", "?", "[a-m]", "[^x]", "cpu", "host",
                    ];
                    const WILD: [&str; 4] = ["*", "?", "[a-m]", "[^x]"];
                    let len = 3 + next() % 6;
                    let mut pattern = String::new();
                    if matches!(self, Shape::MixedWildStart) && next() % 5 != 0 {
                        pattern.push_str(WILD[(next() % WILD.len() as u64) as usize]);
                    }
                    for _ in 0..len {
                        pattern.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                    }
                    pattern
                }
            };
            if !Glob::new(pattern.as_str()).is_match(channel) && seen.insert(pattern.clone()) {
                patterns.push(pattern);
            }
        }
        patterns
    }
}

fn publish_vs_linear(c: &mut Criterion) {
    for shape in [
        Shape::Prefix,
        Shape::Suffix,
        Shape::Mixed,
        Shape::MixedWildStart,
    ] {
        let (channel, matching) = shape.target();
        let mut group = c.benchmark_group(format!("patterns/{}", shape.name()));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);
        for k in SIZES {
            let mut patterns = shape.non_matching(k);
            patterns.push(matching.to_string());

            let broker = Broker::new();
            let sub = broker.subscriber();
            sub.psubscribe(&patterns).unwrap();
            sub.try_iter().for_each(drop);
            let payload = bytes::Bytes::from_static(b"0123456789abcdef");
            group.bench_with_input(BenchmarkId::new("publish", k), &k, |b, _| {
                b.iter(|| {
                    assert_eq!(broker.publish(black_box(channel), payload.clone()), 1);
                    black_box(sub.try_recv().unwrap());
                });
            });

            let globs: Vec<Glob> = patterns.iter().map(|p| Glob::new(p.as_str())).collect();
            group.bench_with_input(BenchmarkId::new("linear_scan", k), &k, |b, _| {
                b.iter(|| {
                    let hits = globs
                        .iter()
                        .filter(|g| g.is_match(black_box(channel)))
                        .count();
                    assert_eq!(hits, 1);
                });
            });
        }
        group.finish();
    }
}

fn psubscribe_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("psubscribe/100000");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for shape in [
        Shape::Prefix,
        Shape::Suffix,
        Shape::Mixed,
        Shape::MixedWildStart,
    ] {
        let patterns = shape.non_matching(100_000);
        report_memory(shape, &patterns);
        group.bench_function(shape.name(), |b| {
            b.iter_with_large_drop(|| {
                let broker = Broker::new();
                let sub = broker.subscriber();
                sub.psubscribe(&patterns).unwrap();
                (sub, broker)
            });
        });
    }
    group.finish();
}

/// Prints the heap bytes per pattern (trie, pattern table and the
/// subscriber's own set), beyond the pattern's text.
fn report_memory(shape: Shape, patterns: &[String]) {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let before = LIVE.load(Ordering::Relaxed);
    sub.psubscribe(patterns).unwrap();
    // The confirmations hold references to the names; drop them first.
    sub.try_iter().for_each(drop);
    let after = LIVE.load(Ordering::Relaxed);
    let text: usize = patterns.iter().map(String::len).sum();
    let per_pattern = (after - before) as f64 / patterns.len() as f64;
    let text_per_pattern = text as f64 / patterns.len() as f64;
    eprintln!(
        "memory/{}: {per_pattern:.0} bytes per pattern ({text_per_pattern:.1} of them the name's bytes), {} patterns",
        shape.name(),
        patterns.len()
    );
}

/// Patterns built to hurt a backtracking matcher or a matcher stepping sets
/// of states: the cost stays linear in the channel.
fn pathological(c: &mut Criterion) {
    let mut group = c.benchmark_group("patterns/pathological");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    let cases: [(&str, Vec<String>, String); 4] = [
        (
            "star_a_x5000_beyond_nesting_limit",
            vec!["*a".repeat(5_000)],
            "a".repeat(5_000),
        ),
        (
            "star_a_x1000_vs_5000_a",
            vec!["*a".repeat(1_000)],
            "a".repeat(5_000),
        ),
        (
            "100000_x_star_a_star_a_star_a_star_a_star_b",
            (0..100_000).map(|i| format!("*a*a*a*a*b{i}")).collect(),
            "a".repeat(64) + "b7",
        ),
        (
            "star_then_32000_a_vs_32000_a",
            vec!["*".to_owned() + &"a".repeat(32_000)],
            "a".repeat(32_000),
        ),
    ];
    for (name, patterns, channel) in cases {
        let broker = Broker::new();
        let sub = broker.subscriber();
        sub.psubscribe(&patterns).unwrap();
        sub.try_iter().for_each(drop);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(broker.publish(black_box(channel.as_str()), "x"));
                sub.try_iter().for_each(drop);
            });
        });
    }
    group.finish();
}

/// A 1 MiB channel against 100,000 patterns: the cost per byte.
fn megabyte_channel(c: &mut Criterion) {
    let mut group = c.benchmark_group("patterns/megabyte_channel");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let channel: Vec<u8> = (0..1 << 20)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            b"abcdefghijklmnopqrstuvwxyz."[(rng % 27) as usize]
        })
        .collect();
    group.throughput(Throughput::Bytes(channel.len() as u64));
    for shape in [Shape::Suffix, Shape::MixedWildStart] {
        let patterns = shape.non_matching(100_000);
        let broker = Broker::new();
        let sub = broker.subscriber();
        sub.psubscribe(&patterns).unwrap();
        sub.try_iter().for_each(drop);
        let matched = broker.publish(&channel, "x");
        sub.try_iter().for_each(drop);
        eprintln!(
            "megabyte_channel: {matched} of the 100,000 {} patterns match the channel",
            shape.name()
        );
        group.bench_function(format!("{}_100000", shape.name()), |b| {
            b.iter(|| {
                black_box(broker.publish(black_box(&channel), "x"));
                sub.try_iter().for_each(drop);
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    psubscribe_many,
    publish_vs_linear,
    pathological,
    megabyte_channel
);
criterion_main!(benches);
