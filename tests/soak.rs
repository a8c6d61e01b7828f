//! Randomized concurrency soak: several threads subscribe, unsubscribe,
//! publish and create and drop subscribers (unbounded and bounded) at random
//! over a small name space, for a bounded time; then every subscriber's
//! whole stream and the broker's counters are checked.
//!
//! The run lasts [`DEFAULT_SECS`] seconds, [`SOAK_SECS`] with
//! `CHANNELCAST_SOAK=1` (the long versions of the slow tests, as `.ci/run`
//! runs them); set `CHANNELCAST_SOAK_SECS` (a number of seconds, fractions
//! allowed) for any other length. Seeds are
//! fixed, the interleaving is whatever the scheduler makes of it, and every
//! check holds for any interleaving:
//!
//! - every thread finishes (each blocking call has a timeout, and a watchdog
//!   fails the test instead of hanging if a thread is stuck);
//! - confirmations bracket messages, and each confirmation's count is the
//!   subscriber's real count;
//! - per subscription window, one publisher's messages on one channel arrive
//!   once each, in order and, for unbounded subscribers, without gaps; a
//!   bounded subscriber's gaps are covered by its `Lagged` reports, which add
//!   up to its `stats().dropped`;
//! - each publisher's messages reach every subscriber in publish order, and
//!   one publish reaches a subscriber at most once per subscription, its
//!   `Message` first;
//! - every delivery a thread's own publish owed its own unbounded
//!   subscribers arrives, and nothing else from it;
//! - once every subscriber is gone, no channel, shard channel or pattern is
//!   left, and the broker's counters add up to what `publish` returned.
//!
//! A test at the end pins down what the soak found on the way: the broker's
//! `dropped` counts `DropOldest` evictions too.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::mpsc::{self, RecvTimeoutError as ChannelTimeout};
use std::thread;
use std::time::{Duration, Instant};

use channelcast::{
    glob_match, Broker, Message, Name, Overflow, RecvTimeoutError, Source, Subscriber, TryRecvError,
};

/// How long the soak runs in a plain `cargo test`.
const DEFAULT_SECS: f64 = 2.0;
/// How long it runs with `CHANNELCAST_SOAK=1`.
const SOAK_SECS: f64 = 30.0;
/// Overrides [`DEFAULT_SECS`] for longer local runs.
const SECS_VAR: &str = "CHANNELCAST_SOAK_SECS";
/// Worker threads, each with its own seed.
const THREADS: usize = 5;
const SEED: u64 = 0x00c0_ffee_5eed_0001;
/// The most subscribers one thread owns at a time.
const MAX_OWNED: usize = 4;
/// How long after the deadline a thread may take to wind down before the
/// test calls it a deadlock.
const GRACE: Duration = Duration::from_secs(60);
/// Problems listed per thread (the rest are only counted).
const MAX_PROBLEMS: usize = 20;
/// How long `BlockFor` subscribers make a publisher wait.
const PATIENCE: Duration = Duration::from_micros(50);

/// Channel names: few, so that subscriptions and patterns collide.
const CHANNELS: &[&str] = &["a", "b", "ab", "ba", "news.art", "news.sport", "x.y", ""];
/// Patterns over [`CHANNELS`]: overlapping, one literal, one empty.
const PATTERNS: &[&str] = &[
    "*", "a*", "?", "news.*", "*.y", "[ab]*", "n*s.?*", "*b", "x?y", "[^a]*", "ab", "",
];
/// Shard channel names (one shared with [`CHANNELS`]: the spaces are apart).
const SHARDS: &[&str] = &["a", "s1", "s2", ""];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (splitmix64), one per thread.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One to `max` names from `from`, repeats allowed.
    fn names(&mut self, from: &[&'static str], max: usize) -> Vec<&'static str> {
        let n = 1 + self.below(max);
        (0..n).map(|_| from[self.below(from.len())]).collect()
    }
}

/// What a payload says about its publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// The publishing thread.
    thread: usize,
    /// `spublish` rather than `publish`.
    shard: bool,
    /// Index into [`CHANNELS`] or [`SHARDS`].
    channel: usize,
    /// Per (thread, space, channel), from 1.
    seq: u64,
    /// Per thread, across channels, from 1.
    global: u64,
}

impl Stamp {
    fn encode(self) -> String {
        let space = if self.shard { 's' } else { 'c' };
        format!(
            "{}/{space}/{}/{}/{}",
            self.thread, self.channel, self.seq, self.global
        )
    }

