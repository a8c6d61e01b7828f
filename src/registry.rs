//! The routing state every handle shares: channel shards, the pattern
//! table, the list of live mailboxes, and the locking rules that make the
//! guarantees hold.
//!
//! # Locks, and the order they are taken in
//!
//! 1. a subscriber's `held` mutex (its names, in its [`Mailbox`]), held for a
//!    whole (un)subscribe call so that its confirmations' counts come out
//!    in order, and by an overflow eviction or a drop while it removes them;
//! 2. one stripe mutex of the channel maps at a time (never two);
//! 3. the pattern table's sharded read/write lock (a publisher reads one
//!    shard of it; a pattern (un)subscribe writes every shard);
//! 4. a mailbox's queue mutex;
//! 5. a mailbox's receivers' spin lock (its batch and log cursor);
//! 6. a channel log's sleepers mutex (a leaf: an append takes it under the
//!    stripe, a receiver registering with the log under 4 and 5).
//!
//! A thread holding a lock may only take locks further down the list (one
//! exception, which cannot deadlock: moving a channel's first subscriber
//! onto the channel's log *tries* its `held` under the stripe, and leaves
//! it where it is if that fails). The
//! `mailboxes` mutex and the `tap` lock (`redis` feature) are leaves too.
//! Retention's locks (see `retained`) sit between 3 and 4.
//!
//! **Nobody waits while holding a lock.** A publisher that must wait for
//! room (`Overflow::Block`/`BlockFor`) first marks its channel *busy* in the
//! stripe, copies what it will deliver, and releases the stripe and the
//! pattern table; it then waits on the subscriber's mailbox alone. Later
//! publishes and unsubscribes on that one channel wait for the mark to
//! clear (on the stripe's condition variable, not holding the stripe), so
//! that the channel keeps one order and no delivery lands after an
//! unsubscribe confirmation; subscribes go ahead (the publish in flight
//! copied its subscribers before they joined). Everything else goes on.
//!
//! # Why the guarantees hold
//!
//! - *Same order per channel*: a publish holds its channel's stripe (or its
//!   busy mark) from its first delivery to its last, pattern deliveries
//!   included, so two publishes on one channel never interleave.
//! - *Confirmations bracket messages*: a channel (un)subscribe queues its
//!   confirmation under the same stripe lock a publish on that channel
//!   needs (an unsubscribe also waits for the busy mark; a subscribe does
//!   not need to, as the publish in flight copied its plan before it).
//! - *Atomic publishes*: the deliveries of one publish to one subscriber
//!   (its `message` and `pmessage`s) are queued as one group under the
//!   mailbox's lock, so nothing comes between them. Pattern (un)subscribes
//!   bump the pattern table's version under its write lock and stamp the
//!   subscriber's mailbox with it as they queue the confirmation. A
//!   publisher offers a group together with the version it read the table
//!   at; a mailbox stamped later refuses it as stale, and the publisher
//!   recomputes that subscriber's pattern deliveries from the current
//!   table. So the group always matches exactly the subscriptions the
//!   subscriber's stream has confirmed at that point. A stripe's memo of
//!   pattern matches (`Memo`) is used only while the table's version is
//!   the one it was made at, so it reads exactly what the table would.
//! - *Late joiners* (retained messages, beyond Redis): a publish records
//!   itself in its channel's store under the locks that order it with
//!   joiners; `retained` has the argument.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_utils::sync::ShardedLock;
use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

use crate::fast_hash::{shrink_when_sparse, FastMap, Hasher};
use crate::log::{Entry, Log};
use crate::mailbox::{Group, Mailbox, Offered, Patience, Refused, Single};
use crate::members::{Members, Rare};
use crate::retained::Retained;
pub(crate) use crate::space::Space;
use crate::spare::Spare;
use crate::spin_lock::{SpinGuard, SpinLock};
use crate::stats::BrokerStats;
use crate::trie::{PatternKey, PatternTrie};
use crate::{Glob, Message, Name};

/// A callback that sees every local `publish` and `spublish` (namespace,
/// channel, payload), under the channel's lock: it must never block.
#[cfg(feature = "redis")]
pub(crate) type Tap<P> = Arc<dyn Fn(Space, &[u8], &P) + Send + Sync>;

/// The subscribers of one channel or pattern, and the rarer parts a few
/// names need, in 16 bytes: most names have one subscriber, kept inline
/// (see `members.rs`).
pub(crate) struct Subscribers<P> {
    list: Members<Arc<Mailbox<P>>, Extra<P>>,
}

/// The rarer parts of a name's subscribers.
struct Extra<P> {
    /// How many of them may make a publisher wait (`Block`, `BlockFor`).
    blockers: usize,
    /// A channel's log (see `log.rs`), while subscribers read it instead of
    /// being in `list`.
    log: Option<ChannelLog<P>>,
}

impl<P> Default for Extra<P> {
    fn default() -> Self {
        Extra {
            blockers: 0,
            log: None,
        }
    }
}

impl<P> Rare for Extra<P> {
    fn is_unused(&self) -> bool {
        self.blockers == 0 && self.log.is_none()
    }
}

/// A channel's log and its readers. Only touched under the stripe's lock
/// (appends go through the locked map mutably: no lock of its own).
struct ChannelLog<P> {
    log: Log<P, Mailbox<P>>,
    readers: usize,
}

impl<P> Default for Subscribers<P> {
    fn default() -> Self {
        Subscribers {
            list: Members::None,
        }
    }
}

impl<P> Subscribers<P> {
    fn add(&mut self, mailbox: &Arc<Mailbox<P>>) {
        if mailbox.blocks() {
            self.list.rare_or_default().blockers += 1;
        }
        self.list.push(Arc::clone(mailbox));
    }

    fn remove(&mut self, mailbox: &Arc<Mailbox<P>>) {
        if let Some(at) = self.list.iter().position(|m| Arc::ptr_eq(m, mailbox)) {
            if mailbox.blocks() {
                // A blocking subscriber boxed the list when it was added.
                let extra = self.list.rare_mut();
                debug_assert!(extra.is_some(), "a blocker in an unboxed list");
                if let Some(extra) = extra {
                    extra.blockers -= 1;
                }
            }
            // Tidies too: back inline once nothing rarer is needed.
            self.list.swap_remove(at);
        }
    }

    /// How many of them may make a publisher wait (`Block`, `BlockFor`).
    fn blockers(&self) -> usize {
        self.list.rare().map_or(0, |extra| extra.blockers)
    }

    fn log_mut(&mut self) -> Option<&mut ChannelLog<P>> {
        self.list.rare_mut().and_then(|extra| extra.log.as_mut())
    }

    fn contains(&self, mailbox: &Arc<Mailbox<P>>) -> bool {
        self.list.iter().any(|m| Arc::ptr_eq(m, mailbox))
    }

    /// Every subscriber, queue-fed and log readers alike.
    fn len(&self) -> usize {
        self.list.len() + self.readers()
    }

    /// Subscribers that read the log.
    fn readers(&self) -> usize {
        self.list
            .rare()
            .and_then(|extra| extra.log.as_ref())
            .map_or(0, |log| log.readers)
    }

    /// One log reader less; the log goes with the last.
    fn reader_left(&mut self) {
        if let Some(extra) = self.list.rare_mut() {
            if let Some(log) = &mut extra.log {
                log.readers -= 1;
                if log.readers == 0 {
                    extra.log = None;
                    self.list.tidy();
                }
            }
        }
    }
}

