//! Differential tests against a real `redis-server` (Redis 7): the same
//! random Pub/Sub scripts run on a private server and on a channelcast
//! [`Broker`], and every reply, message and confirmation must agree; glob
//! patterns are compared with the server pair by pair.
//!
//! Redis leaves some orders to its hash tables; those are compared as
//! multisets: the names released by an argument-less `(P|S)UNSUBSCRIBE`
//! (their counts still go down in order), the pmessages of one publish, and
//! the lists from `PUBSUB CHANNELS` / `SHARDCHANNELS`. Everything else must
//! match exactly.
//!
//! Every test needs `redis-server` on `PATH`, so each is
//! `#[ignore = "needs redis-server"]`: a plain `cargo test` lists them as
//! ignored (with the reason) instead of passing without running them. Run
//! them with `cargo test --test differential -- --include-ignored` (or
//! `--ignored`); then a missing `redis-server` fails them. `.ci/run`
//! installs the server and runs them.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use channelcast::bytes::Bytes;
use channelcast::{glob_match, Broker, Message, Name, Subscriber};
use common::{Conn, RedisServer, Reply, Rng, Show, GLOB_TABLE};

// ---------------------------------------------------------------------------
// Random scripts
// ---------------------------------------------------------------------------

/// One script per seed.
const SCRIPT_SEEDS: std::ops::RangeInclusive<u64> = 1..=32;
/// Steps per script.
const SCRIPT_STEPS: usize = 1000;
/// Subscribers per script, each a Redis connection and a `Subscriber`.
const SUBSCRIBERS: usize = 4;

/// Channel names: few, so that subscribers collide; some look like patterns,
/// some are empty or binary.
const CHANNELS: &[&[u8]] = &[
    b"a",
    b"ab",
    b"abc",
    b"b",
    b"ba",
    b"b.",
    b"b.c",
    b"",
    b"a\0b",
    b"\xff",
    b"\xc3\xa9t\xc3\xa9",
    b"*",
    b"[a]",
    b"?b",
    b"a\r\nb",
];

/// Patterns, tricky ones included; many match several of [`CHANNELS`].
const PATTERNS: &[&[u8]] = &[
    b"a*", b"*", b"?b", b"[ab]*", b"b.*", b"\\*", b"[^a]*", b"a", b"", b"*c", b"[a-c]?", b"b?c",
    b"\xff*", b"a\0*", b"[", b"a?*", b"*.*", b"[]*", b"?", b"\\a*", b"[\xc3]*", b"a*c", b"ab",
    b"*b", b"[a]",
];

/// Bytes for the occasional made-up channel.
const RANDOM_CHANNEL_BYTES: &[u8] = b"ab.c*?\0\xff";
/// Bytes for the occasional made-up pattern.
const RANDOM_PATTERN_BYTES: &[u8] = b"ab.*?[]^\\";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Channel,
    Pattern,
    Shard,
}

impl Family {
    fn subscribe_command(self) -> &'static [u8] {
        match self {
            Family::Channel => b"SUBSCRIBE",
            Family::Pattern => b"PSUBSCRIBE",
            Family::Shard => b"SSUBSCRIBE",
        }
    }

    fn unsubscribe_command(self) -> &'static [u8] {
        match self {
            Family::Channel => b"UNSUBSCRIBE",
            Family::Pattern => b"PUNSUBSCRIBE",
            Family::Shard => b"SUNSUBSCRIBE",
        }
    }

    fn names(self) -> &'static [&'static [u8]] {
        match self {
            Family::Channel | Family::Shard => CHANNELS,
            Family::Pattern => PATTERNS,
        }
    }
}

/// How the streams of one step are compared.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Exactly, item by item.
    Exact,
    /// A (un)subscribe by one subscriber: exactly, except that an
    /// argument-less unsubscribe (`all`) releases names in hash order in
    /// Redis; `returned` is what the channelcast call returned, which must
    /// be the count of its last confirmation.
    Subscription {
        index: usize,
        returned: usize,
        all: bool,
    },
    /// A publish: each subscriber's pmessages as a multiset.
    Publish,
}

#[derive(Debug, Default)]
struct Stats {
    scripts: usize,
    steps: usize,
    pushes: usize,
    replies: usize,
}

/// One script: the same random steps on Redis and on a `Broker`.
struct Script<'s> {
    seed: u64,
    rng: Rng,
    server: &'s RedisServer,
    publisher: Conn,
    conns: Vec<Conn>,
    broker: Broker,
    subs: Vec<Subscriber>,
    step: usize,
    log: Vec<String>,
    stats: &'s mut Stats,
}

