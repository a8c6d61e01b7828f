//! `Bridge`: joins a local `Broker` to a Redis server for chosen channels
//! and patterns (cargo feature `redis`).
//!
//! Two threads per bridge, each with its own connection:
//!
//! - *outbound*: every local [`Broker::publish`] on a bridged name is queued
//!   (by the broker's publish tap, before local delivery) and sent to Redis
//!   with `PUBLISH`, wrapped in an envelope that names this bridge;
//! - *inbound*: `SUBSCRIBE`s the bridged channels and `PSUBSCRIBE`s the
//!   bridged patterns, and publishes what other processes sent locally.
//!
//! A message is never delivered twice: the inbound side drops messages
//! whose envelope names this bridge (they were delivered locally already),
//! and when one remote publish reaches several of the bridge's Redis
//! subscriptions (a channel and a pattern, two patterns), only one is used:
//! the exact channel if it is bridged, else the first bridged pattern that
//! matches. Local subscribers then receive it as usual, as a `Message` or
//! `PMessage` according to their own subscriptions.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::registry::{Registry, Space};
use crate::{Broker, Glob, Name};

/// Marks an enveloped payload: `MAGIC`, then the 16-byte origin, then the
/// payload. Messages without it (from `redis-cli` or any other client) are
/// delivered as they are.
const MAGIC: &[u8; 8] = b"\x00ccast\x01\x00";
const ORIGIN_LEN: usize = 16;
/// How often the threads look at the stop flag while idle.
const TICK: Duration = Duration::from_millis(50);
/// Reconnection backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(25), Duration::from_secs(1));

/// Why a [`Bridge`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The URL is not a Redis URL (`redis://host:port/`).
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What the Redis client said about it.
        reason: String,
    },
    /// This broker already has a bridge; drop it first.
    #[error("this broker already has a bridge: drop it before starting another")]
    AlreadyBridged,
}

/// Counters of a [`Bridge`], from [`Bridge::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Local publishes sent to Redis.
    pub sent: u64,
    /// Messages from other processes delivered locally.
    pub received: u64,
    /// Local publishes on bridged names that could not be sent because the
    /// connection was down (they were still delivered locally).
    pub lost: u64,
    /// Times a connection was (re)established after failing.
    pub reconnects: u64,
}

/// Starts a [`Bridge`]; from [`Bridge::builder`].
#[must_use = "call start() to run the bridge"]
pub struct BridgeBuilder<'a> {
    broker: &'a Broker,
    url: String,
    channels: Vec<Name>,
    patterns: Vec<Name>,
}