/// Running totals for `Broker::stats`, kept per stripe and written only
/// under the stripe's lock (plain additions, no atomic read-modify-write),
/// so counting costs publishers nothing they would contend on.
#[derive(Default)]
struct StripeStats {
    published: u64,
    queued: u64,
    dropped: u64,
    pushed_out: u64,
}

/// The channel maps of one stripe. Channels hash to a stripe, so
/// publishers on different channels rarely touch the same lock.
// `shard_channels` is Redis's name for the namespace, not this struct's.
#[allow(clippy::struct_field_names)]
struct Shard<P> {
    channels: FastMap<Name, Subscribers<P>>,
    /// Made on the first shard channel of this stripe and dropped with its
    /// last: most brokers have none, and a stripe must fit its 128 bytes.
    shard_channels: Option<Box<FastMap<Name, Subscribers<P>>>>,
    /// Channels whose publish is waiting for room (see the module docs);
    /// made on the first such publish, freed when the last is done.
    #[allow(clippy::box_collection)] // one pointer where a `Vec` is three
    busy: Option<Box<Vec<(Space, Name)>>>,
    stats: StripeStats,
    /// The patterns matching the channel this stripe published on last
    /// (see `Memo`: the box is made on the first pattern publish here, the
    /// matches on the second in a row on one channel, and they serve while
    /// channel and version stay the same).
    memo: Option<Box<Memo<P>>>,
}

/// The matches of one channel at one pattern-table version: a publish that
/// finds the table at that version again (nothing was (un)subscribed since)
/// delivers from here, without the table's lock or the matcher. Every
/// pattern (un)subscription moves the version on, so the copy is exact;
/// a publish that reads the version before a change lands is ordered
/// before it, exactly as one that read the table then (the mailbox stamps
/// catch the rest, see `Mailbox::offer`). The copies are made on the
/// second publish in a row on a channel, so publishes that alternate
/// channels on a stripe pay one comparison, not a copy each.
struct Memo<P> {
    /// The channel's bytes, in a buffer reused from one channel to the
    /// next (no allocation per publish once it is large enough).
    channel: Vec<u8>,
    version: u64,
    /// Whether `entries` holds the matches (not only the channel's name).
    filled: bool,
    entries: SmallVec<[PatternEntry<P>; 1]>,
}

impl<P> Shard<P> {
    /// The map of `space`, if it has one.
    fn map(&self, space: Space) -> Option<&FastMap<Name, Subscribers<P>>> {
        match space {
            Space::Channel => Some(&self.channels),
            Space::Shard => self.shard_channels.as_deref(),
        }
    }

    /// The map of `space`, made if it had none.
    fn map_mut(&mut self, space: Space) -> &mut FastMap<Name, Subscribers<P>> {
        match space {
            Space::Channel => &mut self.channels,
            Space::Shard => self.shard_channels.get_or_insert_with(Box::default),
        }
    }

    fn get(&self, space: Space, name: &[u8]) -> Option<&Subscribers<P>> {
        self.map(space).and_then(|map| map.get(name))
    }

    fn get_key_value(&self, space: Space, name: &[u8]) -> Option<(&Name, &Subscribers<P>)> {
        self.map(space).and_then(|map| map.get_key_value(name))
    }

    fn get_mut(&mut self, space: Space, name: &[u8]) -> Option<&mut Subscribers<P>> {
        match space {
            Space::Channel => self.channels.get_mut(name),
            Space::Shard => self.shard_channels.as_mut()?.get_mut(name),
        }
    }

    /// The log of channel `name`, if its subscribers read one.
    fn log_mut(&mut self, space: Space, name: &[u8]) -> Option<&mut ChannelLog<P>> {
        self.get_mut(space, name).and_then(Subscribers::log_mut)
    }

    /// The names of `space`.
    fn names(&self, space: Space) -> impl Iterator<Item = &Name> {
        self.map(space).into_iter().flat_map(|map| map.keys())
    }

    fn is_busy(&self, space: Space, name: &[u8]) -> bool {
        self.busy.as_ref().is_some_and(|busy| {
            busy.iter()
                .any(|(s, marked)| *s == space && marked.as_bytes() == name)
        })
    }

    fn mark_busy(&mut self, space: Space, name: Name) {
        self.busy
            .get_or_insert_with(Box::default)
            .push((space, name));
    }

    fn unmark_busy(&mut self, space: Space, name: &Name) {
        if let Some(busy) = &mut self.busy {
            if let Some(at) = busy.iter().position(|(s, n)| *s == space && n == name) {
                busy.swap_remove(at);
            }
            if busy.is_empty() {
                self.busy = None;
            }
        }
    }
}

/// The stripe's lock (see `spin_lock.rs`). It is only ever held for
/// bounded work (a publish's deliveries, a (un)subscription, a walk of the
/// stripe's maps), never while waiting.
type ShardLock<P> = SpinLock<Shard<P>>;
type ShardGuard<'a, P> = SpinGuard<'a, Shard<P>>;

struct Stripe<P> {
    shard: ShardLock<P>,
    /// Publishers waiting for a busy channel of this stripe to be released
    /// sleep on `idle` with `sleepers` held: a waiter takes `sleepers`
    /// before it lets go of the stripe, and whoever releases a busy channel
    /// takes it after, to notify, so no release passes a waiter unseen.
    sleepers: Mutex<()>,
    idle: Condvar,
}

impl<P> Stripe<P> {
    /// Locks the stripe.
    #[inline]
    fn lock(&self) -> ShardGuard<'_, P> {
        self.shard.lock()
    }

    /// Locks the stripe once `name` is not busy.
    #[inline]
    fn lock_idle(&self, space: Space, name: &[u8]) -> ShardGuard<'_, P> {
        let shard = self.lock();
        if shard.busy.is_none() {
            return shard;
        }
        self.wait_idle(shard, space, name)
    }

    #[cold]
    fn wait_idle<'a>(
        &'a self,
        mut shard: ShardGuard<'a, P>,
        space: Space,
        name: &[u8],
    ) -> ShardGuard<'a, P> {
        while shard.is_busy(space, name) {
            let mut asleep = self.sleepers.lock();
            drop(shard);
            self.idle.wait(&mut asleep);
            drop(asleep);
            shard = self.lock();
        }
        shard
    }

    /// Wakes the publishers waiting for a busy channel of this stripe; call
    /// after releasing one, with the stripe unlocked.
    fn wake_idle(&self) {
        let _asleep = self.sleepers.lock();
        self.idle.notify_all();
    }
}

/// The default number of lock stripes (16 KiB of stripes). Two channels
/// share a stripe with probability 1/128. More stripes spread more hot
/// channels over more locks, but each non-empty stripe has a table of its
/// own, and a table holds 4 entries at least: with 1,024 stripes, 1,000
/// channels cost 169 bytes each (116 with 128).
pub(crate) const DEFAULT_STRIPES: usize = 128;

/// The most lock stripes a broker may have (8 MiB of stripes).
pub(crate) const MAX_STRIPES: usize = 65_536;

/// Keeps each stripe on its own cache lines, so two publishers on
/// different stripes do not slow each other down through false sharing.
#[repr(align(128))]
struct Padded<T>(T);

