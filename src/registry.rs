//! The state every handle shares: channel shards, the pattern table, the
//! subscriber endpoints, and the locking rules that make the guarantees hold.
//!
//! # Locks, and the order they are taken in
//!
//! 1. a subscriber's `held` mutex (its names), held for a whole
//!    (un)subscribe call so that its confirmations' counts come out in
//!    order, and by an overflow eviction or a drop while it removes them;
//! 2. one `Shard` mutex at a time (never two);
//! 3. the `patterns` read/write lock;
//! 4. a bounded subscriber's `front` and `room_lock` mutexes (`Limiter`),
//!    taken by a publisher while it offers a delivery.
//!
//! A thread holding a lock may only take locks further down the list. The
//! `endpoints` mutex and the `tap` lock (`redis` feature) are leaves: nothing else is taken
//! while holding them (the tap runs before a publish takes its shard lock).
//! A publisher never holds a shard lock while evicting: evictions wait until
//! the publish has released it, because eviction starts again at 1.
//!
//! # Why the guarantees hold
//!
//! - A publish holds its channel's shard mutex from its first send to its
//!   last (pattern deliveries included). Two publishes to one channel are
//!   therefore never interleaved, so every subscriber sees them in the same
//!   order: *same order for everyone, per channel*.
//! - A (un)subscribe changes the map and queues its confirmation under the
//!   same lock a publish needs to deliver through that entry, so no delivery
//!   lands before a subscribe confirmation or after an unsubscribe one.
//! - Queues are unbounded crossbeam channels: a send never blocks, so holding
//!   a lock across sends cannot deadlock, and a silent subscriber never
//!   stalls a publisher. The one exception is a bounded subscriber with
//!   `Overflow::Block`, whose publisher waits with its shard lock held (the
//!   documented deadlock hazard); dropping that subscriber wakes it first.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::limits::{BrokerStats, Limiter, Offer};
use crate::subscriber::Held;
use crate::trie::{PatternKey, PatternTrie};
use crate::{Glob, Message, Name};

/// The fast, randomly seeded hasher used by every map.
pub(crate) type Hasher = foldhash::fast::RandomState;
pub(crate) type FastMap<K, V> = HashMap<K, V, Hasher>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, Hasher>;

/// A callback that sees every local `publish` (channel, payload).
#[cfg(feature = "redis")]
pub(crate) type Tap<P> = Arc<dyn Fn(&[u8], &P) + Send + Sync>;

/// Identifies a subscriber inside the broker (never reused).
pub(crate) type SubId = u64;

/// A subscriber's place in a channel's or pattern's list: its queue's
/// sending half and, for a bounded subscriber, its limiter. A subscriber is
/// found again by `Sender::same_channel`, so no id is stored per
/// subscription.
pub(crate) struct Endpoint<P> {
    pub(crate) tx: Sender<Message<P>>,
    pub(crate) limiter: Option<Arc<Limiter<P>>>,
}