impl BridgeBuilder<'_> {
    /// Bridges these channels (`SUBSCRIBE` on the Redis side).
    pub fn channels<I>(mut self, channels: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// Bridges every channel matching these patterns (`PSUBSCRIBE` on the
    /// Redis side, the same glob rules locally).
    pub fn patterns<I>(mut self, patterns: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.patterns.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Starts the bridge's two threads. An unreachable server is not an
    /// error: the bridge keeps reconnecting with backoff (see
    /// [`Bridge::is_connected`]).
    ///
    /// # Errors
    ///
    /// [`BridgeError::InvalidUrl`] for a malformed URL,
    /// [`BridgeError::AlreadyBridged`] when the broker has a bridge already.
    pub fn start(self) -> Result<Bridge, BridgeError> {
        let client =
            redis::Client::open(self.url.as_str()).map_err(|error| BridgeError::InvalidUrl {
                url: self.url.clone(),
                reason: error.to_string(),
            })?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            origin: new_origin(),
            channels: self.channels,
            patterns: self.patterns.iter().map(Glob::new).collect(),
            stop: AtomicBool::new(false),
            inbound_up: AtomicBool::new(false),
            outbound_up: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let tap_shared = Arc::clone(&shared);
        let tap = Arc::new(move |channel: &[u8], payload: &Bytes| {
            if tap_shared.bridges(channel) {
                let _ = tx.send((Name::from(channel), payload.clone()));
            }
        });
        if !self.broker.registry.set_tap(Some(tap)) {
            return Err(BridgeError::AlreadyBridged);
        }
        let registry = Arc::downgrade(&self.broker.registry);
        let threads = vec![
            spawn("channelcast-bridge-out", {
                let (shared, client) = (Arc::clone(&shared), client.clone());
                move || outbound(&shared, &client, &rx)
            }),
            spawn("channelcast-bridge-in", {
                let shared = Arc::clone(&shared);
                let registry = registry.clone();
                move || inbound(&shared, &client, &registry)
            }),
        ];
        Ok(Bridge {
            shared,
            registry,
            threads,
        })
    }
}

impl fmt::Debug for BridgeBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("url", &self.url)
            .field("channels", &self.channels)
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

/// A running bridge between a local [`Broker`] and a Redis server.
///
/// Local publishes on bridged names still reach local subscribers at once
/// (and `publish` returns the local count only); they are also sent to
/// Redis in the background. Messages other processes publish on bridged
/// names arrive to local subscribers as ordinary [`Message`](crate::Message)s
/// and `PMessage`s. Per channel, the order of one process's publishes is
/// kept (one connection, in order).
///
/// When the server is unreachable or the connection drops, local delivery
/// keeps working; the bridge reconnects with backoff (25 ms doubling to
/// 1 s) and subscribes again, and counts the local publishes it could not
/// send in [`BridgeStats::lost`]. Messages other processes published while
/// the inbound connection was down are not seen (Redis keeps none).
///
/// Dropping the bridge detaches it and stops its threads.
///
/// ```no_run
/// use channelcast::{Bridge, Broker};
///
/// let broker = Broker::new();
/// let bridge = Bridge::builder(&broker, "redis://127.0.0.1:6379/")
///     .channels(["chat"])
///     .patterns(["news.*"])
///     .start()?;
/// bridge.wait_connected(std::time::Duration::from_secs(5));
/// broker.publish("chat", "hello, other processes");
/// # Ok::<(), channelcast::BridgeError>(())
/// ```
pub struct Bridge {
    shared: Arc<Shared>,
    registry: Weak<Registry<Bytes>>,
    threads: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Starts describing a bridge between `broker` and the Redis server at
    /// `url` (`redis://host:port/`).
    pub fn builder<'a>(broker: &'a Broker, url: &str) -> BridgeBuilder<'a> {
        BridgeBuilder {
            broker,
            url: url.to_owned(),
            channels: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// Whether both connections (publishing and subscribed) are up.
    pub fn is_connected(&self) -> bool {
        self.shared.inbound_up.load(Ordering::Acquire)
            && self.shared.outbound_up.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for [`is_connected`](Bridge::is_connected);
    /// returns whether it became true.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_connected() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// The bridge's counters.
    pub fn stats(&self) -> BridgeStats {
        BridgeStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            received: self.shared.received.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.set_tap(None);
        }
        self.shared.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What the bridge's threads and the publish tap share.
struct Shared {
    /// Random, per bridge: marks this bridge's own messages coming back.
    origin: [u8; ORIGIN_LEN],
    channels: Vec<Name>,
    patterns: Vec<Glob>,
    stop: AtomicBool,
    inbound_up: AtomicBool,
    outbound_up: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    reconnects: AtomicU64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether a local publish on `channel` goes to Redis.
    fn bridges(&self, channel: &[u8]) -> bool {
        self.channels.iter().any(|name| name.as_bytes() == channel)
            || self.patterns.iter().any(|glob| glob.is_match(channel))
    }

    /// Whether the copy of a remote publish that Redis sent through
    /// `pattern` (or the exact channel, for `None`) is the one to deliver.
    fn chosen(&self, channel: &[u8], pattern: Option<&[u8]>) -> bool {
        let exact = self.channels.iter().any(|name| name.as_bytes() == channel);
        match pattern {
            None => exact,
            Some(pattern) => {
                !exact
                    && self
                        .patterns
                        .iter()
                        .find(|glob| glob.is_match(channel))
                        .is_some_and(|glob| glob.as_name().as_bytes() == pattern)
            }
        }
    }

    fn envelope(&self, payload: &[u8]) -> Vec<u8> {
        let mut wrapped = Vec::with_capacity(MAGIC.len() + ORIGIN_LEN + payload.len());
        wrapped.extend_from_slice(MAGIC);
        wrapped.extend_from_slice(&self.origin);
        wrapped.extend_from_slice(payload);
        wrapped
    }

    /// The payload to deliver locally, or `None` for this bridge's own.
    fn unwrap<'p>(&self, payload: &'p [u8]) -> Option<&'p [u8]> {
        match payload.strip_prefix(&MAGIC[..]) {
            Some(rest) if rest.len() >= ORIGIN_LEN => {
                let (origin, body) = rest.split_at(ORIGIN_LEN);
                (origin != self.origin).then_some(body)
            }
            _ => Some(payload),
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .expect("the bridge can start a thread")
}

/// A random origin id: hashes of the time, the process and a fresh
/// randomly seeded hasher.
fn new_origin() -> [u8; ORIGIN_LEN] {
    use std::hash::{BuildHasher, Hasher};
    let mut origin = [0; ORIGIN_LEN];
    for chunk in origin.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    origin
}

/// Doubling delays between connection attempts.
struct Backoff {
    next: Duration,
    failed: bool,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF.0,
            failed: false,
        }
    }

    /// Sleeps before the next attempt (in ticks, to notice a stop).
    fn wait(&mut self, shared: &Shared) {
        self.failed = true;
        let until = Instant::now() + self.next;
        while Instant::now() < until && !shared.stopped() {
            thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        self.next = (self.next * 2).min(BACKOFF.1);
    }

    /// Records a success; counts it as a reconnection after failures.
    fn connected(&mut self, shared: &Shared) {
        if self.failed {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *self = Backoff::new();
    }
}

fn connect(client: &redis::Client) -> Option<redis::Connection> {
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    connection.set_read_timeout(Some(TICK)).ok()?;
    connection
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    Some(connection)
}

/// Sends queued local publishes to Redis, reconnecting as needed.
fn outbound(shared: &Shared, client: &redis::Client, queue: &Receiver<(Name, Bytes)>) {
    let mut backoff = Backoff::new();
    let mut connection: Option<redis::Connection> = None;
    let mut retry_at = Instant::now();
    while !shared.stopped() {
        if connection.is_none() && Instant::now() >= retry_at {
            connection = connect(client);
            if connection.is_some() {
                backoff.connected(shared);
            } else {
                backoff.failed = true;
                retry_at = Instant::now() + backoff.next;
                backoff.next = (backoff.next * 2).min(BACKOFF.1);
            }
            shared
                .outbound_up
                .store(connection.is_some(), Ordering::Release);
        }
        let (channel, payload) = match queue.recv_timeout(TICK) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let Some(conn) = connection.as_mut() else {
            shared.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel.as_bytes())
            .arg(shared.envelope(&payload))
            .query(conn);
        if sent.is_ok() {
            shared.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.lost.fetch_add(1, Ordering::Relaxed);
            connection = None;
            shared.outbound_up.store(false, Ordering::Release);
            retry_at = Instant::now() + backoff.next;
        }
    }
    shared.outbound_up.store(false, Ordering::Release);
}

/// Subscribes on Redis and publishes what arrives locally, reconnecting and
/// subscribing again as needed.
fn inbound(shared: &Shared, client: &redis::Client, registry: &Weak<Registry<Bytes>>) {
    let mut backoff = Backoff::new();
    while !shared.stopped() {
        let Some(mut connection) = connect(client) else {
            backoff.wait(shared);
            continue;
        };
        let mut pubsub = connection.as_pubsub();
        let subscribed = shared
            .channels
            .iter()
            .try_for_each(|name| pubsub.subscribe(name.as_bytes()))
            .and_then(|()| {
                shared
                    .patterns
                    .iter()
                    .try_for_each(|glob| pubsub.psubscribe(glob.as_name().as_bytes()))
            });
        if subscribed.is_err() {
            backoff.wait(shared);
            continue;
        }
        backoff.connected(shared);
        shared.inbound_up.store(true, Ordering::Release);
        while !shared.stopped() {
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(error) if error.is_timeout() => continue,
                Err(_) => break,
            };
            let Some(registry) = registry.upgrade() else {
                shared.stop.store(true, Ordering::Release);
                break;
            };
            deliver(shared, &registry, &message);
        }
        shared.inbound_up.store(false, Ordering::Release);
        if !shared.stopped() {
            backoff.wait(shared);
        }
    }
}

/// Publishes one message from Redis locally, unless it is this bridge's
/// own or another copy of a publish already delivered.
fn deliver(shared: &Shared, registry: &Registry<Bytes>, message: &redis::Msg) {
    let Ok(channel) = message.get_channel::<Vec<u8>>() else {
        return;
    };
    let pattern = message.get_pattern::<Option<Vec<u8>>>().ok().flatten();
    if !shared.chosen(&channel, pattern.as_deref()) {
        return;
    }
    if let Some(payload) = shared.unwrap(message.get_payload_bytes()) {
        shared.received.fetch_add(1, Ordering::Relaxed);
        // Not through `Broker::publish`: the tap must not send it back.
        registry.publish(Space::Channel, &channel, Bytes::copy_from_slice(payload));
    }
}