/// One distinct live pattern and its subscribers.
struct PatternEntry<P> {
    name: Name,
    /// False when Redis's nesting limit rules out every match: such a
    /// pattern counts and confirms, but is not in the trie.
    in_trie: bool,
    subscribers: Subscribers<P>,
}

impl<P> PatternEntry<P> {
    /// A copy for a stripe's memo (patterns have no log).
    fn snapshot(&self) -> PatternEntry<P> {
        PatternEntry {
            name: self.name.clone(),
            in_trie: self.in_trie,
            subscribers: Subscribers {
                list: self.subscribers.list.clone_with(|extra| Extra {
                    blockers: extra.map_or(0, |extra| extra.blockers),
                    log: None,
                }),
            },
        }
    }
}

impl<P> Memo<P> {
    /// Whether this memo holds the matches of `channel` at `version`,
    /// filling it if this is the second publish in a row there. Returns
    /// false when it does not: the caller reads the table itself.
    fn ready(
        memo: &mut Option<Box<Memo<P>>>,
        channel: &[u8],
        version: u64,
        patterns: &Patterns<P>,
    ) -> bool {
        let Some(memo) = memo else {
            *memo = Some(Box::new(Memo {
                channel: channel.to_vec(),
                version,
                filled: false,
                entries: SmallVec::new(),
            }));
            return false;
        };
        if memo.version != version || memo.channel != channel {
            // Another channel or another table: remember the name and the
            // version only (the copies go).
            if memo.channel != channel {
                memo.channel.clear();
                memo.channel.extend_from_slice(channel);
            }
            memo.version = version;
            memo.filled = false;
            memo.entries.clear();
            return false;
        }
        if !memo.filled {
            let table = patterns
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if patterns.version.load(Ordering::Acquire) != version {
                return false; // it moved meanwhile: the caller reads it
            }
            memo.entries.extend(
                table
                    .matching(channel)
                    .into_iter()
                    .map(PatternEntry::snapshot),
            );
            memo.filled = true;
        }
        true
    }
}

/// Every distinct live pattern, and the trie that finds the matching ones.
struct PatternTable<P> {
    /// Keyed by creation sequence, which is also the documented pmessage
    /// order (the order the patterns came to life).
    by_seq: BTreeMap<PatternKey, PatternEntry<P>>,
    /// Pattern name → its key in `by_seq`.
    seq_of: FastMap<Name, PatternKey>,
    next_seq: PatternKey,
    trie: PatternTrie,
}

impl<P> PatternTable<P> {
    /// The entries of the patterns matching `channel`, in creation order.
    fn matching(&self, channel: &[u8]) -> SmallVec<[&PatternEntry<P>; 4]> {
        let mut keys: SmallVec<[PatternKey; 8]> = SmallVec::new();
        self.trie.matches_into(channel, &mut keys);
        keys.sort_unstable();
        keys.iter().map(|key| &self.by_seq[key]).collect()
    }
}

struct Patterns<P> {
    /// The table's version, bumped by every pattern (un)subscription; read
    /// by every publish, written only under the table's write lock (after
    /// `count`, so a reader that sees a version sees its count).
    version: AtomicU64,
    /// The number of distinct live patterns.
    count: AtomicU64,
    /// Sharded: a publisher locks only its own thread's shard to read, so
    /// readers write no cache line in common.
    table: ShardedLock<PatternTable<P>>,
}

/// The broker's state, shared by every `Broker` handle (strongly) and every
/// `Subscriber` (weakly: subscribers must not keep the broker alive, or they
/// could never learn that it is gone).
///
/// Aligned (and so sized) to two cache lines: every publish reads it (the
/// hasher's seeds, the stripes, the pattern counts), and a line it shared
/// with another allocation, such as a mailbox whose receivers write their
/// side on every receive, cost every publish a cache miss.
#[repr(align(128))]
pub(crate) struct Registry<P> {
    stripes: Box<[Padded<Stripe<P>>]>,
    patterns: Patterns<P>,
    /// Every live subscriber's mailbox, so that each learns when the broker
    /// is gone.
    /// A dense list (8 bytes per subscriber); each mailbox knows its
    /// place in it (`Mailbox::slot`), and the last one moves into a freed
    /// place.
    mailboxes: Mutex<Vec<Weak<Mailbox<P>>>>,
    next_id: AtomicU64,
    /// Subscribers evicted by `Overflow::Disconnect` (rare: one atomic).
    evicted: AtomicU64,
    /// Retained messages for late joiners (beyond Redis; off by default).
    pub(crate) retained: Retained<P>,
    /// Sees every `Broker::publish` before delivery (the Redis bridge).
    #[cfg(feature = "redis")]
    tap: parking_lot::RwLock<Option<Tap<P>>>,
    #[cfg(feature = "redis")]
    tapped: std::sync::atomic::AtomicBool,
    hasher: Hasher,
    /// Queue room idle subscribers gave back (see `spare.rs`).
    spare: Arc<Spare<Message<P>>>,
}

impl<P> std::fmt::Debug for Registry<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("stripes", &self.stripes.len())
            .field("patterns", &self.numpat())
            .finish_non_exhaustive()
    }
}

impl<P> Drop for Registry<P> {
    fn drop(&mut self) {
        for mailbox in self.mailboxes.get_mut().iter() {
            if let Some(mailbox) = mailbox.upgrade() {
                mailbox.broker_gone();
            }
        }
    }
}

impl<P> Registry<P> {
    /// A registry whose channels are spread over `stripes` locks (see
    /// [`Broker::with_lock_stripes`](crate::Broker::with_lock_stripes): a
    /// power of two from 1 to [`MAX_STRIPES`]).
    pub(crate) fn new(stripes: usize) -> Self {
        debug_assert!(stripes.is_power_of_two() && stripes <= MAX_STRIPES);
        let stripes = (0..stripes)
            .map(|_| {
                Padded(Stripe {
                    shard: ShardLock::new(Shard {
                        channels: FastMap::default(),
                        shard_channels: None,
                        busy: None,
                        memo: None,
                        stats: StripeStats::default(),
                    }),
                    sleepers: Mutex::new(()),
                    idle: Condvar::new(),
                })
            })
            .collect();
        Registry {
            stripes,
            patterns: Patterns {
                version: AtomicU64::new(0),
                count: AtomicU64::new(0),
                table: ShardedLock::new(PatternTable {
                    by_seq: BTreeMap::new(),
                    seq_of: FastMap::default(),
                    next_seq: 0,
                    trie: PatternTrie::new(),
                }),
            },
            mailboxes: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            retained: Retained::new(),
            #[cfg(feature = "redis")]
            tap: parking_lot::RwLock::new(None),
            #[cfg(feature = "redis")]
            tapped: std::sync::atomic::AtomicBool::new(false),
            hasher: Hasher::default(),
            spare: Arc::new(Spare::new()),
        }
    }

    fn stripe(&self, name: &[u8]) -> &Stripe<P> {
        let hash = self.hasher.hash_one(name);
        // The top bits: the map inside the stripe uses the low ones.
        let index = (hash >> 32) as usize & (self.stripes.len() - 1);
        &self.stripes[index].0
    }

    // ---- subscribers -------------------------------------------------------

    /// The spare queue room a new mailbox uses, and its shard of it.
    pub(crate) fn spare(&self) -> (Arc<Spare<Message<P>>>, u8) {
        let shard = Spare::<Message<P>>::shard_of(self.next_id.load(Ordering::Relaxed));
        (Arc::clone(&self.spare), shard)
    }