    fn decode(bytes: &[u8]) -> Option<Stamp> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('/');
        let thread = parts.next()?.parse().ok()?;
        let shard = match parts.next()? {
            "s" => true,
            "c" => false,
            _ => return None,
        };
        let stamp = Stamp {
            thread,
            shard,
            channel: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            global: parts.next()?.parse().ok()?,
        };
        let names = if shard { SHARDS } else { CHANNELS };
        (parts.next().is_none() && stamp.thread < THREADS && stamp.channel < names.len())
            .then_some(stamp)
    }

    fn channel_name(self) -> &'static str {
        if self.shard {
            SHARDS[self.channel]
        } else {
            CHANNELS[self.channel]
        }
    }
}

/// Problems found, the first [`MAX_PROBLEMS`] in full.
#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    total: usize,
}

impl Problems {
    fn add(&mut self, problem: String) {
        self.total += 1;
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(problem);
        }
    }

    fn merge(&mut self, other: Problems) {
        self.total += other.total;
        for problem in other.listed {
            if self.listed.len() < MAX_PROBLEMS {
                self.listed.push(problem);
            }
        }
    }
}

/// Which namespace a (un)subscribe call works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Channel,
    Pattern,
    Shard,
}

impl Family {
    fn source(self, name: impl Into<Name>) -> Source {
        match self {
            Family::Channel => Source::Channel(name.into()),
            Family::Pattern => Source::Pattern(name.into()),
            Family::Shard => Source::Shard(name.into()),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Family::Channel => CHANNELS,
            Family::Pattern => PATTERNS,
            Family::Shard => SHARDS,
        }
    }
}

/// The namespace `source` is in.
fn family_of(source: &Source) -> Family {
    match source {
        Source::Channel(_) => Family::Channel,
        Source::Pattern(_) => Family::Pattern,
        Source::Shard(_) => Family::Shard,
    }
}

/// Whether `source` counts towards `family`'s confirmation counts (channels
/// and patterns share one count, shard channels have their own).
fn counts_for(source: &Source, family: Family) -> bool {
    (family_of(source) == Family::Shard) == (family == Family::Shard)
}

/// The order of one publisher's deliveries in one stream.
#[derive(Default)]
struct Fifo {
    /// The publisher's `global` stamp last seen.
    last: Option<u64>,
    /// The patterns that delivered that publish so far.
    patterns: Vec<Name>,
}