impl<'s> Script<'s> {
    fn new(server: &'s RedisServer, seed: u64, stats: &'s mut Stats) -> Script<'s> {
        let broker = Broker::new();
        Script {
            seed,
            rng: Rng::new(seed),
            server,
            publisher: server.connect(),
            conns: (0..SUBSCRIBERS).map(|_| server.connect()).collect(),
            subs: (0..SUBSCRIBERS).map(|_| broker.subscriber()).collect(),
            broker,
            step: 0,
            log: Vec::new(),
            stats,
        }
    }

    fn run(mut self, steps: usize) {
        for step in 0..steps {
            self.step = step;
            let order = self.random_step();
            self.compare_streams(order);
            self.stats.steps += 1;
        }
        self.finish();
    }

    /// Stops with everything needed to replay the failure.
    fn fail(&self, what: &str) -> ! {
        let start = self.log.len().saturating_sub(25);
        let mut history = String::new();
        for (number, line) in self.log.iter().enumerate().skip(start) {
            let _ = write!(history, "\n  {number:>4}: {line}");
        }
        panic!(
            "script seed {} differs from redis-server at step {}:\n{what}\nlast steps:{history}",
            self.seed, self.step
        );
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    fn redis_call(&mut self, args: &[&[u8]]) -> Reply {
        match self.publisher.call(args) {
            Ok(Reply::Error(error)) => self.fail(&format!("redis error {}", Show(&error))),
            Ok(reply) => {
                self.stats.replies += 1;
                reply
            }
            Err(error) => self.fail(&format!("redis connection failed: {error}")),
        }
    }

    fn random_step(&mut self) -> Order {
        match self.rng.below(100) {
            0..=24 => self.subscribe(),
            25..=37 => self.unsubscribe(),
            38..=61 => self.publish(Family::Channel),
            62..=71 => self.publish(Family::Shard),
            72..=76 => self.list_channels(Family::Channel),
            77..=80 => self.list_channels(Family::Shard),
            81..=86 => self.numsub(Family::Channel),
            87..=90 => self.numsub(Family::Shard),
            91..=96 => self.numpat(),
            _ => self.reconnect(),
        }
    }

    fn random_family(&mut self) -> Family {
        match self.rng.below(10) {
            0..=3 => Family::Channel,
            4..=7 => Family::Pattern,
            _ => Family::Shard,
        }
    }

    /// `count` names for `family`: mostly from the fixed lists (so that
    /// subscribers collide), sometimes made up from a few bytes.
    fn random_names(&mut self, family: Family, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| {
                if self.rng.percent(90) {
                    return self.rng.pick(family.names()).to_vec();
                }
                let alphabet: &[u8] = match family {
                    Family::Pattern => RANDOM_PATTERN_BYTES,
                    Family::Channel | Family::Shard => RANDOM_CHANNEL_BYTES,
                };
                let len = self.rng.between(0, 3);
                self.rng.bytes(alphabet, len)
            })
            .collect()
    }

    fn subscribe(&mut self) -> Order {
        let index = self.rng.below(SUBSCRIBERS);
        let family = self.random_family();
        let count = self.rng.between(1, 3);
        let names = self.random_names(family, count);
        self.note(format!(
            "sub{index}: {} {:?}",
            Show(family.subscribe_command()),
            shown(&names)
        ));

        let mut args = vec![family.subscribe_command()];
        args.extend(names.iter().map(Vec::as_slice));
        if let Err(error) = self.conns[index].send(&args) {
            self.fail(&format!("redis connection failed: {error}"));
        }

        let sub = &self.subs[index];
        let names = names.iter().map(Vec::as_slice);
        let result = match family {
            Family::Channel => sub.subscribe(names),
            Family::Pattern => sub.psubscribe(names),
            Family::Shard => sub.ssubscribe(names),
        };
        let returned = result.unwrap_or_else(|error| self.fail(&format!("subscribe: {error}")));
        Order::Subscription {
            index,
            returned,
            all: false,
        }
    }

    fn unsubscribe(&mut self) -> Order {
        let index = self.rng.below(SUBSCRIBERS);
        let family = self.random_family();
        let count = if self.rng.percent(30) {
            0
        } else {
            self.rng.between(1, 3)
        };
        let names = self.random_names(family, count);
        // With no names, Redis releases everything: that is `*_all()` here
        // (an empty list is an error, so that it never happens by accident).
        let use_all_method = names.is_empty();
        self.note(format!(
            "sub{index}: {} {:?}{}",
            Show(family.unsubscribe_command()),
            shown(&names),
            if use_all_method { " (via *_all)" } else { "" }
        ));

        let mut args = vec![family.unsubscribe_command()];
        args.extend(names.iter().map(Vec::as_slice));
        if let Err(error) = self.conns[index].send(&args) {
            self.fail(&format!("redis connection failed: {error}"));
        }

        let sub = &self.subs[index];
        let names_iter = names.iter().map(Vec::as_slice);
        let result = match (family, use_all_method) {
            (Family::Channel, false) => sub.unsubscribe(names_iter),
            (Family::Pattern, false) => sub.punsubscribe(names_iter),
            (Family::Shard, false) => sub.sunsubscribe(names_iter),
            (Family::Channel, true) => sub.unsubscribe_all(),
            (Family::Pattern, true) => sub.punsubscribe_all(),
            (Family::Shard, true) => sub.sunsubscribe_all(),
        };
        let returned = result.unwrap_or_else(|error| self.fail(&format!("unsubscribe: {error}")));
        Order::Subscription {
            index,
            returned,
            all: names.is_empty(),
        }
    }

    fn publish(&mut self, family: Family) -> Order {
        let channel: Vec<u8> = match self.rng.below(10) {
            0 => self.rng.pick(PATTERNS).to_vec(),
            1 => {
                let len = self.rng.between(0, 4);
                self.rng.bytes(RANDOM_CHANNEL_BYTES, len)
            }
            _ => self.rng.pick(CHANNELS).to_vec(),
        };
        let payload: Vec<u8> = match self.rng.below(10) {
            0 => Vec::new(),
            1 => b"\0\xff\r\n$-1\r\n".to_vec(),
            _ => format!("s{}m{}", self.seed, self.step).into_bytes(),
        };
        let command: &[u8] = if family == Family::Shard {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        };
        self.note(format!(
            "{} {} {}",
            Show(command),
            Show(&channel),
            Show(&payload)
        ));

        let reply = self.redis_call(&[command, &channel, &payload]);
        let ours = if family == Family::Shard {
            self.broker.spublish(&channel, payload)
        } else {
            self.broker.publish(&channel, payload)
        };
        if reply.integer() != i64::try_from(ours).ok() {
            self.fail(&format!(
                "{} {} counted: redis {reply:?}, channelcast {ours}",
                Show(command),
                Show(&channel)
            ));
        }
        Order::Publish
    }

    fn list_channels(&mut self, family: Family) -> Order {
        let pattern = if self.rng.percent(40) {
            None
        } else {
            Some(*self.rng.pick(PATTERNS))
        };
        let subcommand: &[u8] = if family == Family::Shard {
            b"SHARDCHANNELS"
        } else {
            b"CHANNELS"
        };
        self.note(format!(
            "PUBSUB {} {}",
            Show(subcommand),
            pattern.map_or(String::new(), |p| Show(p).to_string())
        ));

        let mut args = vec![&b"PUBSUB"[..], subcommand];
        args.extend(pattern);
        let reply = self.redis_call(&args);
        let mut theirs: Vec<Vec<u8>> = match reply.items() {
            Some(items) => items
                .iter()
                .map(|item| item.bulk().map(<[u8]>::to_vec))
                .collect::<Option<_>>()
                .unwrap_or_else(|| self.fail(&format!("odd reply {reply:?}"))),
            None => self.fail(&format!("odd reply {reply:?}")),
        };
        let ours = match (family == Family::Shard, pattern) {
            (true, None) => self.broker.shard_channels(),
            (true, Some(pattern)) => self.broker.shard_channels_matching(pattern),
            (false, None) => self.broker.channels(),
            (false, Some(pattern)) => self.broker.channels_matching(pattern),
        };
        let mut ours: Vec<Vec<u8>> = ours.iter().map(|name| name.as_bytes().to_vec()).collect();
        theirs.sort();
        ours.sort();
        if theirs != ours {
            self.fail(&format!(
                "PUBSUB {} (as sets):\n  redis:       {:?}\n  channelcast: {:?}",
                Show(subcommand),
                shown(&theirs),
                shown(&ours)
            ));
        }
        Order::Exact
    }

    fn numsub(&mut self, family: Family) -> Order {
        let count = self.rng.between(0, 3);
        let names = self.random_names(Family::Channel, count);
        let subcommand: &[u8] = if family == Family::Shard {
            b"SHARDNUMSUB"
        } else {
            b"NUMSUB"
        };
        self.note(format!("PUBSUB {} {:?}", Show(subcommand), shown(&names)));

        let mut args = vec![&b"PUBSUB"[..], subcommand];
        args.extend(names.iter().map(Vec::as_slice));
        let reply = self.redis_call(&args);
        let theirs: Option<Vec<(Vec<u8>, i64)>> = reply.items().and_then(|items| {
            items
                .chunks(2)
                .map(|pair| Some((pair.first()?.bulk()?.to_vec(), pair.get(1)?.integer()?)))
                .collect()
        });
        let Some(theirs) = theirs else {
            self.fail(&format!("odd reply {reply:?}"))
        };
        let ours = if family == Family::Shard {
            self.broker.shard_numsub(names.iter().map(Vec::as_slice))
        } else {
            self.broker.numsub(names.iter().map(Vec::as_slice))
        };
        let ours: Vec<(Vec<u8>, i64)> = ours
            .into_iter()
            .map(|(name, n)| (name.as_bytes().to_vec(), i64::try_from(n).unwrap_or(-1)))
            .collect();
        if theirs != ours {
            self.fail(&format!(
                "PUBSUB {}:\n  redis:       {:?}\n  channelcast: {:?}",
                Show(subcommand),
                shown_pairs(&theirs),
                shown_pairs(&ours)
            ));
        }
        Order::Exact
    }

    fn numpat(&mut self) -> Order {
        self.note("PUBSUB NUMPAT".to_string());
        let reply = self.redis_call(&[b"PUBSUB", b"NUMPAT"]);
        let ours = self.broker.numpat();
        if reply.integer() != i64::try_from(ours).ok() {
            self.fail(&format!(
                "PUBSUB NUMPAT: redis {reply:?}, channelcast {ours}"
            ));
        }
        Order::Exact
    }

    /// Redis: `QUIT` and a new connection; channelcast: drop the subscriber
    /// and create a new one. Both drop every subscription silently.
    fn reconnect(&mut self) -> Order {
        let index = self.rng.below(SUBSCRIBERS);
        self.note(format!("sub{index}: disconnect and reconnect"));
        let fresh = self.server.connect();
        let old = std::mem::replace(&mut self.conns[index], fresh);
        if let Err(error) = old.quit() {
            self.fail(&format!("QUIT failed: {error}"));
        }
        self.subs[index] = self.broker.subscriber();
        Order::Exact
    }

    /// Collects what each subscriber received during this step, on both
    /// sides, and compares. A `PING` barrier on each Redis connection makes
    /// the Redis side exact: everything queued before the `PING` is read,
    /// nothing later.
    fn compare_streams(&mut self, order: Order) {
        let token = format!("sync-{}-{}", self.seed, self.step).into_bytes();
        for index in 0..SUBSCRIBERS {
            if let Err(error) = self.conns[index].send_ping(&token) {
                self.fail(&format!("redis connection {index} failed: {error}"));
            }
        }
        for index in 0..SUBSCRIBERS {
            let pushes = self.conns[index]
                .read_until_pong(&token)
                .unwrap_or_else(|error| self.fail(&format!("redis connection {index}: {error}")));
            let mut theirs: Vec<Message> = pushes
                .iter()
                .map(push_to_message)
                .collect::<Result<_, _>>()
                .unwrap_or_else(|error| self.fail(&error));
            let mut ours: Vec<Message> = self.subs[index].try_iter().collect();
            match order {
                Order::Publish => {
                    sort_pmessage_runs(&mut theirs);
                    sort_pmessage_runs(&mut ours);
                }
                Order::Subscription {
                    index: who,
                    all: true,
                    ..
                } if who == index => {
                    sort_released_names(&mut theirs);
                    sort_released_names(&mut ours);
                }
                _ => {}
            }
            if theirs != ours {
                self.fail(&format!(
                    "subscriber {index} received{}:\n  redis:       {theirs:?}\n  channelcast: {ours:?}",
                    match order {
                        Order::Publish => " (pmessages of the publish sorted)",
                        Order::Subscription { all: true, .. } => " (released names sorted)",
                        _ => "",
                    }
                ));
            }
            if let Order::Subscription {
                index: who,
                returned,
                ..
            } = order
            {
                if who == index && ours.last().and_then(Message::count) != Some(returned) {
                    self.fail(&format!(
                        "subscriber {index}: the call returned {returned}, \
                         its last confirmation was {:?}",
                        ours.last()
                    ));
                }
            }
            self.stats.pushes += ours.len();
        }
    }

    /// Checks that both sides end empty, then closes every connection
    /// (synchronously, so the next script starts on a clean server).
    fn finish(mut self) {
        self.step = SCRIPT_STEPS;
        for (index, sub) in self.subs.iter().enumerate() {
            if let Ok(extra) = sub.try_recv() {
                self.fail(&format!("subscriber {index} has an extra item {extra:?}"));
            }
        }
        self.subs.clear();
        for conn in std::mem::take(&mut self.conns) {
            if let Err(error) = conn.quit() {
                self.fail(&format!("QUIT failed: {error}"));
            }
        }
        let numpat = self.redis_call(&[b"PUBSUB", b"NUMPAT"]);
        let channels = self.redis_call(&[b"PUBSUB", b"CHANNELS"]);
        let shards = self.redis_call(&[b"PUBSUB", b"SHARDCHANNELS"]);
        let empty = Reply::Array(Some(Vec::new()));
        if numpat != Reply::Integer(0) || channels != empty || shards != empty {
            self.fail(&format!(
                "server not empty after the script: {numpat:?} {channels:?} {shards:?}"
            ));
        }
        if self.broker.numpat() != 0 || !self.broker.channels().is_empty() {
            self.fail("broker not empty after every subscriber was dropped");
        }
        self.stats.scripts += 1;
        let publisher = std::mem::replace(&mut self.publisher, self.server.connect());
        if let Err(error) = publisher.quit() {
            self.fail(&format!("QUIT failed: {error}"));
        }
    }
}