    /// Registers a new subscriber's mailbox; returns its id.
    pub(crate) fn register(&self, mailbox: &Arc<Mailbox<P>>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut mailboxes = self.mailboxes.lock();
        let slot = u32::try_from(mailboxes.len()).expect("fewer than 2^32 live subscribers");
        mailbox.slot.store(slot, Ordering::Relaxed);
        mailboxes.push(Arc::downgrade(mailbox));
        id
    }

    /// Forgets a dropped subscriber's mailbox (called while its subscriber
    /// still holds it, so every listed mailbox is alive).
    pub(crate) fn unregister(&self, mailbox: &Arc<Mailbox<P>>) {
        let mut mailboxes = self.mailboxes.lock();
        let at = mailbox.slot.load(Ordering::Relaxed) as usize;
        debug_assert!(mailboxes
            .get(at)
            .is_some_and(|listed| std::ptr::eq(listed.as_ptr(), Arc::as_ptr(mailbox))));
        mailboxes.swap_remove(at);
        if let Some(moved) = mailboxes.get(at).and_then(Weak::upgrade) {
            moved.slot.store(at as u32, Ordering::Relaxed);
        }
        shrink_when_sparse(&mut *mailboxes);
    }

    // ---- channels ----------------------------------------------------------

    /// Adds `mailbox`'s subscriber to channel `name` in `space` and queues
    /// `confirmation` (and, with `history`, what `name` retains),
    /// atomically with respect to publishes on `name`.
    ///
    /// `sole`: this is the subscriber's only subscription. Such a
    /// subscriber joining a channel that already has subscribers reads the
    /// channel's log (created on demand) instead of being queued to, so a
    /// fan-out publish costs one append (see `log.rs`).
    pub(crate) fn add_channel(
        &self,
        space: Space,
        name: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Message<P>,
        sole: bool,
        history: bool,
    ) where
        P: Clone,
    {
        // Not waiting for a busy mark: the publish in flight planned its
        // deliveries before this subscriber joined. If it reaches this
        // subscriber anyway (through a pattern), its plan lacks the new
        // `message`: a new table version stamped on the mailbox makes that
        // publish recompute this subscriber's whole group (guarantee 6).
        // Later publishes wait for the mark, and see the subscription.
        let stripe = self.stripe(name);
        let mut shard = stripe.lock();
        let table = (space == Space::Channel && shard.is_busy(space, name)).then(|| {
            self.patterns
                .table
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        let stamp = table.as_ref().map(|_| self.next_version());
        let subscribers = shard.map_mut(space).entry(name.clone()).or_default();
        // Under the lock: no delivery on `name` can overtake it.
        if history {
            if let Some(stamp) = stamp {
                mailbox.stamp(stamp);
            }
            self.retained
                .join_channel(space, name, mailbox, confirmation);
        } else {
            mailbox.confirm(confirmation, stamp);
        }
        if let (Some(table), Some(stamp)) = (&table, stamp) {
            self.publish_version(stamp, table.by_seq.len());
        }
        drop(table);
        let joined = sole && mailbox.may_read_log() && subscribers.len() > 0 && {
            let log = subscribers
                .list
                .rare_or_default()
                .log
                .get_or_insert_with(|| ChannelLog {
                    log: Log::new(),
                    readers: 0,
                });
            let joined = mailbox.join_log(log.log.cursor(), name.clone(), space == Space::Shard);
            log.readers += usize::from(joined);
            if log.readers == 0 {
                // Refused (its readiness handle was asked for meanwhile)
                // and nobody else reads it.
                subscribers.list.rare_or_default().log = None;
                subscribers.list.tidy();
            }
            joined
        };
        if joined {
            // A queue-fed subscriber that holds only this channel (the one
            // that came first) moves to the log too, so that a publish here
            // is one append and nothing else. Its queue is read before the
            // log, so its order stays. Its names are try-locked (the lock
            // order puts them before this stripe) and stay locked until it
            // has moved, so it cannot subscribe or unsubscribe meanwhile; if
            // they are busy, it stays where it is.
            for at in 0..subscribers.list.len() {
                let candidate = Arc::clone(&subscribers.list.as_slice()[at]);
                if !candidate.may_read_log() {
                    continue;
                }
                let Some(held) = candidate.held.try_lock() else {
                    continue;
                };
                if held.total() != 1 {
                    continue;
                }
                let log = subscribers.log_mut().expect("joined above");
                if candidate.join_log(log.log.cursor(), name.clone(), space == Space::Shard) {
                    log.readers += 1;
                    subscribers.list.swap_remove(at);
                }
                drop(held);
                break;
            }
        } else {
            subscribers.add(mailbox);
        }
    }

    /// Removes `mailbox`'s subscriber from channel `name` in `space`
    /// (dropping the entry when it was the last) and queues `confirmation`,
    /// if any, atomically with respect to publishes on `name`.
    pub(crate) fn remove_channel(
        &self,
        space: Space,
        name: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Option<Message<P>>,
    ) {
        let stripe = self.stripe(name);
        // An unsubscribe call waits for a publish in flight on `name` (its
        // confirmation must come after that publish's delivery). A drop or an
        // eviction (no confirmation) does not: the mailbox already refuses or
        // counts as lost whatever that publish still offers it.
        let mut shard = if confirmation.is_some() {
            stripe.lock_idle(space, name)
        } else {
            stripe.lock()
        };
        let map = shard.map_mut(space);
        if let MapEntry::Occupied(mut entry) = map.entry(name.clone()) {
            let reads_log = mailbox.log_channel().is_some_and(|(channel, shard)| {
                channel == *name && shard == (space == Space::Shard)
            });
            if reads_log {
                // Only when dropped or evicted: an unsubscribe call leaves
                // the log first (`leave_log`), keeping what it had not read.
                mailbox.drop_log();
                entry.get_mut().reader_left();
            } else {
                entry.get_mut().remove(mailbox);
            }
            if entry.get().len() == 0 {
                entry.remove();
                shrink_when_sparse(map);
            }
        }
        // The last shard channel of this stripe takes its map's box along.
        if space == Space::Shard
            && shard
                .shard_channels
                .as_ref()
                .is_some_and(|map| map.is_empty())
        {
            shard.shard_channels = None;
        }
        if let Some(confirmation) = confirmation {
            mailbox.confirm(confirmation, None);
        }
    }

    // ---- patterns ----------------------------------------------------------

    /// Stores a new table version (and pattern count) and returns the
    /// version. Called under the table's write lock.
    fn next_version(&self) -> u64 {
        self.patterns.version.load(Ordering::Relaxed) + 1
    }

    /// Makes `version` (from [`next_version`](Registry::next_version)) and
    /// the pattern count visible to publishers. Called under the table's
    /// write lock, *after* the change's confirmation is queued with that
    /// version as its stamp: a publisher that reads the table without its
    /// lock (no patterns) must never see a version whose confirmation is
    /// not in the stream yet, or it could deliver past it.
    fn publish_version(&self, version: u64, count: usize) {
        self.patterns.count.store(count as u64, Ordering::Release);
        self.patterns.version.store(version, Ordering::Release);
    }

    /// Adds `mailbox`'s subscriber to `pattern` (creating the pattern's
    /// entry if it is new) and queues `confirmation` (and, with `history`,
    /// what the matching channels retain), atomically with respect to every
    /// publish.
    pub(crate) fn add_pattern(
        &self,
        pattern: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Message<P>,
        history: bool,
    ) where
        P: Clone,
    {
        let mut table = self
            .patterns
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                        subscribers: Subscribers::default(),
                    },
                );
                seq
            }
        };
        let entry = table.by_seq.get_mut(&seq).expect("seq_of and by_seq agree");
        entry.subscribers.add(mailbox);
        let version = self.next_version();
        if history {
            self.retained
                .join_pattern(pattern, mailbox, confirmation, version);
        } else {
            mailbox.confirm(confirmation, Some(version));
        }
        self.publish_version(version, table.by_seq.len());
    }

    /// Removes `mailbox`'s subscriber from `pattern` (dropping the pattern
    /// when it was the last) and queues `confirmation`, if any, atomically
    /// with respect to every publish.
    pub(crate) fn remove_pattern(
        &self,
        pattern: &Name,
        mailbox: &Arc<Mailbox<P>>,
        confirmation: Option<Message<P>>,
    ) {
        let mut table = self
            .patterns
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = &mut *table;
        if let Some(&seq) = table.seq_of.get(pattern.as_bytes()) {
            let entry = table.by_seq.get_mut(&seq).expect("seq_of and by_seq agree");
            entry.subscribers.remove(mailbox);
            mailbox.forget_history(pattern);
            if entry.subscribers.list.is_empty() {
                if entry.in_trie {
                    table.trie.remove(Glob::new(pattern).tokens(), seq);
                }
                table.by_seq.remove(&seq);
                table.seq_of.remove(pattern.as_bytes());
                shrink_when_sparse(&mut table.seq_of);
            }
        }
        let version = self.next_version();
        match confirmation {
            Some(confirmation) => mailbox.confirm(confirmation, Some(version)),
            None => mailbox.stamp(version),
        }
        self.publish_version(version, table.by_seq.len());
    }

    /// Removes every subscription in `held` silently: what dropping a
    /// subscriber and evicting it for overflow both do.
    pub(crate) fn forget(&self, mailbox: &Arc<Mailbox<P>>, held: &mut crate::held::Held) {
        let sets = held.take();
        for name in sets.channels {
            self.remove_channel(Space::Channel, &name, mailbox, None);
        }
        for name in sets.shards {
            self.remove_channel(Space::Shard, &name, mailbox, None);
        }
        for name in sets.patterns {
            self.remove_pattern(&name, mailbox, None);
        }
    }

    /// Evicts a subscriber that overflowed under `Overflow::Disconnect`.
    /// Called with no lock held.
    fn evict(&self, mailbox: &Arc<Mailbox<P>>) {
        let mut held = mailbox.held.lock();
        self.forget(mailbox, &mut held);
        // Only now is nothing more on its way: the end of its stream.
        mailbox.evicted();
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
    fn tap(&self, space: Space, channel: &[u8], payload: &P) {
        if self.tapped.load(Ordering::Acquire) {
            if let Some(tap) = &*self.tap.read() {
                tap(space, channel, payload);
            }
        }
    }

    /// The broker-wide counters.
    pub(crate) fn stats(&self) -> BrokerStats {
        let (mut published, mut queued, mut dropped, mut pushed_out) = (0, 0, 0, 0);
        for stripe in &*self.stripes {
            let shard = stripe.0.lock();
            let stats = &shard.stats;
            published += stats.published;
            queued += stats.queued;
            dropped += stats.dropped;
            pushed_out += stats.pushed_out;
        }
        let mut stats = BrokerStats {
            published,
            delivered: queued.saturating_sub(pushed_out),
            dropped: dropped + pushed_out,
            disconnected: self.evicted.load(Ordering::Relaxed),
            ..BrokerStats::default()
        };
        self.retained.fill(&mut stats);
        stats
    }

    /// The number of distinct live patterns.
    pub(crate) fn numpat(&self) -> usize {
        self.patterns.count.load(Ordering::Acquire) as usize
    }

    // ---- introspection -----------------------------------------------------

    /// Live channels in `space`, filtered by `pattern`, sorted by bytes.
    pub(crate) fn channels(&self, space: Space, pattern: Option<&Glob>) -> Vec<Name> {
        let mut names = Vec::new();
        for stripe in &*self.stripes {
            let shard = stripe.0.lock();
            names.extend(
                shard
                    .names(space)
                    .filter(|name| pattern.map_or(true, |glob| glob.is_match(name)))
                    .cloned(),
            );
        }
        names.sort_unstable();
        names
    }

    /// The number of exact subscribers of `name` in `space`.
    pub(crate) fn numsub(&self, space: Space, name: &[u8]) -> usize {
        self.stripe(name)
            .shard
            .lock()
            .get(space, name)
            .map_or(0, Subscribers::len)
    }
}