impl<P> Clone for Endpoint<P> {
    fn clone(&self) -> Self {
        Endpoint {
            tx: self.tx.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<P> Endpoint<P> {
    /// Queues a delivery, through the limiter when the subscriber is bounded.
    fn offer(&self, message: Message<P>) -> Offer {
        match &self.limiter {
            None => {
                let _ = self.tx.send(message);
                Offer::Queued
            }
            Some(limiter) => limiter.offer(&self.tx, message),
        }
    }
}

/// The subscribers of one channel or pattern. Most names have one or two,
/// so the first lives inline.
type Endpoints<P> = SmallVec<[Endpoint<P>; 1]>;

/// Running totals for `Broker::stats`, kept per shard and written only under
/// the shard's lock (a load and a store, no read-modify-write), so counting
/// costs publishers no contended atomics.
#[derive(Default)]
struct ShardStats {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl ShardStats {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }
}

/// Which of the two channel namespaces a shard map serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// `SUBSCRIBE` / `PUBLISH`.
    Channel,
    /// `SSUBSCRIBE` / `SPUBLISH`.
    Shard,
}

/// One stripe of the channel maps. Channels hash to a stripe, so publishers
/// on different channels rarely touch the same lock.
// `shard_channels` is Redis's name for the namespace, not this struct's.
#[allow(clippy::struct_field_names)]
struct Shard<P> {
    channels: FastMap<Name, Endpoints<P>>,
    shard_channels: FastMap<Name, Endpoints<P>>,
    stats: ShardStats,
}

impl<P> Shard<P> {
    fn map(&self, space: Space) -> &FastMap<Name, Endpoints<P>> {
        match space {
            Space::Channel => &self.channels,
            Space::Shard => &self.shard_channels,
        }
    }

    fn map_mut(&mut self, space: Space) -> &mut FastMap<Name, Endpoints<P>> {
        match space {
            Space::Channel => &mut self.channels,
            Space::Shard => &mut self.shard_channels,
        }
    }
}

/// Keeps each shard's lock on its own cache line, so two publishers on
/// different shards do not slow each other down through false sharing.
#[repr(align(128))]
struct Padded<T>(T);

/// One distinct live pattern and its subscribers. The compiled tokens live
/// only in the trie; removal compiles the name again rather than keeping a
/// second copy per pattern.
struct PatternEntry<P> {
    name: Name,
    /// False when Redis's nesting limit rules out every match: such a
    /// pattern counts and confirms, but is not in the trie.
    in_trie: bool,
    subscribers: Endpoints<P>,
}

/// Every distinct live pattern, and the trie that finds the matching ones.
struct PatternTable<P> {
    /// Keyed by creation sequence, which is also the documented pmessage
    /// order (the order the patterns came to life).
    by_seq: BTreeMap<PatternKey, PatternEntry<P>>,
    /// Pattern name → its key in `by_seq`.
    seq_of: FastMap<Name, PatternKey>,
    next_seq: PatternKey,
    /// Every matchable pattern of `by_seq`, compiled together. Edited in
    /// place under the write lock (an insert or removal costs O(pattern
    /// length)), so a subscriber churning patterns holds publishers up for
    /// no longer than that.
    trie: PatternTrie,
}

/// The broker's state, shared by every `Broker` handle (strongly) and every
/// `Subscriber` (weakly: subscribers must not keep the broker alive, or they
/// could never learn that it is gone).
pub(crate) struct Registry<P> {
    shards: Box<[Padded<Mutex<Shard<P>>>]>,
    patterns: RwLock<PatternTable<P>>,
    /// The number of distinct live patterns, readable without the lock, so a
    /// publish skips the pattern table entirely when there are none.
    pattern_count: AtomicUsize,
    /// Each live subscriber's endpoint, for its confirmations. Owned here so
    /// that dropping the last broker handle drops every sender and
    /// subscribers see "disconnected" once drained.
    endpoints: Mutex<FastMap<SubId, Endpoint<P>>>,
    /// Subscribers evicted by `Overflow::Disconnect` (rare: one atomic).
    evicted: AtomicU64,
    /// Sees every `Broker::publish` before delivery (the Redis bridge);
    /// `tapped` lets a publish skip the lock when there is none. Compiled
    /// only with the `redis` feature: without it a publish pays nothing.
    #[cfg(feature = "redis")]
    tap: RwLock<Option<Tap<P>>>,
    #[cfg(feature = "redis")]
    tapped: std::sync::atomic::AtomicBool,
    next_id: AtomicU64,
    hasher: Hasher,
}

impl<P> std::fmt::Debug for Registry<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("shards", &self.shards.len())
            .field("patterns", &self.pattern_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<P> Registry<P> {
    pub(crate) fn new() -> Self {
        // Enough stripes that distinct hot channels rarely share one, on
        // machines much wider than the one a benchmark runs on.
        let stripes = std::thread::available_parallelism()
            .map_or(8, std::num::NonZeroUsize::get)
            .saturating_mul(8)
            .clamp(16, 1024)
            .next_power_of_two();
        let shards = (0..stripes)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    channels: FastMap::default(),
                    shard_channels: FastMap::default(),
                    stats: ShardStats::default(),
                }))
            })
            .collect();
        Registry {
            shards,
            patterns: RwLock::new(PatternTable {
                by_seq: BTreeMap::new(),
                seq_of: FastMap::default(),
                next_seq: 0,
                trie: PatternTrie::new(),
            }),
            pattern_count: AtomicUsize::new(0),
            endpoints: Mutex::new(FastMap::default()),
            evicted: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            tap: RwLock::new(None),
            #[cfg(feature = "redis")]
            tapped: std::sync::atomic::AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            hasher: Hasher::default(),
        }
    }

    fn shard(&self, name: &[u8]) -> &Mutex<Shard<P>> {
        let hash = self.hasher.hash_one(name);
        // The top bits: the map inside the shard uses the low ones.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index].0
    }

    // ---- subscribers -------------------------------------------------------

    /// A fresh subscriber id.
    pub(crate) fn next_id(&self) -> SubId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers subscriber `id`'s endpoint.
    pub(crate) fn register(&self, id: SubId, endpoint: Endpoint<P>) {
        self.endpoints.lock().insert(id, endpoint);
    }

    /// Subscriber `id`'s endpoint, for its subscriptions and confirmations;
    /// `None` once it is unregistered (dropped or evicted).
    pub(crate) fn endpoint(&self, id: SubId) -> Option<Endpoint<P>> {
        self.endpoints.lock().get(&id).cloned()
    }

    // ---- channels ----------------------------------------------------------

    /// Adds `endpoint`'s subscriber to channel `name` in `space` and queues
    /// `confirmation`, atomically with respect to publishes on `name`.
    /// Confirmations are never subject to a limit.
    pub(crate) fn add_channel(
        &self,
        space: Space,
        name: &Name,
        endpoint: &Endpoint<P>,
        confirmation: Message<P>,
    ) {
        let mut shard = self.shard(name).lock();
        shard
            .map_mut(space)
            .entry(name.clone())
            .or_default()
            .push(endpoint.clone());
        // Under the lock: no delivery on `name` can overtake it.
        let _ = endpoint.tx.send(confirmation);
    }

    /// Removes the subscriber that owns `tx` from channel `name` in `space`
    /// (dropping the entry when it was the last) and queues `confirmation`,
    /// if any, atomically with respect to publishes on `name`.
    pub(crate) fn remove_channel(
        &self,
        space: Space,
        name: &Name,
        tx: &Sender<Message<P>>,
        confirmation: Option<Message<P>>,
    ) {
        let mut shard = self.shard(name).lock();
        let map = shard.map_mut(space);
        if let MapEntry::Occupied(mut entry) = map.entry(name.clone()) {
            remove_endpoint(entry.get_mut(), tx);
            if entry.get().is_empty() {
                entry.remove();
                shrink_when_sparse(map);
            }
        }
        if let Some(confirmation) = confirmation {
            let _ = tx.send(confirmation);
        }
    }

    // ---- patterns ----------------------------------------------------------

    /// Adds `endpoint`'s subscriber to `pattern` (creating the pattern's
    /// entry if it is new) and queues `confirmation`, atomically with respect
    /// to every publish.
    pub(crate) fn add_pattern(
        &self,
        pattern: &Name,
        endpoint: &Endpoint<P>,
        confirmation: Message<P>,
    ) {
        let mut table = self.patterns.write();
        let table = &mut *table;
        let seq = match table.seq_of.entry(pattern.clone()) {
            MapEntry::Occupied(entry) => *entry.get(),
            MapEntry::Vacant(entry) => {
                let seq = table.next_seq;
                table.next_seq += 1;
                entry.insert(seq);
                let glob = Glob::new(pattern);
                let in_trie = !glob.is_unmatchable();
                if in_trie {
                    table.trie.insert(glob.tokens(), seq);
                }
                table.by_seq.insert(
                    seq,
                    PatternEntry {
                        name: pattern.clone(),
                        in_trie,
                        subscribers: SmallVec::new(),
                    },
                );
                self.pattern_count.fetch_add(1, Ordering::Release);
                seq
            }
        };
        let entry = table.by_seq.get_mut(&seq).expect("seq_of and by_seq agree");
        entry.subscribers.push(endpoint.clone());
        let _ = endpoint.tx.send(confirmation);
    }

    /// Removes the subscriber that owns `tx` from `pattern` (dropping the
    /// pattern when it was the last) and queues `confirmation`, if any,
    /// atomically with respect to every publish.
    pub(crate) fn remove_pattern(
        &self,
        pattern: &Name,
        tx: &Sender<Message<P>>,
        confirmation: Option<Message<P>>,
    ) {
        let mut table = self.patterns.write();
        let table = &mut *table;
        if let Some(&seq) = table.seq_of.get(pattern.as_bytes()) {
            let entry = table.by_seq.get_mut(&seq).expect("seq_of and by_seq agree");
            remove_endpoint(&mut entry.subscribers, tx);
            if entry.subscribers.is_empty() {
                if entry.in_trie {
                    table.trie.remove(Glob::new(pattern).tokens(), seq);
                }
                table.by_seq.remove(&seq);
                table.seq_of.remove(pattern.as_bytes());
                shrink_when_sparse(&mut table.seq_of);
                self.pattern_count.fetch_sub(1, Ordering::Release);
            }
        }
        if let Some(confirmation) = confirmation {
            let _ = tx.send(confirmation);
        }
    }

    /// Removes every subscription in `held` (silently) and unregisters
    /// subscriber `id`: what dropping a subscriber and evicting it for
    /// overflow both do.
    pub(crate) fn forget(&self, id: SubId, tx: &Sender<Message<P>>, held: &mut Held) {
        for name in held.channels.drain() {
            self.remove_channel(Space::Channel, &name, tx, None);
        }
        for name in held.shards.drain() {
            self.remove_channel(Space::Shard, &name, tx, None);
        }
        for name in held.patterns.drain() {
            self.remove_pattern(&name, tx, None);
        }
        *held = Held::default();
        self.endpoints.lock().remove(&id);
    }

    /// Evicts a bounded subscriber that overflowed under
    /// `Overflow::Disconnect`. Called with no lock held.
    fn evict(&self, endpoint: &Endpoint<P>) {
        let Some(limiter) = &endpoint.limiter else {
            return;
        };
        let mut held = limiter.held.lock();
        self.forget(limiter.id, &endpoint.tx, &mut held);
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Installs (or, with `None`, removes) the publish tap; returns false
    /// when installing over an existing one.
    #[cfg(feature = "redis")]
    pub(crate) fn set_tap(&self, tap: Option<Tap<P>>) -> bool {
        let mut slot = self.tap.write();
        if tap.is_some() && slot.is_some() {
            return false;
        }
        self.tapped.store(tap.is_some(), Ordering::Release);
        *slot = tap;
        true
    }

    /// Shows a local publish to the tap, if there is one.
    #[cfg(feature = "redis")]
    pub(crate) fn tap(&self, channel: &[u8], payload: &P) {
        if self.tapped.load(Ordering::Acquire) {
            if let Some(tap) = &*self.tap.read() {
                tap(channel, payload);
            }
        }
    }

    /// The broker-wide counters.
    pub(crate) fn stats(&self) -> BrokerStats {
        let mut stats = BrokerStats::default();
        for shard in &*self.shards {
            let shard = shard.0.lock();
            stats.published += shard.stats.published.load(Ordering::Relaxed);
            stats.delivered += shard.stats.delivered.load(Ordering::Relaxed);
            stats.dropped += shard.stats.dropped.load(Ordering::Relaxed);
        }
        stats.disconnected = self.evicted.load(Ordering::Relaxed);
        stats
    }

    /// The number of distinct live patterns.
    pub(crate) fn numpat(&self) -> usize {
        self.pattern_count.load(Ordering::Acquire)
    }
}