/// Turns a RESP2 push from a subscribed connection into the `Message`
/// channelcast would produce.
fn push_to_message(push: &Reply) -> Result<Message, String> {
    let odd = || format!("unexpected push {push:?}");
    let items = push.items().ok_or_else(odd)?;
    let bytes = |at: usize| items.get(at).and_then(Reply::bulk).ok_or_else(odd);
    let name = |at: usize| bytes(at).map(Name::from);
    let maybe_name = |at: usize| match items.get(at) {
        Some(Reply::Bulk(name)) => Ok(name.as_deref().map(Name::from)),
        _ => Err(odd()),
    };
    let payload = |at: usize| bytes(at).map(Bytes::copy_from_slice);
    let count = |at: usize| {
        items
            .get(at)
            .and_then(Reply::integer)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(odd)
    };
    let kind = bytes(0)?;
    let expected_len = if kind == b"pmessage" { 4 } else { 3 };
    if items.len() != expected_len {
        return Err(odd());
    }
    Ok(match kind {
        b"message" => Message::Message {
            channel: name(1)?,
            payload: payload(2)?,
        },
        b"pmessage" => Message::PMessage {
            pattern: name(1)?,
            channel: name(2)?,
            payload: payload(3)?,
        },
        b"smessage" => Message::SMessage {
            channel: name(1)?,
            payload: payload(2)?,
        },
        b"subscribe" => Message::Subscribe {
            channel: name(1)?,
            count: count(2)?,
        },
        b"psubscribe" => Message::PSubscribe {
            pattern: name(1)?,
            count: count(2)?,
        },
        b"ssubscribe" => Message::SSubscribe {
            channel: name(1)?,
            count: count(2)?,
        },
        b"unsubscribe" => Message::Unsubscribe {
            channel: maybe_name(1)?,
            count: count(2)?,
        },
        b"punsubscribe" => Message::PUnsubscribe {
            pattern: maybe_name(1)?,
            count: count(2)?,
        },
        b"sunsubscribe" => Message::SUnsubscribe {
            channel: maybe_name(1)?,
            count: count(2)?,
        },
        _ => return Err(odd()),
    })
}