/// What one publish did, kept by a guard so that it is recorded (and
/// evictions and the busy mark are dealt with) even if a payload's `clone`
/// panics half way.
struct Tally<'r, P> {
    registry: &'r Registry<P>,
    stripe: &'r Stripe<P>,
    /// Whether the counts were added to the stripe's stats already.
    recorded: bool,
    counted: u64,
    queued: u64,
    dropped: u64,
    pushed_out: u64,
    /// Subscribers that overflowed under `Overflow::Disconnect`, evicted
    /// once no lock is held.
    evict: SmallVec<[Arc<Mailbox<P>>; 1]>,
    /// The channel this publish marked busy, released at the end.
    busy: Option<(Space, Name)>,
}

impl<P> Tally<'_, P> {
    fn count(&mut self, mailbox: &Arc<Mailbox<P>>, offered: Offered) {
        self.counted += offered.counted;
        self.queued += offered.queued;
        self.dropped += offered.dropped;
        self.pushed_out += offered.pushed_out;
        if offered.evict {
            self.evict.push(Arc::clone(mailbox));
        }
    }

    /// Adds this publish to the stripe's stats; called with the stripe
    /// locked.
    fn record(&mut self, shard: &mut Shard<P>) {
        if !self.recorded {
            self.recorded = true;
            let stats = &mut shard.stats;
            stats.published += 1;
            stats.queued += self.queued;
            stats.dropped += self.dropped;
            stats.pushed_out += self.pushed_out;
        }
    }
}

impl<P> Drop for Tally<'_, P> {
    fn drop(&mut self) {
        if !self.recorded || self.busy.is_some() {
            let mut shard = self.stripe.lock();
            self.record(&mut shard);
            if let Some((space, name)) = self.busy.take() {
                shard.unmark_busy(space, &name);
                drop(shard);
                self.stripe.wake_idle();
            }
        }
        for mailbox in std::mem::take(&mut self.evict) {
            self.registry.evict(&mailbox);
        }
    }
}

/// Hands out the payload: a clone for every delivery but the last, which
/// takes the payload itself (so a publish to one subscriber clones nothing).
struct Payload<P> {
    payload: Option<P>,
    left: usize,
}

impl<P: Clone> Payload<P> {
    fn next(&mut self) -> P {
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            if let Some(payload) = self.payload.take() {
                return payload;
            }
        }
        self.payload
            .clone()
            .expect("the payload is kept until the last delivery")
    }
}