impl<P: Clone> Registry<P> {
    // ---- publishing --------------------------------------------------------

    /// Delivers `payload` on `channel` to its exact subscribers in `space`
    /// and, for [`Space::Channel`], to every matching pattern's subscribers;
    /// returns the number of deliveries (Redis's count).
    pub(crate) fn publish(&self, space: Space, channel: &[u8], payload: P) -> usize {
        let shard = self.shard(channel).lock();
        let check_patterns =
            space == Space::Channel && self.pattern_count.load(Ordering::Acquire) > 0;
        // Every delivery but the last gets a clone; the last takes the payload
        // itself, so a publish to one subscriber clones nothing.
        let mut payload = Some(payload);
        let mut hand_out = |last: bool| {
            match (last, &mut payload) {
                (true, payload) => payload.take(),
                (false, Some(payload)) => Some(payload.clone()),
                (false, None) => None,
            }
            .expect("only the last delivery takes the payload")
        };
        let mut tally = Tally::default();
        // The channel's `Name`: taken from the map when the channel has
        // exact subscribers, built at most once otherwise.
        let mut name: Option<Name> = None;
        if let Some((key, endpoints)) = shard.map(space).get_key_value(channel) {
            for (at, endpoint) in endpoints.iter().enumerate() {
                let payload = hand_out(!check_patterns && at + 1 == endpoints.len());
                let channel = key.clone();
                let message = match space {
                    Space::Channel => Message::Message { channel, payload },
                    Space::Shard => Message::SMessage { channel, payload },
                };
                tally.count(endpoint, endpoint.offer(message));
            }
            if check_patterns {
                name = Some(key.clone());
            }
        }
        if check_patterns {
            let table = self.patterns.read();
            let mut matched: SmallVec<[PatternKey; 8]> = SmallVec::new();
            table.trie.matches_into(channel, &mut matched);
            // Creation order: the documented pmessage order.
            matched.sort_unstable();
            for (nth, seq) in matched.iter().enumerate() {
                let entry = &table.by_seq[seq];
                let channel_name = name.get_or_insert_with(|| Name::from(channel));
                for (at, endpoint) in entry.subscribers.iter().enumerate() {
                    let last = nth + 1 == matched.len() && at + 1 == entry.subscribers.len();
                    let message = Message::PMessage {
                        pattern: entry.name.clone(),
                        channel: channel_name.clone(),
                        payload: hand_out(last),
                    };
                    tally.count(endpoint, endpoint.offer(message));
                }
            }
        }
        ShardStats::add(&shard.stats.published, 1);
        ShardStats::add(&shard.stats.delivered, tally.queued);
        ShardStats::add(&shard.stats.dropped, tally.dropped);
        // Hold the shard lock to the end: the next publish on this channel
        // must not start delivering before this one has finished.
        drop(shard);
        for endpoint in &tally.evict {
            self.evict(endpoint);
        }
        tally.counted
    }