/// Sorts each run of consecutive pmessages by pattern (the pmessages of one
/// publish come in hash order in Redis).
fn sort_pmessage_runs(messages: &mut [Message]) {
    let mut start = 0;
    while start < messages.len() {
        let run = messages[start..]
            .iter()
            .take_while(|message| matches!(message, Message::PMessage { .. }))
            .count();
        messages[start..start + run].sort_by(|a, b| a.pattern().cmp(&b.pattern()));
        start += run.max(1);
    }
}

/// Sorts the names of the unsubscribe confirmations, leaving each count
/// where it was (Redis releases names in hash order; the counts still go
/// down one by one).
fn sort_released_names(messages: &mut [Message]) {
    let released = |message: &Message| match message {
        Message::Unsubscribe { channel, .. } | Message::SUnsubscribe { channel, .. } => {
            Some(channel.clone())
        }
        Message::PUnsubscribe { pattern, .. } => Some(pattern.clone()),
        _ => None,
    };
    let mut names: Vec<Option<Name>> = messages.iter().filter_map(released).collect();
    names.sort();
    let mut names = names.into_iter();
    for message in messages.iter_mut() {
        match message {
            Message::Unsubscribe { channel: name, .. }
            | Message::SUnsubscribe { channel: name, .. }
            | Message::PUnsubscribe { pattern: name, .. } => {
                *name = names.next().flatten();
            }
            _ => {}
        }
    }
}

