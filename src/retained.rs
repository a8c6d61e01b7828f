//! Late joiners: the messages a channel retains, and their exact hand-over
//! to a subscriber that joins with history (beyond Redis).
//!
//! # What is kept where
//!
//! Retention *rules* (channel → depth, glob → depth, shard channel → depth)
//! live behind one sharded read/write lock. Retained messages live in
//! *stores*, one per retained channel, in [`STORE_SHARDS`] maps of their
//! own, each behind a leaf mutex. Everything is created on the first rule,
//! so a broker that never retains pays one atomic load per publish.
//!
//! # Locks
//!
//! In the order of `registry`'s list, the retention locks come after the
//! pattern table and before a mailbox's queue:
//!
//! - the rules lock is taken alone by a publisher (to learn a channel's
//!   depth, released at once), and before the stores by a rule change;
//! - a store shard's mutex is taken under a channel's stripe (publishers,
//!   channel joiners), under the pattern table's read lock (publishers) or
//!   write lock (pattern joiners), but never while holding another store
//!   shard, except by `limit_bytes`, which takes them all in index order
//!   holding nothing else.
//!
//! Nobody waits for retention: a joiner never waits for a publish, and a
//! publish never waits for a joiner, beyond the locks above.
//!
//! # Why the hand-over is exact
//!
//! Claim: for every channel `c` and every subscription `s` made with
//! history that covers `c`, the retained messages `s` receives for `c`
//! followed by the live ones are exactly `c`'s publishes from some point
//! on, with no gap and no duplicate.
//!
//! A store only ever changes by appending a publish (under the conditions
//! below), dropping its *oldest* messages (depth, limits) or being emptied
//! (clearing, rules): at any moment it holds the latest `k` publishes of
//! its channel recorded so far, for some `k`. And publishes on `c` are
//! recorded in `c`'s order, since each records under `c`'s stripe lock. So
//! it is enough that every publish of `c` is either in `s`'s snapshot or
//! delivered live to `s` (through `s`), not both, and that the snapshot's
//! publishes come before the live ones in `s`'s stream.
//!
//! A publish of `c` records itself in `c`'s store **under `c`'s stripe
//! lock**, and, on the channel namespace, **while holding the pattern
//! table's read lock** (a publisher on a retained channel takes that lock
//! even when no pattern is live: the one change to the fast path).
//!
//! - *Channel (and shard channel) joiners* add themselves, queue their
//!   confirmation and take the snapshot in one section under `c`'s stripe
//!   lock. A publish records itself and plans its deliveries (copies the
//!   list of `c`'s subscribers, and appends to `c`'s log for the
//!   subscribers that read it, whose cursors start at the log's end when
//!   they join) in one section under that lock too, and then delivers only
//!   to the subscribers it planned, even when it lets go of the lock to
//!   wait for room (the busy mark). So a publish planned
//!   before the join is in the snapshot and never delivered to the joiner,
//!   and one planned after is delivered to it and recorded after the
//!   snapshot.
//! - *Pattern joiners* add themselves, queue their confirmation (stamping
//!   their mailbox with the new table version) and take the snapshot of
//!   every matching channel in one write-lock section `W`. A publish reads
//!   the table (who gets a `pmessage`) and records itself in one read-lock
//!   section `R`, and `R` is wholly before or after `W`. After: it sees the
//!   joiner and delivers to it through `s` (at a version not older than
//!   the joiner's stamp), and its record is not in the snapshot. Before:
//!   its record is in the snapshot, and its plan, made in `R`, has no
//!   `pmessage` through `s`. One path could add one later: a publish that
//!   must wait for a bounded subscriber (`Overflow::Block`) lets go of the
//!   read lock before it delivers, and when a subscriber's stamp shows its
//!   patterns changed since `R`, it recomputes that subscriber's
//!   `pmessage`s from the current table, which holds `s`. So the mailbox
//!   remembers, for each pattern held that was joined with history, the
//!   table version of the join, and a retained publish's recomputation
//!   leaves out the patterns joined with history after its own `R`: their
//!   snapshots hold it. (A pattern joined *without* history in the
//!   meantime still gets it, as before.)
//!
//! In both cases the snapshot is queued right behind the confirmation,
//! under the mailbox's lock, while the joiner still holds the lock every
//! later-planned publish of `c` needs, so every live message of `c` comes
//! after it. Clearing, depth changes and limit evictions only remove
//! a store's oldest messages (or all of them), which keeps a snapshot a
//! run of consecutive publishes ending at the join.
//!
//! Each `*subscribe_with_history` call that adds a name takes a fresh
//! snapshot; a name already held is only confirmed again (its live
//! messages already flow), with no history.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_utils::sync::ShardedLock;
use parking_lot::Mutex;