impl<P: Clone> Registry<P> {
    /// Moves a subscriber that reads a channel's log back to having its
    /// deliveries queued (before it holds anything else, or when it asks for
    /// a readiness handle). What the log holds beyond its cursor is queued
    /// first, under the channel's lock, so nothing is lost or reordered.
    pub(crate) fn leave_log(&self, mailbox: &Arc<Mailbox<P>>) {
        let Some((name, shard)) = mailbox.log_channel() else {
            return;
        };
        let space = if shard { Space::Shard } else { Space::Channel };
        let stripe = self.stripe(&name);
        let mut shard = stripe.lock();
        mailbox.leave_log();
        if let Some(subscribers) = shard.get_mut(space, name.as_bytes()) {
            subscribers.reader_left();
            subscribers.add(mailbox);
        }
    }

    // ---- publishing --------------------------------------------------------

    /// Delivers `payload` on `channel` to its exact subscribers in `space`
    /// and, for [`Space::Channel`], to every matching pattern's subscribers;
    /// returns the number of deliveries (Redis's count).
    pub(crate) fn publish(&self, space: Space, channel: &[u8], payload: P) -> usize {
        self.publish_tapped(space, channel, payload, false)
    }

    /// [`publish`](Registry::publish) that also shows the publish to the
    /// tap (the Redis bridge), under the channel's lock, so the bridge sees
    /// a channel's publishes in the order local subscribers receive them.
    #[cfg(feature = "redis")]
    pub(crate) fn publish_local(&self, space: Space, channel: &[u8], payload: P) -> usize {
        self.publish_tapped(space, channel, payload, true)
    }