fn shown<T: AsRef<[u8]>>(names: &[T]) -> Vec<Show<'_>> {
    names.iter().map(|name| Show(name.as_ref())).collect()
}

fn shown_pairs(pairs: &[(Vec<u8>, i64)]) -> Vec<(Show<'_>, i64)> {
    pairs.iter().map(|(name, n)| (Show(name), *n)).collect()
}

#[test]
#[ignore = "needs redis-server"]
fn random_scripts_match_redis() {
    let mut server = RedisServer::require();
    let started = Instant::now();
    let mut stats = Stats::default();
    // Every seed runs even when one fails, so that one report lists them all.
    let mut failures = Vec::new();
    for seed in SCRIPT_SEEDS {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Script::new(&server, seed, &mut stats).run(SCRIPT_STEPS);
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .map_or("(no message)", String::as_str);
            failures.push(message.lines().take(3).collect::<Vec<_>>().join(" / "));
            // The failed script's connections may still hold subscriptions.
            server = RedisServer::require();
        }
    }
    eprintln!(
        "random scripts: {} scripts x {} steps ({} steps), {} subscribers each: \
         {} messages/confirmations and {} PUBLISH/PUBSUB replies identical, in {:.1?}",
        stats.scripts,
        SCRIPT_STEPS,
        stats.steps,
        SUBSCRIBERS,
        stats.pushes,
        stats.replies,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ from redis-server:\n{}",
        failures.len(),
        SCRIPT_SEEDS.count(),
        failures.join("\n")
    );
}