    // ---- introspection -----------------------------------------------------

    /// Live channels in `space`, filtered by `pattern`, sorted by bytes.
    pub(crate) fn channels(&self, space: Space, pattern: Option<&Glob>) -> Vec<Name> {
        let mut names = Vec::new();
        for shard in &*self.shards {
            let shard = shard.0.lock();
            names.extend(
                shard
                    .map(space)
                    .keys()
                    .filter(|name| pattern.map_or(true, |glob| glob.is_match(name)))
                    .cloned(),
            );
        }
        names.sort_unstable();
        names
    }

    /// The number of exact subscribers of `name` in `space`.
    pub(crate) fn numsub(&self, space: Space, name: &[u8]) -> usize {
        self.shard(name)
            .lock()
            .map(space)
            .get(name)
            .map_or(0, SmallVec::len)
    }
}

/// Gives a map's memory back once it is mostly empty, so a burst of names
/// does not pin its peak capacity for the broker's lifetime. Halving only at
/// a quarter full keeps the cost amortized O(1) per removal.
pub(crate) fn shrink_when_sparse<T: Sparse>(map: &mut T) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// The maps and sets `shrink_when_sparse` serves.
pub(crate) trait Sparse {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, capacity: usize);
}

impl<K: std::hash::Hash + Eq, V> Sparse for FastMap<K, V> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn capacity(&self) -> usize {
        HashMap::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        HashMap::shrink_to(self, capacity);
    }
}