use crate::fast_hash::{shrink_when_sparse, FastMap, Hasher};
use crate::mailbox::{Mailbox, Offered};
use crate::space::Space;
use crate::{BrokerStats, Glob, Message, Name, Source};

/// How many store maps there are: publishers on different retained
/// channels rarely share one.
pub(crate) const STORE_SHARDS: usize = 64;

/// A broker's retention: rules, stores, limits and counters, made on the
/// first rule.
pub(crate) struct Retained<P> {
    state: OnceLock<Box<State<P>>>,
}

struct State<P> {
    /// Whether any rule exists, read by every publish before the rules.
    any: AtomicBool,
    rules: ShardedLock<Rules>,
    stores: Box<[Mutex<Stores<P>>]>,
    hasher: Hasher,
    /// How to weigh a payload, set by the first byte limit.
    weigh: OnceLock<fn(&P) -> usize>,
    max_messages: AtomicUsize,
    max_bytes: AtomicUsize,
    /// Messages, weighed bytes and stores retained now.
    messages: AtomicUsize,
    bytes: AtomicUsize,
    channels: AtomicUsize,
    /// Messages dropped from stores by a limit.
    evicted: AtomicU64,
    /// Retained messages offered to joiners, and what became of them.
    replayed: AtomicU64,
    replay_queued: AtomicU64,
    replay_dropped: AtomicU64,
    replay_pushed_out: AtomicU64,
}

/// Which channels retain, and how many messages.
#[derive(Default)]
struct Rules {
    channels: FastMap<Name, usize>,
    shards: FastMap<Name, usize>,
    /// Glob rules (channel namespace), in the order they were made.
    patterns: Vec<(Glob, usize)>,
}