/// Minimal reproducer of the one difference the random scripts found
/// (seeds 24 and 32): once any other pattern is removed, the empty pattern
/// `""` stops matching the empty channel, although it is still live
/// (`NUMPAT` still counts it). `""` compiles to no tokens, so it ends at the
/// trie's root; `PatternTrie::remove` resets the whole trie when only the
/// root node is left, dropping the root's ends with it.
#[test]
#[ignore = "needs redis-server"]
fn empty_pattern_still_matches_after_another_pattern_is_removed() {
    let server = RedisServer::require();
    let mut sub = server.connect();
    let mut publisher = server.connect();
    sub.send(&[b"PSUBSCRIBE", b"", b"a"]).expect("PSUBSCRIBE");
    sub.send(&[b"PUNSUBSCRIBE", b"a"]).expect("PUNSUBSCRIBE");
    assert_eq!(sub.sync(b"barrier").expect("confirmations").len(), 3);
    let redis = publisher.call(&[b"PUBLISH", b"", b"x"]).expect("PUBLISH");
    let numpat = publisher.call(&[b"PUBSUB", b"NUMPAT"]).expect("NUMPAT");
    assert_eq!((redis.integer(), numpat.integer()), (Some(1), Some(1)));
    let push = sub.read_push(Duration::from_secs(5)).expect("read");
    let expected = Message::PMessage {
        pattern: "".into(),
        channel: "".into(),
        payload: "x".into(),
    };
    assert_eq!(push.as_ref().map(push_to_message), Some(Ok(expected)));
    assert_eq!(
        sub.read_push(Duration::from_millis(50)).expect("read"),
        None
    );

    let broker = Broker::new();
    let ours = broker.subscriber();
    ours.psubscribe(["", "a"]).expect("psubscribe");
    ours.punsubscribe(["a"]).expect("punsubscribe");
    assert_eq!(broker.numpat(), 1);
    assert_eq!(
        broker.publish("", "x"),
        1,
        "redis-server delivers PUBLISH \"\" to the pattern \"\" after PSUBSCRIBE \"\" a + \
         PUNSUBSCRIBE a; channelcast delivers nothing"
    );
}

// ---------------------------------------------------------------------------
// Glob patterns
// ---------------------------------------------------------------------------

/// For each channel, the indexes of the patterns that match it.
type Matches = Vec<BTreeSet<usize>>;

/// Asks the server which `patterns` match each of `channels`: one
/// connection `PSUBSCRIBE`s all the patterns, another `PUBLISH`es each
/// channel (payload = its index); each pmessage names one matching pattern,
/// and each `PUBLISH` reply says how many there are.
fn redis_matches(server: &RedisServer, patterns: &[Vec<u8>], channels: &[Vec<u8>]) -> Matches {
    let index_of: HashMap<&[u8], usize> = patterns
        .iter()
        .enumerate()
        .map(|(index, pattern)| (pattern.as_slice(), index))
        .collect();
    assert_eq!(index_of.len(), patterns.len(), "patterns must be distinct");

    let mut sub = server.connect();
    let mut publisher = server.connect();
    let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
    args.extend(patterns.iter().map(Vec::as_slice));
    sub.send(&args).expect("PSUBSCRIBE");
    let confirmations = sub.sync(b"subscribed").expect("PSUBSCRIBE confirmations");
    assert_eq!(
        confirmations.len(),
        patterns.len(),
        "psubscribe confirmations"
    );

    let mut matches: Matches = vec![BTreeSet::new(); channels.len()];
    for (chunk_number, chunk) in channels.chunks(100).enumerate() {
        let first = chunk_number * 100;
        for (offset, channel) in chunk.iter().enumerate() {
            let payload = (first + offset).to_string();
            publisher
                .send(&[b"PUBLISH", channel, payload.as_bytes()])
                .expect("PUBLISH");
        }
        let mut counts = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let reply = publisher.read_reply().expect("PUBLISH reply");
            counts.push(reply.integer().expect("PUBLISH answers an integer"));
        }
        for push in sub.sync(b"published").expect("pmessages") {
            let Ok(Message::PMessage {
                pattern,
                channel,
                payload,
            }) = push_to_message(&push)
            else {
                panic!("expected a pmessage, got {push:?}");
            };
            let at: usize = std::str::from_utf8(&payload)
                .ok()
                .and_then(|text| text.parse().ok())
                .expect("payload is the channel index");
            assert_eq!(channel.as_bytes(), channels[at], "pmessage channel");
            let pattern = index_of[pattern.as_bytes()];
            assert!(matches[at].insert(pattern), "two pmessages for one pattern");
        }
        for (offset, count) in counts.into_iter().enumerate() {
            let at = first + offset;
            assert_eq!(
                usize::try_from(count).ok(),
                Some(matches[at].len()),
                "PUBLISH {} counted {count} but delivered {} pmessages",
                Show(&channels[at]),
                matches[at].len()
            );
        }
    }
    sub.quit().expect("QUIT");
    publisher.quit().expect("QUIT");
    matches
}