    /// Reports `missed` lost publishes on `channel` (found missing by the
    /// Redis bridge) to the subscribers a publish there would reach now, in
    /// order with the channel's publishes: each subscriber gets a
    /// [`Message::Lagged`] counting the deliveries it missed (a subscriber
    /// holding the channel and two matching patterns missed three per
    /// publish).
    #[cfg(feature = "redis")]
    pub(crate) fn publish_lagged(&self, space: Space, channel: &[u8], missed: u64) {
        let stripe = self.stripe(channel);
        let mut shard = stripe.lock_idle(space, channel);
        // Retained messages never span a gap: drop what came before it.
        self.retained.clear(space, channel);
        // Log readers hold only this channel: one delivery per publish.
        if let Some(log) = shard.log_mut(space, channel) {
            log.log.append(Entry::Lost(missed));
        }
        let exact = shard.get(space, channel);
        let table = (space == Space::Channel && self.numpat() > 0).then(|| {
            self.patterns
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        let matched = table
            .as_ref()
            .map(|table| table.matching(channel))
            .unwrap_or_default();
        for (mailbox, exact_too, patterns) in &plan(exact, &matched) {
            let per_publish = u64::from(*exact_too) + patterns.len() as u64;
            mailbox.report_lagged(missed * per_publish);
        }
    }

    #[inline]
    fn publish_tapped(&self, space: Space, channel: &[u8], payload: P, tapped: bool) -> usize {
        let stripe = self.stripe(channel);
        let mut shard = stripe.lock_idle(space, channel);
        let payload = if tapped {
            payload
        } else {
            match self.publish_to_one(&mut shard, space, channel, payload) {
                Ok(count) => return count,
                Err(payload) => payload,
            }
        };
        self.publish_locked(stripe, shard, space, channel, payload, tapped)
    }

    /// The most common publishes, in as few steps as they take: no
    /// pattern, nothing retained, and the channel has one subscriber,
    /// queue-fed, that cannot make a publisher wait, or only subscribers
    /// that read its log. Hands the payload back when the
    /// publish is not that one (or the subscriber's mailbox declines the
    /// in-place delivery), for the general path, with nothing done.
    #[inline]
    fn publish_to_one(
        &self,
        shard: &mut Shard<P>,
        space: Space,
        channel: &[u8],
        payload: P,
    ) -> Result<usize, P> {
        // Version first, as in the general path: a count read after it is
        // at least as new.
        let version = self.patterns.version.load(Ordering::Acquire);
        let no_patterns = match space {
            Space::Channel => self.patterns.count.load(Ordering::Acquire) == 0,
            Space::Shard => true,
        };
        if self.retained.depth(space, channel) > 0 {
            return Err(payload);
        }
        let exact = shard.get_key_value(space, channel);
        let mut payload = Some(payload);
        let mut take = || payload.take().expect("taken once, and only by a delivery");
        let single = if no_patterns {
            if shard.memo.is_some() {
                return Err(take()); // the general path lets the memo go
            }
            let (name, mailbox) = match exact {
                // Inline: no log, no blocking subscriber, one member.
                Some((
                    name,
                    Subscribers {
                        list: Members::One(mailbox),
                    },
                )) => (name, mailbox),
                Some((_, subs)) if subs.list.is_empty() && subs.readers() > 0 => {
                    return Ok(Self::append_only(shard, space, channel, take()));
                }
                _ => return Err(take()),
            };
            let version = match space {
                Space::Channel => version,
                Space::Shard => u64::MAX,
            };
            mailbox.offer_single(version, || message(space, name, take()))
        } else {
            // Nobody holds the channel itself, and the stripe's memo holds
            // this channel's matches at this table version: one pattern,
            // with one plain subscriber.
            let memo = shard.memo.as_deref().filter(|memo| {
                exact.is_none()
                    && memo.filled
                    && memo.version == version
                    && memo.channel == channel
                    && memo.entries.len() == 1
            });
            let Some(entry) = memo.map(|memo| &memo.entries[0]) else {
                return Err(take());
            };
            let Members::One(mailbox) = &entry.subscribers.list else {
                return Err(take());
            };
            mailbox.offer_single(version, || Message::PMessage {
                pattern: entry.name.clone(),
                channel: Name::recent(channel),
                payload: take(),
            })
        };
        let count = match single {
            Single::Queued => 1,
            Single::Gone => 0,
            Single::Declined => {
                return Err(payload.expect("a declined delivery takes nothing"));
            }
        };
        let stats = &mut shard.stats;
        stats.published += 1;
        stats.queued += count;
        Ok(count as usize)
    }

    /// A publish to a channel whose subscribers all read its log: one
    /// append, whatever their number, counted in the stripe's stats (out
    /// of line, so that the one subscriber's path stays short). Both
    /// publish paths take it.
    #[inline(never)]
    fn append_only(shard: &mut Shard<P>, space: Space, channel: &[u8], payload: P) -> usize {
        let log = shard
            .log_mut(space, channel)
            .expect("just found with readers, under the same lock");
        let readers = log.readers;
        log.log.append(Entry::Payload(payload));
        let stats = &mut shard.stats;
        stats.published += 1;
        stats.queued += readers as u64;
        readers
    }

    /// Every publish but [`publish_to_one`](Registry::publish_to_one)'s,
    /// with the stripe already locked.
    #[allow(clippy::too_many_lines)] // one lock scope, read top to bottom
    #[inline(never)]
    fn publish_locked(
        &self,
        stripe: &Stripe<P>,
        shard: ShardGuard<'_, P>,
        space: Space,
        channel: &[u8],
        payload: P,
        tapped: bool,
    ) -> usize {
        let mut tally = Tally {
            registry: self,
            stripe,
            recorded: false,
            counted: 0,
            queued: 0,
            dropped: 0,
            pushed_out: 0,
            evict: SmallVec::new(),
            busy: None,
        };
        // Declared after the tally, so a panic (a payload's `clone`) lets
        // go of the stripe before the tally's drop takes it to record.
        let mut shard = shard;
        #[cfg(feature = "redis")]
        if tapped {
            // Under the channel's lock: the tap must never block.
            self.tap(space, channel, &payload);
        }
        #[cfg(not(feature = "redis"))]
        let _ = tapped;
        // Version first: a count read after it is at least as new.
        let seen_version = self.patterns.version.load(Ordering::Acquire);
        let patterns = match space {
            Space::Channel => self.patterns.count.load(Ordering::Acquire),
            Space::Shard => 0,
        };
        // Retained channels record under the table's read lock too (see `retained`).
        let keep = self.retained.depth(space, channel);
        if patterns == 0 && shard.memo.is_some() {
            // No pattern is left: let go of the mailboxes the memo holds.
            shard.memo = None;
        }
        // The stripe's memo of pattern matches, taken out for this publish
        // (so the map stays usable) and put back before the stripe is
        // released.
        let mut memo = shard.memo.take();
        // One lookup serves every path but the log-only one, which looks
        // the channel up again to append (once per publish, whatever the
        // fan-out): a channel with queue-fed subscribers is looked up once.
        let exact = shard.get_key_value(space, channel);
        if patterns == 0
            && keep == 0
            && exact.is_some_and(|(_, subs)| subs.list.is_empty() && subs.readers() > 0)
        {
            // The fan-out fast path: a channel whose subscribers all read
            // its log costs one append, whatever their number.
            shard.memo = memo;
            // `append_only` counts the publish in the stripe's stats.
            tally.recorded = true;
            return Self::append_only(&mut shard, space, channel, payload);
        }
        let retained_here = keep > 0 && space == Space::Channel;
        let memoized = space == Space::Channel
            && patterns > 0
            && !retained_here
            && Memo::ready(&mut memo, channel, seen_version, &self.patterns);
        let table = (!memoized && (patterns > 0 || retained_here)).then(|| {
            self.patterns
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        // Read under the table's read lock when there is one: it cannot
        // move then. Without it, a mailbox stamped later refuses as stale.
        let version = match (space, &table) {
            (Space::Shard, _) => u64::MAX,
            (Space::Channel, Some(_)) => self.patterns.version.load(Ordering::Acquire),
            (Space::Channel, None) => seen_version,
        };
        let matched: SmallVec<[&PatternEntry<P>; 4]> = match (&table, &memo) {
            (Some(table), _) => table.matching(channel),
            (None, Some(memo)) if memoized => memo.entries.iter().collect(),
            _ => SmallVec::new(),
        };
        let blockers = exact.map_or(0, |(_, subs)| subs.blockers())
            + matched
                .iter()
                .map(|e| e.subscribers.blockers())
                .sum::<usize>();
        let readers = exact.map_or(0, |(_, subs)| subs.readers());
        let queued_to = exact.map_or(0, |(_, subs)| subs.list.len())
            + matched
                .iter()
                .map(|e| e.subscribers.list.len())
                .sum::<usize>();
        let total = queued_to + readers;
        if keep > 0 {
            self.retained.record(space, channel, &payload, keep);
        }
        if total == 0 {
            drop(matched);
            drop(table);
            shard.memo = memo;
            tally.record(&mut shard);
            return 0;
        }
        let mut payload = Payload {
            payload: Some(payload),
            left: queued_to + usize::from(readers > 0),
        };
        let exact = if readers > 0 {
            // One append, however many read the log (through the map
            // mutably, then looked up again for the rest).
            let log_entry = Entry::Payload(payload.next());
            if let Some(log) = shard.log_mut(space, channel) {
                log.log.append(log_entry);
            }
            tally.counted += readers as u64;
            tally.queued += readers as u64;
            shard.get_key_value(space, channel)
        } else {
            exact
        };
        // Borrowed from the map when the channel has exact subscribers: each
        // delivery then costs a copy of an inline name, or one
        // reference-count increment, no more.
        let recent;
        let channel_name: &Name = if let Some((name, _)) = exact {
            name
        } else {
            recent = Name::recent(channel);
            &recent
        };
        let make = |payload: P| message(space, channel_name, payload);

        if blockers > 0 {
            // The slow path: copy the plan, mark the channel busy, let go of
            // every shared lock, then offer (and maybe wait).
            payload.left += 1; // keep the payload for stale recomputations
            let plan = plan(exact.map(|(_, subs)| subs), &matched);
            let mut groups: SmallVec<[Owned<P>; 4]> = SmallVec::new();
            for (mailbox, exact_too, patterns) in &plan {
                let group = Self::group(&make, *exact_too, patterns, channel_name, &mut payload);
                groups.push((Arc::clone(mailbox), *exact_too, group));
            }
            let kept = payload.payload.take();
            let busy_name = channel_name.clone();
            let make = |payload: P| message(space, &busy_name, payload);
            drop(plan);
            drop(matched);
            drop(table);
            shard.memo = memo;
            // Marked before the stripe is released: nothing on this channel
            // can get between the plan and its deliveries.
            shard.mark_busy(space, busy_name.clone());
            drop(shard);
            tally.busy = Some((space, busy_name.clone()));
            // A retained publish is in the snapshots of pattern joiners
            // that come while it delivers (see `retained`).
            let recorded = (keep > 0).then_some(version);
            let start = Instant::now();
            for (mailbox, exact_too, mut group) in groups {
                let patience = Patience::Until(
                    mailbox
                        .patience()
                        .and_then(|patience| start.checked_add(patience)),
                );
                let mut version = version;
                loop {
                    match mailbox.offer(&mut group, version, patience) {
                        Ok(offered) => {
                            tally.count(&mailbox, offered);
                            break;
                        }
                        Err(Refused::Gone) => break,
                        Err(Refused::Stale) => {
                            let Some(again) = kept.clone() else { break };
                            // The subscriber may also have joined the channel
                            // itself since the plan (see `add_channel`).
                            let exact_too = exact_too || self.holds(space, channel, &mailbox);
                            let (fresh, redone) =
                                self.regroup(&mailbox, exact_too, &make, channel, again, recorded);
                            version = fresh;
                            group = redone;
                        }
                    }
                }
            }
            return tally.counted as usize;
        }

        // The fast path: nothing can wait, so everything happens under the
        // stripe (and the pattern table's read lock, if there are patterns).
        if matched.is_empty() {
            let subs = &exact.expect("total > 0 without patterns").1.list;
            for mailbox in subs {
                let mut delivery = || make(payload.next());
                let at = (mailbox, version, true);
                self.offer_single(at, &mut delivery, &make, channel, &mut tally);
            }
        } else if matched.len() == 1 && exact.map_or(true, |(_, subs)| subs.list.is_empty()) {
            // One pattern and nobody holding the channel queue-fed: each
            // subscriber appears once, with one `pmessage`, no grouping needed.
            let entry = matched[0];
            for mailbox in &entry.subscribers.list {
                let mut delivery = || Message::PMessage {
                    pattern: entry.name.clone(),
                    channel: channel_name.clone(),
                    payload: payload.next(),
                };
                let at = (mailbox, version, false);
                self.offer_single(at, &mut delivery, &make, channel, &mut tally);
            }
        } else {
            let plan = plan(exact.map(|(_, subs)| subs), &matched);
            for (mailbox, exact_too, patterns) in &plan {
                let mut group =
                    Self::group(&make, *exact_too, patterns, channel_name, &mut payload);
                self.offer_now(
                    mailbox, &mut group, version, *exact_too, &make, channel, &mut tally,
                );
            }
        }
        drop(matched);
        drop(table);
        shard.memo = memo;
        tally.record(&mut shard);
        drop(shard);
        tally.counted as usize
    }

    /// One subscriber's deliveries: its `message` (when it holds the
    /// channel), then a `pmessage` per pattern, in creation order.
    fn group(
        make: &impl Fn(P) -> Message<P>,
        exact_too: bool,
        patterns: &[&Name],
        channel: &Name,
        payload: &mut Payload<P>,
    ) -> Group<P> {
        let mut group: Group<P> = SmallVec::new();
        if exact_too {
            group.push(make(payload.next()));
        }
        for pattern in patterns {
            group.push(Message::PMessage {
                pattern: (*pattern).clone(),
                channel: channel.clone(),
                payload: payload.next(),
            });
        }
        group
    }

    /// Offers a subscriber's one delivery of a publish (built by the
    /// closure) without waiting, under the caller's locks: in place in an
    /// unbounded subscriber's queue, else as a group through
    /// [`offer_now`](Registry::offer_now). `at`: the subscriber, the table
    /// version, and whether it holds the channel itself.
    #[inline]
    fn offer_single(
        &self,
        at: (&Arc<Mailbox<P>>, u64, bool),
        delivery: &mut impl FnMut() -> Message<P>,
        make: &impl Fn(P) -> Message<P>,
        channel: &[u8],
        tally: &mut Tally<'_, P>,
    ) {
        let (mailbox, version, exact_too) = at;
        match mailbox.offer_single(version, &mut *delivery) {
            Single::Queued => {
                tally.counted += 1;
                tally.queued += 1;
            }
            Single::Gone => {}
            Single::Declined => {
                let mut group: Group<P> = SmallVec::new();
                group.push(delivery());
                self.offer_now(
                    mailbox, &mut group, version, exact_too, make, channel, tally,
                );
            }
        }
    }

    /// Offers without waiting, under the caller's locks; a stale refusal
    /// (only possible when no pattern table lock is held) is retried with
    /// the subscriber's deliveries recomputed from the current table.
    #[allow(clippy::too_many_arguments)]
    fn offer_now(
        &self,
        mailbox: &Arc<Mailbox<P>>,
        group: &mut Group<P>,
        version: u64,
        exact_too: bool,
        make: &impl Fn(P) -> Message<P>,
        channel: &[u8],
        tally: &mut Tally<'_, P>,
    ) {
        let mut version = version;
        loop {
            match mailbox.offer(group, version, Patience::None) {
                Ok(offered) => return tally.count(mailbox, offered),
                Err(Refused::Gone) => return,
                Err(Refused::Stale) => {
                    // The mailbox saw a pattern change this publish did not:
                    // take the payload back from the group and recompute.
                    let Some(payload) = group.first().and_then(Message::payload).cloned() else {
                        return;
                    };
                    let (fresh, redone) =
                        self.regroup(mailbox, exact_too, make, channel, payload, None);
                    version = fresh;
                    *group = redone;
                }
            }
        }
    }

    /// Whether `mailbox`'s subscriber holds `channel` itself (not through a
    /// pattern). Takes the stripe lock.
    fn holds(&self, space: Space, channel: &[u8], mailbox: &Arc<Mailbox<P>>) -> bool {
        self.stripe(channel)
            .shard
            .lock()
            .get(space, channel)
            .is_some_and(|subscribers| subscribers.contains(mailbox))
    }

    /// Recomputes one subscriber's group from the current pattern table;
    /// returns the table version it reflects. `recorded`: the table version
    /// at which this publish was retained, if it was; patterns joined with
    /// history since then already hold it, and get no `pmessage`.
    fn regroup(
        &self,
        mailbox: &Arc<Mailbox<P>>,
        exact_too: bool,
        make: &impl Fn(P) -> Message<P>,
        channel: &[u8],
        payload: P,
        recorded: Option<u64>,
    ) -> (u64, Group<P>) {
        let table = self
            .patterns
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = self.patterns.version.load(Ordering::Acquire);
        let patterns: SmallVec<[&Name; 4]> = table
            .matching(channel)
            .into_iter()
            .filter(|entry| entry.subscribers.contains(mailbox))
            .filter(|entry| {
                recorded.map_or(true, |at| {
                    !mailbox.joined_with_history_after(&entry.name, at)
                })
            })
            .map(|entry| &entry.name)
            .collect();
        let mut payload = Payload {
            left: usize::from(exact_too) + patterns.len(),
            payload: Some(payload),
        };
        let name = Name::recent(channel);
        let group = Self::group(make, exact_too, &patterns, &name, &mut payload);
        (version, group)
    }
}

/// A subscriber's group in a publish that may wait: its mailbox, whether
/// it holds the channel itself, and its deliveries.
type Owned<P> = (Arc<Mailbox<P>>, bool, Group<P>);

/// A delivery of `payload` on `channel` in `space`.
fn message<P>(space: Space, channel: &Name, payload: P) -> Message<P> {
    let channel = channel.clone();
    match space {
        Space::Channel => Message::Message { channel, payload },
        Space::Shard => Message::SMessage { channel, payload },
    }
}

/// Who gets what from one publish: each subscriber once, with whether it
/// holds the channel itself and the patterns (in creation order) it gets
/// a `pmessage` for.
type Plan<'t, P> = SmallVec<[(&'t Arc<Mailbox<P>>, bool, SmallVec<[&'t Name; 2]>); 4]>;

/// (mailbox address, source: 0 for the channel, i + 1 for pattern i, mailbox)
type Target<'t, P> = (usize, usize, &'t Arc<Mailbox<P>>);

fn plan<'t, P>(exact: Option<&'t Subscribers<P>>, matched: &[&'t PatternEntry<P>]) -> Plan<'t, P> {
    // (mailbox address, source: 0 = the channel, i + 1 = pattern i)
    let mut targets: SmallVec<[Target<'t, P>; 8]> = SmallVec::new();
    if let Some(subs) = exact {
        for mailbox in &subs.list {
            targets.push((Arc::as_ptr(mailbox) as usize, 0, mailbox));
        }
    }
    for (at, entry) in matched.iter().enumerate() {
        for mailbox in &entry.subscribers.list {
            targets.push((Arc::as_ptr(mailbox) as usize, at + 1, mailbox));
        }
    }
    if !matched.is_empty() {
        targets.sort_unstable_by_key(|&(address, source, _)| (address, source));
    }
    let mut plan: Plan<'t, P> = SmallVec::new();
    let mut last = None;
    for (address, source, mailbox) in targets {
        if last != Some(address) {
            plan.push((mailbox, false, SmallVec::new()));
            last = Some(address);
        }
        let (_, exact_too, patterns) = plan.last_mut().expect("pushed above");
        if source == 0 {
            *exact_too = true;
        } else {
            patterns.push(&matched[source - 1].name);
        }
    }
    plan
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn a_stripe_takes_one_padded_block_of_128_bytes() {
        // The stripe count is chosen with this size in mind (see
        // `DEFAULT_STRIPES`): a field that grows a stripe past 128 bytes
        // doubles the memory of every broker.
        assert_eq!(std::mem::size_of::<Padded<Stripe<bytes::Bytes>>>(), 128);
    }
}