impl Rules {
    /// How many messages `channel` retains: the largest depth among the
    /// rules that cover it, 0 for none.
    fn depth(&self, space: Space, channel: &[u8]) -> usize {
        match space {
            Space::Shard => self.shards.get(channel).copied().unwrap_or(0),
            Space::Channel => {
                let exact = self.channels.get(channel).copied().unwrap_or(0);
                self.patterns
                    .iter()
                    .filter(|(glob, _)| glob.is_match(channel))
                    .fold(exact, |depth, (_, n)| depth.max(*n))
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.shards.is_empty() && self.patterns.is_empty()
    }
}

/// The stores of one shard, per namespace.
struct Stores<P> {
    channels: FastMap<Name, Store<P>>,
    shards: FastMap<Name, Store<P>>,
}

impl<P> Stores<P> {
    fn map(&self, space: Space) -> &FastMap<Name, Store<P>> {
        match space {
            Space::Channel => &self.channels,
            Space::Shard => &self.shards,
        }
    }

    fn map_mut(&mut self, space: Space) -> &mut FastMap<Name, Store<P>> {
        match space {
            Space::Channel => &mut self.channels,
            Space::Shard => &mut self.shards,
        }
    }
}

/// Gives a store map's memory back: all of it once the map is empty.
fn release<P>(map: &mut FastMap<Name, Store<P>>) {
    if map.is_empty() {
        map.shrink_to_fit();
    } else {
        shrink_when_sparse(map);
    }
}

/// One channel's retained messages, oldest first.
struct Store<P> {
    messages: VecDeque<P>,
    /// Their weighed bytes (0 without a byte limit).
    bytes: usize,
}

impl<P> State<P> {
    fn shard(&self, channel: &[u8]) -> &Mutex<Stores<P>> {
        let index = (self.hasher.hash_one(channel) >> 32) as usize % STORE_SHARDS;
        &self.stores[index]
    }

    fn weight(&self, payload: &P) -> usize {
        self.weigh.get().map_or(0, |weigh| weigh(payload).max(1))
    }

    fn over_limit(&self) -> bool {
        self.messages.load(Ordering::Relaxed) > self.max_messages.load(Ordering::Relaxed)
            || self.bytes.load(Ordering::Relaxed) > self.max_bytes.load(Ordering::Relaxed)
    }

    /// Drops `store`'s oldest message, returning its memory to the totals.
    fn pop(&self, store: &mut Store<P>) -> bool {
        let Some(oldest) = store.messages.pop_front() else {
            return false;
        };
        let weight = self.weight(&oldest);
        store.bytes -= weight;
        self.messages.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(weight, Ordering::Relaxed);
        true
    }

    /// Empties and forgets a store (its shard is locked by the caller).
    fn discard(&self, store: &Store<P>) -> usize {
        let count = store.messages.len();
        self.messages.fetch_sub(count, Ordering::Relaxed);
        self.bytes.fetch_sub(store.bytes, Ordering::Relaxed);
        self.channels.fetch_sub(1, Ordering::Relaxed);
        count
    }

    /// Trims every store to what the rules now say, forgetting the empty.
    fn sweep(&self) {
        let rules = self
            .rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for shard in &*self.stores {
            let mut shard = shard.lock();
            for space in [Space::Channel, Space::Shard] {
                let map = shard.map_mut(space);
                map.retain(|name, store| {
                    let depth = rules.depth(space, name);
                    while store.messages.len() > depth && self.pop(store) {}
                    if store.messages.is_empty() {
                        self.channels.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                    true
                });
                release(map);
            }
        }
    }

    /// Evicts oldest messages, store by store, until the totals fit.
    fn enforce(&self) {
        for shard in &*self.stores {
            if !self.over_limit() {
                return;
            }
            let mut shard = shard.lock();
            for space in [Space::Channel, Space::Shard] {
                let map = shard.map_mut(space);
                map.retain(|_, store| {
                    while self.over_limit() && self.pop(store) {
                        self.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    if store.messages.is_empty() {
                        self.channels.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                    true
                });
                release(map);
            }
        }
    }
}

impl<P> Retained<P> {
    pub(crate) fn new() -> Self {
        Retained {
            state: OnceLock::new(),
        }
    }

    fn state(&self) -> &State<P> {
        self.state.get_or_init(|| {
            Box::new(State {
                any: AtomicBool::new(false),
                rules: ShardedLock::new(Rules::default()),
                stores: (0..STORE_SHARDS)
                    .map(|_| {
                        Mutex::new(Stores {
                            channels: FastMap::default(),
                            shards: FastMap::default(),
                        })
                    })
                    .collect(),
                hasher: Hasher::default(),
                weigh: OnceLock::new(),
                max_messages: AtomicUsize::new(usize::MAX),
                max_bytes: AtomicUsize::new(usize::MAX),
                messages: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                channels: AtomicUsize::new(0),
                evicted: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                replay_queued: AtomicU64::new(0),
                replay_dropped: AtomicU64::new(0),
                replay_pushed_out: AtomicU64::new(0),
            })
        })
    }

    // ---- publishers ---------------------------------------------------------

    /// How many messages a publish on `channel` must retain (0: none).
    /// Called under the channel's stripe lock, before the pattern table is
    /// read; one atomic load when nothing is retained.
    pub(crate) fn depth(&self, space: Space, channel: &[u8]) -> usize {
        let Some(state) = self.state.get() else {
            return 0;
        };
        if !state.any.load(Ordering::Acquire) {
            return 0;
        }
        state
            .rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .depth(space, channel)
    }

    // ---- joiners ------------------------------------------------------------

    fn count_replay(&self, offered: Offered) {
        if offered.counted == 0 {
            return;
        }
        if let Some(state) = self.state.get() {
            state.replayed.fetch_add(offered.counted, Ordering::Relaxed);
            state
                .replay_queued
                .fetch_add(offered.queued, Ordering::Relaxed);
            state
                .replay_dropped
                .fetch_add(offered.dropped, Ordering::Relaxed);
            state
                .replay_pushed_out
                .fetch_add(offered.pushed_out, Ordering::Relaxed);
        }
    }

    // ---- stats ----------------------------------------------------------------

    /// Adds retention's figures to the broker's counters.
    pub(crate) fn fill(&self, figures: &mut BrokerStats) {
        let Some(state) = self.state.get() else {
            return;
        };
        let load = |counter: &AtomicUsize| counter.load(Ordering::Relaxed) as u64;
        figures.retained = load(&state.messages);
        figures.retained_bytes = load(&state.bytes);
        figures.retained_channels = load(&state.channels);
        figures.retained_evicted = state.evicted.load(Ordering::Relaxed);
        figures.replayed = state.replayed.load(Ordering::Relaxed);
        let pushed_out = state.replay_pushed_out.load(Ordering::Relaxed);
        figures.delivered = (figures.delivered + state.replay_queued.load(Ordering::Relaxed))
            .saturating_sub(pushed_out);
        figures.dropped += state.replay_dropped.load(Ordering::Relaxed) + pushed_out;
    }
}

impl<P: Clone> Retained<P> {
    /// Records a publish on `channel` in its store, keeping the last
    /// `depth` (> 0) within the limits. Called under the channel's stripe
    /// lock and, for [`Space::Channel`], the pattern table's read lock.
    pub(crate) fn record(&self, space: Space, channel: &[u8], payload: &P, depth: usize) {
        let Some(state) = self.state.get() else {
            return;
        };
        let mut shard = state.shard(channel).lock();
        let map = shard.map_mut(space);
        if !map.contains_key(channel) {
            map.insert(
                Name::from(channel),
                Store {
                    messages: VecDeque::with_capacity(depth.min(16)),
                    bytes: 0,
                },
            );
            state.channels.fetch_add(1, Ordering::Relaxed);
        }
        let store = map.get_mut(channel).expect("inserted above");
        // Make room first, so a store never grows past its depth.
        while store.messages.len() >= depth && state.pop(store) {}
        let weight = state.weight(payload);
        store.messages.push_back(payload.clone());
        store.bytes += weight;
        state.messages.fetch_add(1, Ordering::Relaxed);
        state.bytes.fetch_add(weight, Ordering::Relaxed);
        // Over a limit: this store gives up its own oldest messages.
        while state.over_limit() && state.pop(store) {
            state.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if store.messages.is_empty() {
            map.remove(channel);
            state.channels.fetch_sub(1, Ordering::Relaxed);
            release(map);
        }
    }

    /// Under `name`'s stripe lock: queues a channel (or shard channel)
    /// joiner's confirmation followed by what `name` retains.
    pub(crate) fn join_channel(
        &self,
        space: Space,
        name: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Message<P>,
    ) {
        let source = match space {
            Space::Channel => Source::Channel(name.clone()),
            Space::Shard => Source::Shard(name.clone()),
        };
        let mut retained = Vec::new();
        if let Some(state) = self.state.get() {
            let shard = state.shard(name).lock();
            if let Some(store) = shard.map(space).get(name.as_bytes()) {
                retained.extend(store.messages.iter().map(|payload| Message::Retained {
                    source: source.clone(),
                    channel: name.clone(),
                    payload: payload.clone(),
                }));
            }
        }
        let offered = mailbox.confirm_retained(confirmation, retained, None);
        self.count_replay(offered);
    }

    /// Under the pattern table's write lock: queues a pattern joiner's
    /// confirmation followed by what every matching channel retains,
    /// channel by channel in byte order.
    pub(crate) fn join_pattern(
        &self,
        pattern: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Message<P>,
        version: u64,
    ) {
        let mut channels: Vec<(Name, Vec<P>)> = Vec::new();
        if let Some(state) = self.state.get() {
            let glob = Glob::new(pattern);
            for shard in &*state.stores {
                let shard = shard.lock();
                channels.extend(
                    shard
                        .channels
                        .iter()
                        .filter(|(name, _)| glob.is_match(name))
                        .map(|(name, store)| {
                            (name.clone(), store.messages.iter().cloned().collect())
                        }),
                );
            }
        }
        channels.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let retained = channels
            .into_iter()
            .flat_map(|(channel, payloads)| {
                payloads.into_iter().map(move |payload| Message::Retained {
                    source: Source::Pattern(pattern.clone()),
                    channel: channel.clone(),
                    payload,
                })
            })
            .collect();
        let offered = mailbox.confirm_retained(confirmation, retained, Some((pattern, version)));
        self.count_replay(offered);
    }

    // ---- the broker's controls -------------------------------------------------

    pub(crate) fn set_rule(&self, rule: Rule, depth: usize) {
        let state = self.state();
        {
            let mut rules = state
                .rules
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match rule {
                Rule::Channel(space, name) => {
                    let map = match space {
                        Space::Channel => &mut rules.channels,
                        Space::Shard => &mut rules.shards,
                    };
                    if depth == 0 {
                        map.remove(name.as_bytes());
                        shrink_when_sparse(map);
                    } else {
                        map.insert(name, depth);
                    }
                }
                Rule::Pattern(glob) => {
                    rules
                        .patterns
                        .retain(|(old, _)| old.as_name() != glob.as_name());
                    if depth > 0 {
                        rules.patterns.push((glob, depth));
                    }
                    if rules.patterns.is_empty() {
                        rules.patterns = Vec::new();
                    }
                }
            }
            state.any.store(!rules.is_empty(), Ordering::Release);
        }
        state.sweep();
    }

    /// Drops what `channel` retains; returns how many messages that was.
    pub(crate) fn clear(&self, space: Space, channel: &[u8]) -> usize {
        let Some(state) = self.state.get() else {
            return 0;
        };
        let mut shard = state.shard(channel).lock();
        let map = shard.map_mut(space);
        let cleared = map.remove(channel).map_or(0, |store| state.discard(&store));
        release(map);
        cleared
    }

    pub(crate) fn clear_all(&self) -> usize {
        let Some(state) = self.state.get() else {
            return 0;
        };
        let mut cleared = 0;
        for shard in &*state.stores {
            let mut shard = shard.lock();
            for space in [Space::Channel, Space::Shard] {
                let map = std::mem::take(shard.map_mut(space));
                cleared += map
                    .values()
                    .map(|store| state.discard(store))
                    .sum::<usize>();
            }
        }
        cleared
    }

    pub(crate) fn snapshot(&self, space: Space, channel: &[u8]) -> Vec<P> {
        let Some(state) = self.state.get() else {
            return Vec::new();
        };
        let shard = state.shard(channel).lock();
        shard
            .map(space)
            .get(channel)
            .map(|store| store.messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn limit_messages(&self, max: usize) {
        let state = self.state();
        state.max_messages.store(max, Ordering::Relaxed);
        state.enforce();
    }

    pub(crate) fn limit_bytes(&self, max: usize, weigh: fn(&P) -> usize) {
        let state = self.state();
        if state.weigh.get().is_none() {
            // Every shard at once: no record sees the weigher half set up.
            let mut shards: Vec<_> = state.stores.iter().map(|shard| shard.lock()).collect();
            if state.weigh.set(weigh).is_ok() {
                let mut total = 0;
                for shard in &mut shards {
                    for space in [Space::Channel, Space::Shard] {
                        for store in shard.map_mut(space).values_mut() {
                            store.bytes = store.messages.iter().map(|p| state.weight(p)).sum();
                            total += store.bytes;
                        }
                    }
                }
                state.bytes.store(total, Ordering::Relaxed);
            }
        }
        state.max_bytes.store(max, Ordering::Relaxed);
        state.enforce();
    }
}

/// What a retention rule covers.
pub(crate) enum Rule {
    /// One channel (or shard channel).
    Channel(Space, Name),
    /// Every channel a glob matches.
    Pattern(Glob),
}