/// The same question for `channelcast::glob_match`, pair by pair.
fn glob_match_matches(patterns: &[Vec<u8>], channels: &[Vec<u8>]) -> Matches {
    channels
        .iter()
        .map(|channel| {
            (0..patterns.len())
                .filter(|&index| glob_match(&patterns[index], channel))
                .collect()
        })
        .collect()
}

/// The same question for a `Broker`: psubscribe every pattern, publish each
/// channel, see which pmessages arrive.
fn broker_matches(patterns: &[Vec<u8>], channels: &[Vec<u8>]) -> Matches {
    let index_of: HashMap<&[u8], usize> = patterns
        .iter()
        .enumerate()
        .map(|(index, pattern)| (pattern.as_slice(), index))
        .collect();
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.psubscribe(patterns.iter().map(Vec::as_slice))
        .expect("psubscribe");
    assert_eq!(sub.try_iter().count(), patterns.len(), "confirmations");
    channels
        .iter()
        .map(|channel| {
            let count = broker.publish(channel, Bytes::new());
            let matched: BTreeSet<usize> = sub
                .try_iter()
                .map(|message| match message {
                    Message::PMessage { pattern, .. } => index_of[pattern.as_bytes()],
                    other => panic!("expected a pmessage, got {other:?}"),
                })
                .collect();
            assert_eq!(count, matched.len(), "publish count vs pmessages");
            matched
        })
        .collect()
}

/// Compares the three answers pair by pair and fails with the smallest
/// differing pairs first. Returns the number of pairs compared and how many
/// of them match.
fn compare_matches(
    label: &str,
    server: &RedisServer,
    patterns: &[Vec<u8>],
    channels: &[Vec<u8>],
) -> (usize, usize) {
    let redis = redis_matches(server, patterns, channels);
    let glob = glob_match_matches(patterns, channels);
    let broker = broker_matches(patterns, channels);
    let mut differences = Vec::new();
    for (at, channel) in channels.iter().enumerate() {
        for (index, pattern) in patterns.iter().enumerate() {
            let says = [&redis, &glob, &broker].map(|m| m[at].contains(&index));
            if says[0] != says[1] || says[0] != says[2] {
                differences.push((pattern.len() + channel.len(), index, at, says));
            }
        }
    }
    if !differences.is_empty() {
        differences.sort_unstable();
        differences.dedup_by_key(|d| (patterns[d.1].clone(), channels[d.2].clone()));
        let mut report = String::new();
        for &(_, index, at, [r, g, b]) in differences.iter().take(20) {
            let _ = write!(
                report,
                "\n  pattern {} channel {}: redis {r}, glob_match {g}, broker {b}",
                Show(&patterns[index]),
                Show(&channels[at])
            );
        }
        panic!(
            "{label}: {} pattern/channel pairs differ from redis-server (smallest first):{report}",
            differences.len()
        );
    }
    let matched = redis.iter().map(BTreeSet::len).sum();
    (patterns.len() * channels.len(), matched)
}

/// Glob seeds; each compares `GLOB_PATTERNS` x `GLOB_CHANNELS` pairs.
const GLOB_SEEDS: std::ops::RangeInclusive<u64> = 1..=16;
const GLOB_PATTERNS: usize = 1000;
const GLOB_CHANNELS: usize = 100;
/// Pattern bytes: every metacharacter, a few letters, high bytes and NUL.
const PATTERN_BYTES: &[u8] = b"*?[]^-\\abc\x80\xff\0";
/// Channel bytes: letters, the bytes that are special inside classes, high
/// bytes and NUL.
const CHANNEL_BYTES: &[u8] = b"abc][-\\^\x80\xff\0";

/// A channel made to nearly fit `pattern`, so that matches are common:
/// metacharacters replaced by plausible bytes, the rest mostly kept.
fn channel_near(rng: &mut Rng, pattern: &[u8]) -> Vec<u8> {
    let mut channel = Vec::new();
    for &byte in pattern {
        match byte {
            b'*' => {
                let len = rng.between(0, 2);
                channel.extend(rng.bytes(CHANNEL_BYTES, len));
            }
            b'?' => channel.push(*rng.pick(CHANNEL_BYTES)),
            _ if rng.percent(70) => channel.push(byte),
            _ => channel.push(*rng.pick(CHANNEL_BYTES)),
        }
    }
    channel.truncate(8);
    channel
}