impl<K: std::hash::Hash + Eq> Sparse for FastSet<K> {
    fn len(&self) -> usize {
        std::collections::HashSet::len(self)
    }
    fn capacity(&self) -> usize {
        std::collections::HashSet::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        std::collections::HashSet::shrink_to(self, capacity);
    }
}

/// What one publish did, endpoint by endpoint.
struct Tally<P> {
    /// Redis's count: every subscriber the message was offered to, queued
    /// or dropped by its policy.
    counted: usize,
    queued: u64,
    dropped: u64,
    /// Subscribers that overflowed under `Overflow::Disconnect`, evicted
    /// once the shard lock is released.
    evict: SmallVec<[Endpoint<P>; 1]>,
}

impl<P> Default for Tally<P> {
    fn default() -> Self {
        Tally {
            counted: 0,
            queued: 0,
            dropped: 0,
            evict: SmallVec::new(),
        }
    }
}

impl<P> Tally<P> {
    fn count(&mut self, endpoint: &Endpoint<P>, offer: Offer) {
        match offer {
            Offer::Queued => {
                self.counted += 1;
                self.queued += 1;
            }
            Offer::Dropped => {
                self.counted += 1;
                self.dropped += 1;
            }
            Offer::Displaced => {
                // The new delivery takes the place of an older one, which
                // was counted as delivered when it was queued and is now lost.
                self.counted += 1;
                self.dropped += 1;
            }
            Offer::Evict => {
                self.counted += 1;
                self.dropped += 1;
                self.evict.push(endpoint.clone());
            }
            Offer::Gone => {}
        }
    }
}

fn remove_endpoint<P>(endpoints: &mut Endpoints<P>, tx: &Sender<Message<P>>) {
    if let Some(at) = endpoints
        .iter()
        .position(|endpoint| endpoint.tx.same_channel(tx))
    {
        endpoints.swap_remove(at);
    }
}