impl Fifo {
    fn check(&mut self, global: u64, source: &Source) -> Result<(), String> {
        match self.last {
            Some(last) if global < last => Err(format!(
                "publish #{global} arrived after publish #{last} of the same thread"
            )),
            Some(last) if global == last => match source {
                Source::Pattern(pattern) if !self.patterns.contains(pattern) => {
                    self.patterns.push(pattern.clone());
                    Ok(())
                }
                _ => Err(format!(
                    "publish #{global} delivered twice through {source:?}, or its message after a pmessage"
                )),
            },
            _ => {
                self.last = Some(global);
                self.patterns.clear();
                if let Source::Pattern(pattern) = source {
                    self.patterns.push(pattern.clone());
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One subscriber, what its owner did with it and what its stream says
// ---------------------------------------------------------------------------

/// An owned subscriber, with the owner's view of its subscriptions and the
/// checker of its stream (fed as the owner drains it).
struct Tracked {
    sub: Subscriber,
    label: String,
    bounded: bool,

    // The owner's side: what it subscribed to, and the window of each.
    /// Source → the number of its current window (1 for the first).
    held: HashMap<Source, u64>,
    windows_opened: HashMap<Source, u64>,
    /// Deliveries the owner's own publishes owe this (unbounded)
    /// subscriber, per source: (window, channel, seq), in publish order.
    owed: HashMap<Source, VecDeque<(u64, Name, u64)>>,

    // The stream's side.
    /// Source → the window the stream is in (after its confirmation).
    active: HashMap<Source, u64>,
    windows_seen: HashMap<Source, u64>,
    /// Per active window: the last seq seen per (publisher, channel).
    last_seq: HashMap<Source, HashMap<(usize, Name), u64>>,
    fifo: Vec<Fifo>,
    /// Items taken from the subscriber (deliveries, confirmations, lags).
    items: u64,
    deliveries: u64,
    /// Sum of `Lagged` reports.
    missed: u64,
    /// Sum of the sequence gaps inside windows.
    gaps: u64,
    problems: Problems,
}

impl Tracked {
    fn new(sub: Subscriber, label: String, bounded: bool) -> Tracked {
        Tracked {
            sub,
            label,
            bounded,
            held: HashMap::new(),
            windows_opened: HashMap::new(),
            owed: HashMap::new(),
            active: HashMap::new(),
            windows_seen: HashMap::new(),
            last_seq: HashMap::new(),
            fifo: (0..THREADS).map(|_| Fifo::default()).collect(),
            items: 0,
            deliveries: 0,
            missed: 0,
            gaps: 0,
            problems: Problems::default(),
        }
    }

    fn problem(&mut self, what: &str) {
        let problem = format!("{}: {what}", self.label);
        self.problems.add(problem);
    }

    /// The owner's count for `family`.
    fn held_count(&self, family: Family) -> usize {
        self.held.keys().filter(|s| counts_for(s, family)).count()
    }

    /// The stream's count for `family`.
    fn active_count(&self, family: Family) -> usize {
        self.active.keys().filter(|s| counts_for(s, family)).count()
    }

    /// The owner subscribed to `source`.
    fn hold(&mut self, source: Source) {
        if !self.held.contains_key(&source) {
            let window = self.windows_opened.entry(source.clone()).or_insert(0);
            *window += 1;
            self.held.insert(source, *window);
        }
    }

    /// Takes one item from the stream and checks it.
    fn observe(&mut self, message: Message, me: usize) {
        self.items += 1;
        match message {
            Message::Subscribe { channel, count } => {
                self.open(&Source::Channel(channel), count, Family::Channel);
            }
            Message::PSubscribe { pattern, count } => {
                self.open(&Source::Pattern(pattern), count, Family::Pattern);
            }
            Message::SSubscribe { channel, count } => {
                self.open(&Source::Shard(channel), count, Family::Shard);
            }
            Message::Unsubscribe { channel, count } => {
                self.close(channel.map(Source::Channel), count, Family::Channel);
            }
            Message::PUnsubscribe { pattern, count } => {
                self.close(pattern.map(Source::Pattern), count, Family::Pattern);
            }
            Message::SUnsubscribe { channel, count } => {
                self.close(channel.map(Source::Shard), count, Family::Shard);
            }
            Message::Lagged { missed } => {
                if !self.bounded {
                    self.problem(&format!("an unbounded subscriber lagged by {missed}"));
                } else if missed == 0 {
                    self.problem("a lag report of 0");
                }
                self.missed += missed;
            }
            delivery => self.deliver(&delivery, me),
        }
    }

    fn check_count(&mut self, family: Family, count: usize, what: &dyn std::fmt::Debug) {
        let expected = self.active_count(family);
        if count != expected {
            self.problem(&format!(
                "confirmation {what:?} says count {count}, the stream holds {expected}"
            ));
        }
    }

    fn open(&mut self, source: &Source, count: usize, family: Family) {
        if !self.active.contains_key(source) {
            let window = self.windows_seen.entry(source.clone()).or_insert(0);
            *window += 1;
            self.active.insert(source.clone(), *window);
        }
        self.check_count(family, count, source);
    }

    fn close(&mut self, source: Option<Source>, count: usize, family: Family) {
        match source {
            None => {
                if self.active.keys().any(|source| family_of(source) == family) {
                    self.problem(&format!(
                        "a nameless {family:?} unsubscribe confirmation while names are held"
                    ));
                }
                self.check_count(family, count, &family);
            }
            Some(source) => {
                if let Some(window) = self.active.remove(&source) {
                    self.last_seq.remove(&source);
                    let unpaid = self
                        .owed
                        .get(&source)
                        .and_then(VecDeque::front)
                        .filter(|owed| owed.0 <= window)
                        .cloned();
                    if let Some((_, channel, seq)) = unpaid {
                        self.problem(&format!(
                            "own publish {channel:?} seq {seq} through {source:?} never arrived before the unsubscribe confirmation"
                        ));
                    }
                }
                self.check_count(family, count, &source);
            }
        }
    }

    fn deliver(&mut self, message: &Message, me: usize) {
        self.deliveries += 1;
        let (Some(source), Some(channel), Some(stamp)) = (
            message.source(),
            message.channel().cloned(),
            message.payload_bytes().and_then(Stamp::decode),
        ) else {
            self.problem(&format!("an unexpected item {message:?}"));
            return;
        };
        let shard_delivery = matches!(message, Message::SMessage { .. });
        if channel != stamp.channel_name() || shard_delivery != stamp.shard {
            self.problem(&format!("{message:?} does not carry its payload's channel"));
        }
        // (a) Confirmations bracket messages.
        let Some(&window) = self.active.get(&source) else {
            self.problem(&format!("{message:?} arrived outside a {source:?} window"));
            return;
        };
        if let Source::Pattern(pattern) = &source {
            if !glob_match(pattern, &channel) {
                self.problem(&format!("{message:?}: the pattern does not match"));
            }
        }
        // (b), (c) Once each, in order, gaps only when bounded.
        let last = self
            .last_seq
            .entry(source.clone())
            .or_default()
            .insert((stamp.thread, channel.clone()), stamp.seq);
        if let Some(last) = last {
            if stamp.seq <= last {
                self.problem(&format!(
                    "{message:?} after seq {last}: repeated or reordered"
                ));
            } else if stamp.seq > last + 1 {
                let gap = stamp.seq - last - 1;
                self.gaps += gap;
                if !self.bounded {
                    self.problem(&format!(
                        "{message:?} after seq {last}: {gap} owed message(s) lost"
                    ));
                }
            }
        }
        // Guarantee 3: each publisher's messages in publish order.
        if let Err(problem) = self.fifo[stamp.thread].check(stamp.global, &source) {
            self.problem(&format!("{message:?}: {problem}"));
        }
        // What our own publishes owed us, exactly.
        if stamp.thread == me && !self.bounded {
            let expected = self.owed.get_mut(&source).and_then(VecDeque::pop_front);
            if expected != Some((window, channel, stamp.seq)) {
                self.problem(&format!(
                    "own {message:?} in window {window}, but the next owed was {expected:?}"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One thread
// ---------------------------------------------------------------------------

/// What a thread did and found.
#[derive(Default)]
struct Report {
    ops: u64,
    publishes: u64,
    spublishes: u64,
    /// Sum of `publish`/`spublish` return values.
    counted: u64,
    /// Deliveries taken from subscribers.
    deliveries: u64,
    /// Sum of `Lagged` reports.
    missed: u64,
    created: u64,
    bounded: u64,
    clean_closes: u64,
    /// Final `stats().dropped` of cleanly closed bounded subscribers.
    dropped_seen: u64,
    /// The same, `DropOldest` subscribers only.
    dropped_oldest_seen: u64,
    problems: Problems,
}

struct Worker {
    me: usize,
    rng: Rng,
    broker: Broker,
    owned: Vec<Tracked>,
    /// Next seq per (space, channel).
    seqs: [Vec<u64>; 2],
    global: u64,
    report: Report,
}

impl Worker {
    fn new(me: usize, broker: Broker) -> Worker {
        Worker {
            me,
            rng: Rng(SEED ^ (me as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            broker,
            owned: Vec::new(),
            seqs: [vec![0; CHANNELS.len()], vec![0; SHARDS.len()]],
            global: 0,
            report: Report::default(),
        }
    }

    fn run(mut self, deadline: Instant) -> Report {
        self.create();
        while Instant::now() < deadline {
            self.step();
            self.report.ops += 1;
        }
        while let Some(tracked) = self.owned.pop() {
            let clean = self.rng.percent(70);
            self.close(tracked, clean);
        }
        self.report
    }

    fn problem(&mut self, what: &str) {
        self.report
            .problems
            .add(format!("thread {}: {what}", self.me));
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        if roll >= 86 {
            match roll {
                86..=88 => self.create(),
                89..=90 => self.close_one(),
                91..=92 => self.introspect(),
                _ => self.publish(false),
            }
            return;
        }
        if self.owned.is_empty() {
            self.create();
        }
        let at = self.rng.below(self.owned.len());
        match roll {
            0..=37 => self.publish(false),
            38..=41 => self.publish(true),
            42..=56 => self.drain(at),
            57..=64 => self.subscribe(at, Family::Channel),
            65..=69 => self.unsubscribe(at, Family::Channel, false),
            70 => self.unsubscribe(at, Family::Channel, true),
            71..=76 => self.subscribe(at, Family::Pattern),
            77..=80 => self.unsubscribe(at, Family::Pattern, false),
            81 => self.unsubscribe(at, Family::Pattern, true),
            82..=83 => self.subscribe(at, Family::Shard),
            84 => self.unsubscribe(at, Family::Shard, false),
            _ => self.unsubscribe(at, Family::Shard, true),
        }
    }

    fn create(&mut self) {
        if self.owned.len() >= MAX_OWNED {
            return;
        }
        self.report.created += 1;
        let n = self.report.created;
        let tracked = if self.rng.percent(60) {
            let label = format!("thread {} subscriber #{n} (unbounded)", self.me);
            Tracked::new(self.broker.subscriber(), label, false)
        } else {
            self.report.bounded += 1;
            let capacity = self.rng.below(6);
            let policy = match self.rng.below(20) {
                0..=9 => Overflow::DropNewest,
                10..=18 => Overflow::DropOldest,
                _ => Overflow::BlockFor(PATIENCE),
            };
            let label = format!(
                "thread {} subscriber #{n} (capacity {capacity}, {policy:?})",
                self.me
            );
            let sub = self
                .broker
                .subscriber_builder()
                .capacity(capacity)
                .overflow(policy)
                .build();
            Tracked::new(sub, label, true)
        };
        self.owned.push(tracked);
    }

    fn subscribe(&mut self, at: usize, family: Family) {
        let names = self.rng.names(family.names(), 3);
        let tracked = &mut self.owned[at];
        let result = match family {
            Family::Channel => tracked.sub.subscribe(names.iter().copied()),
            Family::Pattern => tracked.sub.psubscribe(names.iter().copied()),
            Family::Shard => tracked.sub.ssubscribe(names.iter().copied()),
        };
        for name in &names {
            tracked.hold(family.source(*name));
        }
        let expected = tracked.held_count(family);
        match result {
            Ok(count) if count == expected => {}
            other => tracked.problem(&format!(
                "{family:?} subscribe {names:?} returned {other:?}, expected Ok({expected})"
            )),
        }
    }

    /// Unsubscribes from a few names (some perhaps not held), or from all.
    fn unsubscribe(&mut self, at: usize, family: Family, all: bool) {
        let names = if all {
            Vec::new()
        } else {
            self.rng.names(family.names(), 2)
        };
        let tracked = &mut self.owned[at];
        let result = match (family, all) {
            (Family::Channel, true) => tracked.sub.unsubscribe_all(),
            (Family::Pattern, true) => tracked.sub.punsubscribe_all(),
            (Family::Shard, true) => tracked.sub.sunsubscribe_all(),
            (Family::Channel, false) => tracked.sub.unsubscribe(names.iter().copied()),
            (Family::Pattern, false) => tracked.sub.punsubscribe(names.iter().copied()),
            (Family::Shard, false) => tracked.sub.sunsubscribe(names.iter().copied()),
        };
        if all {
            tracked.held.retain(|source, _| family_of(source) != family);
        } else {
            for name in &names {
                tracked.held.remove(&family.source(*name));
            }
        }
        let expected = tracked.held_count(family);
        match result {
            Ok(count) if count == expected => {}
            other => tracked.problem(&format!(
                "{family:?} unsubscribe {names:?} returned {other:?}, expected Ok({expected})"
            )),
        }
    }

    fn publish(&mut self, shard: bool) {
        let names = if shard { SHARDS } else { CHANNELS };
        let channel = self.rng.below(names.len());
        let space = usize::from(shard);
        self.seqs[space][channel] += 1;
        self.global += 1;
        let stamp = Stamp {
            thread: self.me,
            shard,
            channel,
            seq: self.seqs[space][channel],
            global: self.global,
        };
        let name = names[channel];
        let counted = if shard {
            self.report.spublishes += 1;
            self.broker.spublish(name, stamp.encode())
        } else {
            self.report.publishes += 1;
            self.broker.publish(name, stamp.encode())
        };
        self.report.counted += counted as u64;
        // Our own subscriptions were live throughout: they must all count,
        // and our unbounded subscribers are owed their deliveries.
        let mut own = 0;
        for tracked in &mut self.owned {
            let reached: Vec<(Source, u64)> = tracked
                .held
                .iter()
                .filter(|(source, _)| match source {
                    Source::Channel(held) => !shard && held == name,
                    Source::Pattern(pattern) => !shard && glob_match(pattern, name),
                    Source::Shard(held) => shard && held == name,
                })
                .map(|(source, window)| (source.clone(), *window))
                .collect();
            own += reached.len();
            if !tracked.bounded {
                for (source, window) in reached {
                    let owed = (window, Name::from(name), stamp.seq);
                    tracked.owed.entry(source).or_default().push_back(owed);
                }
            }
        }
        if counted < own {
            self.problem(&format!(
                "publish {name:?} counted {counted}, but this thread alone holds {own} matching subscriptions"
            ));
        }
    }

    /// Drains one subscriber: all of an unbounded one, a few items of a
    /// bounded one (so that it lags), sometimes waiting a little first.
    fn drain(&mut self, at: usize) {
        let limit = if self.owned[at].bounded && self.rng.percent(80) {
            Some(self.rng.below(4))
        } else {
            None
        };
        let wait = self.rng.percent(5);
        let me = self.me;
        let tracked = &mut self.owned[at];
        if wait {
            match tracked.sub.recv_timeout(Duration::from_millis(1)) {
                Ok(message) => tracked.observe(message, me),
                Err(RecvTimeoutError::Timeout) => {}
                Err(error) => tracked.problem(&format!("recv_timeout: {error:?}")),
            }
        }
        drain_into(tracked, me, limit);
    }

    fn close_one(&mut self) {
        if !self.owned.is_empty() {
            let at = self.rng.below(self.owned.len());
            let tracked = self.owned.swap_remove(at);
            let clean = self.rng.percent(60);
            self.close(tracked, clean);
        }
    }

    /// Drops a subscriber: `clean`ly (unsubscribe from everything, drain,
    /// check its counters exactly) or abruptly (with its subscriptions
    /// live, perhaps undrained).
    fn close(&mut self, mut tracked: Tracked, clean: bool) {
        let me = self.me;
        if clean {
            let at = self.owned.len();
            self.owned.push(tracked);
            self.unsubscribe(at, Family::Channel, true);
            self.unsubscribe(at, Family::Pattern, true);
            self.unsubscribe(at, Family::Shard, true);
            tracked = self.owned.pop().expect("just pushed");
            drain_into(&mut tracked, me, None);
            check_clean_close(&mut tracked, &mut self.report);
        } else if self.rng.percent(50) {
            drain_into(&mut tracked, me, None);
        }
        let stats = tracked.sub.stats();
        // `received` counts deliveries only (not confirmations or lag reports).
        if stats.received != tracked.deliveries {
            tracked.problem(&format!(
                "stats().received is {}, {} deliveries were taken",
                stats.received, tracked.deliveries
            ));
        }
        if tracked.bounded && tracked.missed < tracked.gaps {
            let (missed, gaps) = (tracked.missed, tracked.gaps);
            tracked.problem(&format!(
                "lag reports sum to {missed}, but {gaps} messages are missing inside windows"
            ));
        }
        if !tracked.bounded && stats.dropped != 0 {
            tracked.problem(&format!(
                "an unbounded subscriber dropped {}",
                stats.dropped
            ));
        }
        self.report.deliveries += tracked.deliveries;
        self.report.missed += tracked.missed;
        self.report
            .problems
            .merge(std::mem::take(&mut tracked.problems));
        drop(tracked);
    }

    /// `PUBSUB` questions, checked against what this thread alone holds.
    fn introspect(&mut self) {
        let channel = CHANNELS[self.rng.below(CHANNELS.len())];
        let shard = SHARDS[self.rng.below(SHARDS.len())];
        let holders = |source: &Source| {
            self.owned
                .iter()
                .filter(|t| t.held.contains_key(source))
                .count()
        };
        let own_subs = holders(&Source::Channel(channel.into()));
        let own_shard_subs = holders(&Source::Shard(shard.into()));
        let mut own_patterns: Vec<&Source> = self
            .owned
            .iter()
            .flat_map(|t| t.held.keys())
            .filter(|s| matches!(s, Source::Pattern(_)))
            .collect();
        own_patterns.sort();
        own_patterns.dedup();
        let own_patterns = own_patterns.len();

        let numsub = self.broker.numsub([channel]);
        let shard_numsub = self.broker.shard_numsub([shard]);
        let numpat = self.broker.numpat();
        let channels = self.broker.channels();
        let matching = self.broker.channels_matching("*");
        if numsub[0].1 < own_subs || shard_numsub[0].1 < own_shard_subs || numpat < own_patterns {
            self.problem(&format!(
                "numsub {numsub:?} / shard_numsub {shard_numsub:?} / numpat {numpat} below this thread's own {own_subs} / {own_shard_subs} / {own_patterns}"
            ));
        }
        if own_subs > 0 && !channels.iter().any(|c| c == channel) {
            self.problem(&format!("channels() {channels:?} lacks held {channel:?}"));
        }
        if !channels.windows(2).all(|w| w[0] < w[1]) || matching.iter().any(Name::is_empty) {
            self.problem(&format!(
                "channels() {channels:?} / {matching:?} misordered or unfiltered"
            ));
        }
    }
}

/// Takes up to `limit` items (all, when `None`) and checks them.
fn drain_into(tracked: &mut Tracked, me: usize, limit: Option<usize>) {
    // Every way of receiving must keep every promise, so the soak varies
    // them: plain `try_recv`, `select!` on the readiness handle (full drains
    // only: the idiom drains until `Empty` after each wake-up), and batches.
    match (limit, tracked.items % 3) {
        (None, 1) => drain_through_select(tracked, me),
        (_, 2) => drain_in_batches(tracked, me, limit),
        _ => drain_one_by_one(tracked, me, limit),
    }
}

fn drain_one_by_one(tracked: &mut Tracked, me: usize, limit: Option<usize>) {
    let mut taken = 0;
    while limit.map_or(true, |limit| taken < limit) {
        match tracked.sub.try_recv() {
            Ok(message) => tracked.observe(message, me),
            Err(TryRecvError::Empty) => break,
            Err(error) => {
                tracked.problem(&format!("try_recv: {error:?}"));
                break;
            }
        }
        taken += 1;
    }
}

/// The `select!` idiom: wait on `ready()` (here: only if a token is there
/// at once), then drain with `try_recv` until `Empty`. Anything queued
/// without a token would be left behind and show up as a problem.
fn drain_through_select(tracked: &mut Tracked, me: usize) {
    loop {
        crossbeam_channel::select! {
            recv(tracked.sub.ready()) -> _ => {}
            default => return,
        }
        loop {
            match tracked.sub.try_recv() {
                Ok(message) => tracked.observe(message, me),
                Err(TryRecvError::Empty) => break,
                Err(error) => {
                    tracked.problem(&format!("try_recv after select: {error:?}"));
                    return;
                }
            }
        }
    }
}

fn drain_in_batches(tracked: &mut Tracked, me: usize, limit: Option<usize>) {
    let mut batch = Vec::new();
    let mut taken = 0;
    while limit.map_or(true, |limit| taken < limit) {
        let room = limit.map_or(16, |limit| (limit - taken).min(16));
        match tracked.sub.try_recv_many(&mut batch, room) {
            Ok(0) => break,
            Ok(n) => taken += n,
            Err(error) => {
                tracked.problem(&format!("try_recv_many: {error:?}"));
                break;
            }
        }
        for message in batch.drain(..) {
            tracked.observe(message, me);
        }
    }
}

/// After unsubscribing from everything and draining: nothing is left, and
/// the counters agree exactly with the stream.
fn check_clean_close(tracked: &mut Tracked, report: &mut Report) {
    report.clean_closes += 1;
    if !tracked.active.is_empty() {
        let left: Vec<_> = tracked.active.keys().cloned().collect();
        tracked.problem(&format!(
            "still in windows {left:?} after unsubscribing from all"
        ));
    }
    let unpaid: usize = tracked.owed.values().map(VecDeque::len).sum();
    if unpaid > 0 {
        tracked.problem(&format!("{unpaid} owed deliveries never arrived"));
    }
    let stats = tracked.sub.stats();
    if stats.queued != 0 {
        tracked.problem(&format!("{} items queued after a full drain", stats.queued));
    }
    if tracked.bounded {
        report.dropped_seen += stats.dropped;
        if tracked.label.contains("DropOldest") {
            report.dropped_oldest_seen += stats.dropped;
        }
        if stats.dropped != tracked.missed {
            tracked.problem(&format!(
                "stats().dropped is {}, the lag reports sum to {}",
                stats.dropped, tracked.missed
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

fn soak_secs() -> f64 {
    match std::env::var(SECS_VAR) {
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs > 0.0 => secs,
            _ => panic!("{SECS_VAR}={text:?} is not a positive number of seconds"),
        },
        Err(_) if std::env::var_os("CHANNELCAST_SOAK").is_some_and(|v| v != "0") => SOAK_SECS,
        Err(_) => DEFAULT_SECS,
    }
}

/// Starts the workers and waits for them, failing (instead of hanging) if
/// one is still running [`GRACE`] after the deadline.
fn run_workers(broker: &Broker, deadline: Instant) -> Vec<Report> {
    let (done_tx, done_rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|me| {
            let broker = broker.clone();
            let done = done_tx.clone();
            thread::Builder::new()
                .name(format!("soak-{me}"))
                .spawn(move || {
                    let report = Worker::new(me, broker).run(deadline);
                    let _ = done.send(me);
                    report
                })
                .expect("spawn a worker")
        })
        .collect();
    drop(done_tx);
    let mut finished = [false; THREADS];
    for _ in 0..THREADS {
        let left = (deadline + GRACE).saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(me) => finished[me] = true,
            // A worker panicked: its join below says why.
            Err(ChannelTimeout::Disconnected) => break,
            Err(ChannelTimeout::Timeout) => {
                let stuck: Vec<usize> = (0..THREADS).filter(|&me| !finished[me]).collect();
                panic!("deadlock? workers {stuck:?} still running {GRACE:?} after the deadline");
            }
        }
    }
    handles
        .into_iter()
        .map(|handle| match handle.join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        })
        .collect()
}

/// Adds up the workers' reports.
fn total(reports: Vec<Report>) -> Report {
    let mut total = Report::default();
    for report in reports {
        total.ops += report.ops;
        total.publishes += report.publishes;
        total.spublishes += report.spublishes;
        total.counted += report.counted;
        total.deliveries += report.deliveries;
        total.missed += report.missed;
        total.created += report.created;
        total.bounded += report.bounded;
        total.clean_closes += report.clean_closes;
        total.dropped_seen += report.dropped_seen;
        total.dropped_oldest_seen += report.dropped_oldest_seen;
        total.problems.merge(report.problems);
    }
    total
}

/// Checks the broker once every subscriber is gone; returns what is wrong.
fn check_broker(broker: &Broker, total: &Report) -> String {
    let mut failures = String::new();
    let stats = broker.stats();
    // Nothing may be left.
    let numsub = broker.numsub(CHANNELS.iter().copied());
    let shard_numsub = broker.shard_numsub(SHARDS.iter().copied());
    let leftovers = (
        numsub.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
        shard_numsub
            .iter()
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>(),
        broker.numpat(),
        broker.channels(),
        broker.shard_channels(),
    );
    if !leftovers.0.is_empty()
        || !leftovers.1.is_empty()
        || leftovers.2 != 0
        || !leftovers.3.is_empty()
        || !leftovers.4.is_empty()
    {
        let _ = writeln!(
            failures,
            "left behind (numsub, shard_numsub, numpat, channels, shard channels): {leftovers:?}"
        );
    }
    // The counters. `publish` counts every delivery offered, queued or
    // dropped by a policy (registry.rs `Tally`), and `stats()` splits that
    // count into delivered (queued) and dropped.
    let calls = total.publishes + total.spublishes;
    if stats.published != calls {
        let _ = writeln!(
            failures,
            "stats().published {} != {calls} calls",
            stats.published
        );
    }
    if stats.delivered + stats.dropped != total.counted {
        let _ = writeln!(
            failures,
            "delivered {} + dropped {} != {} counted by publish",
            stats.delivered, stats.dropped, total.counted
        );
    }
    if total.deliveries > stats.delivered {
        let _ = writeln!(
            failures,
            "{} deliveries received, only {} queued",
            total.deliveries, stats.delivered
        );
    }
    // Every policy's drops are the broker's `dropped` (DropOldest evictions
    // included, see `drop_oldest_evictions_are_in_broker_stats`).
    if stats.dropped < total.dropped_seen {
        let _ = writeln!(
            failures,
            "broker dropped {} < {} dropped by cleanly closed bounded subscribers",
            stats.dropped, total.dropped_seen
        );
    }
    if stats.disconnected != 0 {
        let _ = writeln!(failures, "{} subscribers evicted", stats.disconnected);
    }
    // Nothing is subscribed any more: publishes reach no one.
    for channel in CHANNELS.iter().chain(SHARDS) {
        let counted = broker.publish(*channel, "late") + broker.spublish(*channel, "late");
        if counted != 0 {
            let _ = writeln!(
                failures,
                "a late publish on {channel:?} still counted {counted}"
            );
        }
    }
    failures
}

#[test]
fn randomized_concurrency_soak() {
    let secs = soak_secs();
    let broker = Broker::new();
    let started = Instant::now();
    let reports = run_workers(&broker, started + Duration::from_secs_f64(secs));
    let elapsed = started.elapsed();
    let total = total(reports);
    let stats = broker.stats();
    eprintln!(
        "soak: {:.2}s, {THREADS} threads, {} ops, {} publishes + {} spublishes counting {} deliveries \
         ({} received, {} reported lost), {} subscribers ({} bounded, {} closed cleanly), {stats:?}",
        elapsed.as_secs_f64(),
        total.ops,
        total.publishes,
        total.spublishes,
        total.counted,
        total.deliveries,
        total.missed,
        total.created,
        total.bounded,
        total.clean_closes,
    );
    let mut failures = String::new();
    if total.problems.total > 0 {
        let _ = writeln!(
            failures,
            "{} problem(s) in the streams, first ones:",
            total.problems.total
        );
        for problem in &total.problems.listed {
            let _ = writeln!(failures, "  {problem}");
        }
    }
    failures += &check_broker(&broker, &total);
    assert!(failures.is_empty(), "{failures}");
}

/// A `DropOldest` eviction (counted in the subscriber's own `stats().dropped`
/// and reported as `Lagged`) moves from the broker's `delivered` to its
/// `dropped`, so both counters agree with the subscriber's.
#[test]
fn drop_oldest_evictions_are_in_broker_stats() {
    let broker = Broker::new();
    let sub = broker
        .subscriber_builder()
        .capacity(1)
        .overflow(Overflow::DropOldest)
        .build();
    sub.subscribe(["c"]).unwrap();
    for i in 0..3 {
        assert_eq!(broker.publish("c", i.to_string()), 1);
    }
    let stream: Vec<Message> = sub.try_iter().collect();
    assert_eq!(stream[1], Message::Lagged { missed: 2 });
    assert_eq!(sub.stats().dropped, 2);
    let stats = broker.stats();
    assert_eq!(
        (stats.delivered, stats.dropped),
        (1, 2),
        "the broker should count the two evictions as dropped, as the subscriber does"
    );
}