#[test]
#[ignore = "needs redis-server"]
fn random_globs_match_redis() {
    let server = RedisServer::require();
    let started = Instant::now();
    let (mut pairs, mut matched) = (0, 0);
    for seed in GLOB_SEEDS {
        let mut rng = Rng::new(seed.wrapping_mul(0x5851_f42d_4c95_7f2d));
        let mut seen = HashSet::new();
        let mut patterns = Vec::with_capacity(GLOB_PATTERNS);
        while patterns.len() < GLOB_PATTERNS {
            let len = rng.between(0, 8);
            let pattern = rng.bytes(PATTERN_BYTES, len);
            if seen.insert(pattern.clone()) {
                patterns.push(pattern);
            }
        }
        let channels: Vec<Vec<u8>> = (0..GLOB_CHANNELS)
            .map(|_| {
                if rng.percent(50) {
                    let pattern = rng.pick(&patterns).clone();
                    channel_near(&mut rng, &pattern)
                } else {
                    let len = rng.between(0, 8);
                    rng.bytes(CHANNEL_BYTES, len)
                }
            })
            .collect();
        let (compared, matching) =
            compare_matches(&format!("glob seed {seed}"), &server, &patterns, &channels);
        pairs += compared;
        matched += matching;
    }
    eprintln!(
        "random globs: {} seeds x {GLOB_PATTERNS} patterns x {GLOB_CHANNELS} channels = \
         {pairs} pairs ({matched} matching) identical to redis-server, in {:.1?}",
        GLOB_SEEDS.count(),
        started.elapsed()
    );
}

#[test]
#[ignore = "needs redis-server"]
fn glob_table_matches_redis() {
    let server = RedisServer::require();
    let patterns: Vec<Vec<u8>> = GLOB_TABLE.iter().map(|row| row.0.to_vec()).collect();
    let mut channels: Vec<Vec<u8>> = Vec::new();
    for (_, yes, no) in GLOB_TABLE {
        for channel in yes.iter().chain(no.iter()) {
            if !channels.iter().any(|known| known == channel) {
                channels.push(channel.to_vec());
            }
        }
    }
    // First the table itself against the server ...
    let redis = redis_matches(&server, &patterns, &channels);
    let position = |channel: &[u8]| channels.iter().position(|known| known == channel).unwrap();
    let mut wrong = Vec::new();
    for (index, (pattern, yes, no)) in GLOB_TABLE.iter().enumerate() {
        for (listed, expected) in [(yes, true), (no, false)] {
            for channel in *listed {
                if redis[position(channel)].contains(&index) != expected {
                    wrong.push(format!(
                        "pattern {} channel {}: table says {expected}",
                        Show(pattern),
                        Show(channel)
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the table disagrees with redis-server: {wrong:#?}"
    );
    // ... then every pattern x every channel of the table against channelcast.
    let (pairs, _) = compare_matches("glob table", &server, &patterns, &channels);
    eprintln!(
        "glob table: {} rows, {pairs} pattern/channel pairs identical to redis-server",
        GLOB_TABLE.len()
    );
}

#[test]
#[ignore = "needs redis-server"]
fn glob_depth_limit_matches_redis() {
    let server = RedisServer::require();
    let star_a = |n: usize| b"*a".repeat(n);
    let a = |n: usize| b"a".repeat(n);
    let mut cve = b"a*".repeat(20);
    cve.push(b'b');
    let patterns: Vec<Vec<u8>> = vec![
        star_a(1000),
        star_a(1001),
        [star_a(1000), b"*".to_vec()].concat(),
        [star_a(1001), b"*".to_vec()].concat(),
        star_a(999),
        cve,
        b"*".to_vec(),
        b"*a".to_vec(),
    ];
    let mut with_b = a(1000);
    with_b.push(b'b');
    let channels: Vec<Vec<u8>> = vec![a(999), a(1000), a(1001), with_b, a(5000), a(1)];
    let redis = redis_matches(&server, &patterns, &channels);
    // The documented facts, on the real server.
    assert!(redis[1].contains(&0), "*a x1000 matches a x1000");
    assert!(!redis[1].contains(&1), "*a x1001 does not match a x1000");
    assert!(
        redis.iter().all(|matched| !matched.contains(&1)),
        "*a x1001 matches nothing"
    );
    assert!(!redis[4].contains(&5), "a* x20 + b does not match a x5000");
    let (pairs, _) = compare_matches("glob depth", &server, &patterns, &channels);
    eprintln!("glob depth limit: {pairs} pattern/channel pairs identical to redis-server");
}
