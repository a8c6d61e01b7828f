//! `Bridge`: joins a local `Broker` to a Redis server for chosen channels
//! and patterns (cargo feature `redis`).
//!
//! Two threads per bridge, each with its own connection:
//!
//! - *outbound* ([`outbound`]): the broker's publish tap, which runs under
//!   the published channel's lock, puts every local [`Broker::publish`] on
//!   a bridged name in a bounded queue, stamped with a per-channel sequence
//!   number; the thread sends the queue to Redis as pipelined `PUBLISH`es
//!   on one connection and reads the replies in bulk;
//! - *inbound* ([`inbound`]): `SUBSCRIBE`s the bridged channels and
//!   `PSUBSCRIBE`s the bridged patterns, checks the sequence numbers of
//!   other bridges for gaps, and publishes what arrives locally.
//!
//! Bridged shard channels (`spublish` / `ssubscribe`) add a third thread,
//! *shards* ([`inbound::shards`]): it keeps the map of hash slots to the
//! masters serving them ([`cluster`]; a plain server is one node serving
//! every slot) and one subscribed connection per master that serves a
//! bridged shard channel, each on its own thread, `SSUBSCRIBE`d to the
//! channels of that master's slots. The outbound thread sends each
//! `SPUBLISH` to its slot's master, on one connection per master.
//!
//! [`resp`] is the wire protocol, [`envelope`] the header each payload
//! travels with; with the `tls` feature, [`tls`] wraps connections in TLS
//! for `rediss://` URLs.

mod cluster;
mod envelope;
mod inbound;
mod outbound;
mod resp;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::fast_hash::FastSet;
use crate::registry::{Registry, Space};
use crate::trie::PatternTrie;
use crate::{Broker, Glob, Name};
use cluster::SlotMap;
use inbound::Peers;

use envelope::Origin;
use outbound::Outbox;
use resp::{Conn, Target, Timeouts};

/// How often the threads look at the stop flag while idle.
const TICK: Duration = Duration::from_millis(50);
/// Reconnection backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(25), Duration::from_secs(1));

/// Why a [`Bridge`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The URL is not a Redis URL (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://…` for TLS, which needs the cargo feature `tls`).
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// This broker already has a bridge; close it first.
    #[error("this broker already has a bridge: close it before starting another")]
    AlreadyBridged,
    /// The server answered, and the answer says the bridge can never
    /// connect as configured: wrong credentials, or not a Redis server.
    /// (A server that cannot be reached is not an error: see
    /// [`Bridge::last_error`].)
    #[error("{0}")]
    Misconfigured(ConnectError),
    /// The TLS settings cannot be used: a CA certificate file that cannot
    /// be read, PEM without a certificate, no certificate roots at all
    /// (feature `tls`).
    #[error("unusable TLS settings: {reason}")]
    TlsSettings {
        /// What is wrong with them.
        reason: String,
    },
}

/// Why a connection to Redis failed, from [`Bridge::last_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("unknown host {host:?}: {detail}")]
    UnknownHost {
        /// The host from the URL.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// Nothing listens at the address (connection refused).
    #[error("nothing listens at {addr} (connection refused)")]
    Refused {
        /// `host:port`.
        addr: String,
    },
    /// The connection or a reply did not come in time: a server that never
    /// answers, stopped, or unreachable through the network.
    #[error("no answer from {addr} within {waited:?}")]
    NoAnswer {
        /// `host:port`.
        addr: String,
        /// How long the bridge waited.
        waited: Duration,
    },
    /// Something answered that does not speak RESP (an HTTP server, say).
    #[error("{addr} is not a Redis server: it answered {got:?}")]
    NotRedis {
        /// `host:port`.
        addr: String,
        /// The start of its answer.
        got: String,
    },
    /// The server wants other credentials (`NOAUTH`, `WRONGPASS`, …):
    /// put them in the URL, `redis://user:password@host:port/`.
    #[error("authentication failed at {addr}: {detail}")]
    Auth {
        /// `host:port`.
        addr: String,
        /// The server's error reply.
        detail: String,
    },
    /// The server refused a command the bridge needs (an ACL without
    /// Pub/Sub rights, `SELECT` of a missing database, …).
    #[error("{addr} refused a command: {reply}")]
    Rejected {
        /// `host:port`.
        addr: String,
        /// The server's error reply.
        reply: String,
    },
    /// The TLS handshake failed (feature `tls`, `rediss://` URLs): the
    /// server's certificate is not signed by a trusted root (see
    /// `BridgeBuilder::tls_ca_pem`), has expired, or does not name the
    /// host of the URL, or the server does not speak TLS.
    #[error("TLS with {addr} failed: {detail}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What rustls said.
        detail: String,
    },
    /// Any other I/O failure, or the connection broke.
    #[error("I/O error with {addr}: {detail}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The error.
        detail: String,
    },
}

impl ConnectError {
    /// Whether retrying cannot help: the server said no.
    fn is_definite(&self) -> bool {
        matches!(
            self,
            ConnectError::Auth { .. } | ConnectError::NotRedis { .. } | ConnectError::Tls { .. }
        )
    }
}

/// What the outbound queue does when it is full.
///
/// The queue sits between the publishers' tap, which runs under the
/// published channel's lock and therefore never waits, and the thread that
/// writes to Redis. Every message it drops is counted in
/// [`BridgeStats::lost`] and [`BridgeStats::overflowed`], and consumes a
/// sequence number, so receiving bridges report the gap to their
/// subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BridgeOverflow {
    /// The new message is not sent to Redis (it is still delivered
    /// locally).
    #[default]
    DropNewest,
    /// The oldest queued message is dropped to make room.
    DropOldest,
}

/// Counters of a [`Bridge`], from [`Bridge::stats`] or [`Bridge::close`].
///
/// Every local publish on a bridged name ends up in exactly one of
/// `sent`, `lost`, `unknown`, or is still `queued` (or being written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Local publishes Redis acknowledged (it answered the `PUBLISH`).
    pub sent: u64,
    /// Local publishes Redis certainly did not receive: dropped by the
    /// full queue ([`overflowed`](BridgeStats::overflowed)), refused by
    /// the server with an error reply, or still queued when the bridge was
    /// closed or dropped. They were delivered locally all the same.
    pub lost: u64,
    /// Local publishes written to a connection that broke (or stopped
    /// answering) before Redis acknowledged them: Redis may or may not
    /// have received them.
    pub unknown: u64,
    /// The part of `lost` dropped because the queue was full.
    pub overflowed: u64,
    /// Local publishes waiting in the queue now.
    pub queued: u64,
    /// Messages from other processes delivered locally.
    pub received: u64,
    /// Messages from other bridges that never arrived, found from gaps in
    /// their sequence numbers (Redis dropped them, evicted the subscriber
    /// connection, or the connection was down).
    pub missed: u64,
    /// Times a connection was established again after an earlier one to
    /// the same node for the same purpose; the first connections do not
    /// count.
    pub reconnects: u64,
    /// Shard publishes Redis Cluster turned away without running them
    /// (`-MOVED`, `-ASK`, `-CLUSTERDOWN`, `-TRYAGAIN`) and that were sent
    /// again (to the slot's new master, or later); each is still counted
    /// once in `sent`, `lost` or `unknown` in the end.
    pub redirected: u64,
}

/// Starts a [`Bridge`]; from [`Bridge::builder`].
#[must_use = "call start() to run the bridge"]
pub struct BridgeBuilder<'a> {
    broker: &'a Broker,
    url: String,
    channels: Vec<Name>,
    patterns: Vec<Name>,
    shard_channels: Vec<Name>,
    seeds: Vec<String>,
    config: Config,
    #[cfg(feature = "tls")]
    tls: tls::Options,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    capacity: usize,
    max_bytes: usize,
    overflow: BridgeOverflow,
    connect_timeout: Duration,
    reply_timeout: Duration,
    close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: 65_536,
            max_bytes: 32 << 20,
            overflow: BridgeOverflow::DropNewest,
            connect_timeout: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(1),
        }
    }
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

    /// Bridges these shard channels (`SSUBSCRIBE` / `SPUBLISH` on the
    /// Redis side): local [`Broker::spublish`]es on them go to Redis, and
    /// local [`ssubscribe`](crate::Subscriber::ssubscribe)rs receive what
    /// other processes `SPUBLISH` there.
    ///
    /// On Redis Cluster (found out from the server: nothing to configure),
    /// each shard channel is published to and subscribed at the master
    /// serving its hash slot, so the traffic spreads over the masters
    /// instead of reaching every node as `PUBLISH` does. On a plain server
    /// they work the same way, on that one server.
    pub fn shard_channels<I>(mut self, channels: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Name>,
    {
        self.shard_channels
            .extend(channels.into_iter().map(Into::into));
        self
    }

    /// Other nodes of the same Redis Cluster (`redis://host:port/` each;
    /// the credentials of the main URL are used for every node), asked
    /// for the slot map when no node known so far answers. Not needed for
    /// a working cluster: any node tells where the others are.
    pub fn cluster<I>(mut self, seed_urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.seeds
            .extend(seed_urls.into_iter().map(|url| url.as_ref().to_owned()));
        self
    }

    /// The most local publishes queued for Redis at once (default 65,536;
    /// at least 1).
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.config.capacity = messages.max(1);
        self
    }

    /// The most payload bytes queued for Redis at once (default 32 MiB).
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.config.max_bytes = bytes;
        self
    }

    /// What the full queue drops (default [`BridgeOverflow::DropNewest`]).
    pub fn overflow(mut self, policy: BridgeOverflow) -> Self {
        self.config.overflow = policy;
        self
    }

    /// How long to wait for a TCP connection and for each handshake reply
    /// (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long Redis may take to answer a `PUBLISH` (or a `PING` on the
    /// subscribed connection) before the connection is given up (default
    /// 5 s). Publishes written but not answered then count as
    /// [`unknown`](BridgeStats::unknown).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.config.reply_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long dropping the bridge waits for the queue to be sent
    /// (default 1 s); see [`Bridge::close`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Trusts the CA certificate(s) in `pem` (PEM text,
    /// `-----BEGIN CERTIFICATE-----`) for `rediss://` URLs, besides the
    /// [webpki roots](BridgeBuilder::tls_webpki_roots): for a server whose
    /// certificate a private CA signed. May be called more than once.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.cas.push(tls::Ca::Pem(pem.into()));
        self
    }

    /// [`tls_ca_pem`](BridgeBuilder::tls_ca_pem) with the PEM read from a
    /// file, when the bridge starts.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.cas.push(tls::Ca::File(path.into()));
        self
    }

    /// Whether `rediss://` servers may present certificates signed by the
    /// public certificate authorities Mozilla trusts (the `webpki-roots`
    /// crate, compiled in: the system's store is not read). Default
    /// `true`; `false` trusts only the CAs given to
    /// [`tls_ca_pem`](BridgeBuilder::tls_ca_pem) and
    /// [`tls_ca_file`](BridgeBuilder::tls_ca_file).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_webpki_roots(mut self, trusted: bool) -> Self {
        self.tls.webpki_roots = trusted;
        self
    }

    /// Checks the server and starts the bridge's two threads.
    ///
    /// It connects once first, waiting at most the
    /// [connect timeout](BridgeBuilder::connect_timeout). A server that
    /// cannot be reached (nothing listening, no answer, unknown host) is
    /// not an error: the bridge keeps trying with backoff, and
    /// [`Bridge::last_error`] says why it is not connected. A server that
    /// answers "no" is.
    ///
    /// # Errors
    ///
    /// [`BridgeError::InvalidUrl`] for a malformed or unsupported URL
    /// (`rediss://` without the `tls` feature),
    /// [`BridgeError::Misconfigured`] for wrong or missing credentials, a
    /// server that is not Redis, or (`rediss://`) a failed TLS handshake:
    /// a certificate the roots do not vouch for, or for another name,
    /// [`BridgeError::TlsSettings`] for CA certificates that cannot be
    /// read, [`BridgeError::AlreadyBridged`] when the broker has a bridge
    /// already.
    pub fn start(self) -> Result<Bridge, BridgeError> {
        let target = self.target()?;
        let seeds = seed_targets(&target, &self.seeds)?;
        let timeouts = Timeouts {
            connect: self.config.connect_timeout,
            write: self.config.reply_timeout,
        };
        let (mut first, last_error) = match Conn::open(&target, timeouts) {
            Ok(conn) => (Some(conn), None),
            Err(error) if error.is_definite() => return Err(BridgeError::Misconfigured(error)),
            Err(error) => (None, Some(error)),
        };
        let names = Names::new(self.channels, &self.patterns, self.shard_channels);
        let shared = Arc::new(Shared {
            origin: envelope::new_origin(),
            names,
            config: self.config,
            slot_map: Mutex::new(Arc::new(SlotMap::single(target.addr()))),
            map_version: AtomicU64::new(0),
            refresh: AtomicBool::new(true),
            target,
            seeds,
            timeouts,
            outbox: Outbox::new(),
            stop: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            inbound_up: AtomicBool::new(false),
            outbound_up: AtomicBool::new(false),
            shards_up: AtomicBool::new(false),
            counters: Counters::default(),
            peers: Mutex::new(Peers::default()),
            last_error: Mutex::new(last_error),
        });
        if shared.names.shard.is_empty() {
            shared.shards_up.store(true, Ordering::Release);
        } else if let Some(conn) = first.as_mut() {
            // The slot map before the first publish, when the server answers.
            match cluster::ask_on(&shared, conn, &shared.target) {
                Ok(map) => shared.install(map),
                Err(error) if error.is_definite() => return Err(BridgeError::Misconfigured(error)),
                Err(error) => {
                    shared.failed(error);
                    first = None;
                }
            }
        }
        let tap_shared = Arc::clone(&shared);
        let tap = Arc::new(move |space: Space, channel: &[u8], payload: &Bytes| {
            let bridged = match space {
                Space::Channel => tap_shared.names.bridges(channel),
                Space::Shard => tap_shared.names.shard.contains(channel),
            };
            if bridged {
                tap_shared.outbox.push(&tap_shared, space, channel, payload);
            }
        });
        if !self.broker.registry.set_tap(Some(tap)) {
            return Err(BridgeError::AlreadyBridged);
        }
        let registry = Arc::downgrade(&self.broker.registry);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let mut threads = vec![
            spawn("channelcast-bridge-out", {
                let (shared, done_tx) = (Arc::clone(&shared), done_tx.clone());
                move || {
                    outbound::run(&shared, first);
                    drop(done_tx);
                }
            }),
            spawn("channelcast-bridge-in", {
                let (shared, done_tx) = (Arc::clone(&shared), done_tx.clone());
                let registry = registry.clone();
                move || {
                    inbound::run(&shared, &registry);
                    drop(done_tx);
                }
            }),
        ];
        if shared.names.shard.is_empty() {
            drop(done_tx);
        } else {
            threads.push(spawn("channelcast-bridge-shards", {
                let shared = Arc::clone(&shared);
                let registry = registry.clone();
                move || inbound::shards(&shared, &registry, &done_tx)
            }));
        }
        Ok(Bridge {
            shared,
            registry,
            threads,
            done,
        })
    }
}

impl BridgeBuilder<'_> {
    /// The URL's server, with the TLS settings for `rediss://`.
    fn target(&self) -> Result<Target, BridgeError> {
        let (target, tls) = parse_url(&self.url)?;
        #[cfg(feature = "tls")]
        let target = if tls {
            let config =
                tls::config(&self.tls).map_err(|reason| BridgeError::TlsSettings { reason })?;
            Target {
                tls: Some(config),
                ..target
            }
        } else {
            target
        };
        // Without the feature, parse_url refuses `rediss://`.
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        Ok(target)
    }
}

/// Where to ask for the slot map: `target`, then the seed URLs, with
/// `target`'s credentials and TLS settings.
fn seed_targets(target: &Target, urls: &[String]) -> Result<Vec<Target>, BridgeError> {
    let mut seeds = vec![target.clone()];
    for url in urls {
        let (seed, _) = parse_url(url)?;
        seeds.push(Target {
            username: target.username.clone(),
            password: target.password.clone(),
            #[cfg(feature = "tls")]
            tls: target.tls.clone(),
            ..seed
        });
    }
    Ok(seeds)
}

/// Reads a `redis://` or `rediss://` URL with redis-rs; also says whether
/// it asks for TLS.
fn parse_url(url: &str) -> Result<(Target, bool), BridgeError> {
    let invalid = |reason: String| BridgeError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    // redis-rs reads `rediss://` only with TLS features of its own; the
    // bridge does TLS itself and gives redis-rs the same URL as `redis://`.
    let (tls, url_read) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rediss") => {
            (true, format!("redis://{rest}"))
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("valkeys") => {
            (true, format!("valkey://{rest}"))
        }
        _ => (false, url.to_owned()),
    };
    if tls && !cfg!(feature = "tls") {
        return Err(invalid(
            "TLS (rediss://) needs channelcast's cargo feature `tls`".to_owned(),
        ));
    }
    if tls && url_read.contains('#') {
        return Err(invalid(
            "no #fragment (#insecure): the server's certificate is always checked; \
             trust its CA with BridgeBuilder::tls_ca_pem"
                .to_owned(),
        ));
    }
    let client =
        redis::Client::open(url_read.as_str()).map_err(|error| invalid(error.to_string()))?;
    let info = client.get_connection_info();
    let settings = info.redis_settings();
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => Ok((
            Target {
                host: host.clone(),
                port: *port,
                username: settings.username().map(str::to_owned),
                password: settings.password().map(str::to_owned),
                db: settings.db(),
                #[cfg(feature = "tls")]
                tls: None,
            },
            tls,
        )),
        other => Err(invalid(format!("unsupported address {other}"))),
    }
}

impl fmt::Debug for BridgeBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("url", &self.url)
            .field("channels", &self.channels)
            .field("patterns", &self.patterns)
            .field("shard_channels", &self.shard_channels)
            .finish_non_exhaustive()
    }
}

/// A running bridge between a local [`Broker`] and a Redis server.
///
/// Local publishes on bridged names still reach local subscribers at once
/// (and `publish` returns the local count only); they are also queued and
/// sent to Redis in the background, pipelined on one connection, in the
/// order local subscribers receive them. Messages other processes publish
/// on bridged names arrive to local subscribers as ordinary
/// [`Message`](crate::Message)s and `PMessage`s.
///
/// Nothing is lost silently: every local publish on a bridged name is
/// counted as [`sent`](BridgeStats::sent), [`lost`](BridgeStats::lost) or
/// [`unknown`](BridgeStats::unknown) (see [`BridgeStats`]), and messages
/// from other bridges that never arrive are counted in
/// [`missed`](BridgeStats::missed) from the gaps in their sequence
/// numbers. Messages from clients that are not bridges (`redis-cli`, any
/// other program) carry no sequence numbers, so their losses cannot be
/// detected.
///
/// Shard channels ([`shard_channels`](BridgeBuilder::shard_channels)) go
/// as `SPUBLISH` / `SSUBSCRIBE`; on a Redis Cluster each goes to the master
/// serving its [hash slot](Bridge::key_slot), on one connection per master,
/// and follows its slot when it moves (`-MOVED`, failover, migration). A
/// master that is down holds up only the shard channels of its slots.
///
/// When the server is unreachable or a connection drops, local delivery
/// keeps working; the bridge reconnects with backoff (25 ms doubling to
/// 1 s), subscribes again and sends what it queued meanwhile (up to the
/// queue's bound). [`Bridge::last_error`] says why it is not connected.
///
/// [`close`](Bridge::close) sends what is queued and stops; dropping the
/// bridge does the same with the
/// [close timeout](BridgeBuilder::close_timeout).
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
/// let stats = bridge.close(std::time::Duration::from_secs(5));
/// assert_eq!(stats.sent, 1);
/// # Ok::<(), channelcast::BridgeError>(())
/// ```
pub struct Bridge {
    shared: Arc<Shared>,
    registry: Weak<Registry<Bytes>>,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once both threads have returned.
    done: crossbeam_channel::Receiver<()>,
}

impl Bridge {
    /// Starts describing a bridge between `broker` and the Redis server at
    /// `url`: `redis://host:port/`, with an optional ACL user and password
    /// (`redis://user:password@host:port/`, or `redis://:password@…` for
    /// `requirepass`) and database number (`/2`).
    ///
    /// With the cargo feature `tls`, `rediss://host:port/` (same options)
    /// connects over TLS, to every node of a cluster too: the server's
    /// certificate must chain to a trusted root (public CAs, or yours
    /// through `BridgeBuilder::tls_ca_pem`) and name the host
    /// as written in the URL (cluster nodes: as they announce themselves,
    /// often an IP address).
    pub fn builder<'a>(broker: &'a Broker, url: &str) -> BridgeBuilder<'a> {
        BridgeBuilder {
            broker,
            url: url.to_owned(),
            channels: Vec::new(),
            patterns: Vec::new(),
            shard_channels: Vec::new(),
            seeds: Vec::new(),
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: tls::Options::default(),
        }
    }

    /// Whether the publishing connection and every subscribed connection
    /// are up, the subscriptions confirmed by the server (with bridged
    /// shard channels: one subscribed connection per master serving one of
    /// them, on the latest slot map).
    pub fn is_connected(&self) -> bool {
        self.shared.inbound_up.load(Ordering::Acquire)
            && self.shared.outbound_up.load(Ordering::Acquire)
            && self.shared.shards_up.load(Ordering::Acquire)
    }

    /// The Redis Cluster hash slot of a shard channel (or key): CRC16 of
    /// the name, or of its `{hash tag}` when it has a non-empty one,
    /// modulo 16,384 — what `CLUSTER KEYSLOT` answers. Shard channels with
    /// the same hash tag (`{room7}.chat`, `{room7}.typing`) share a slot,
    /// hence a master.
    pub fn key_slot(channel: impl AsRef<[u8]>) -> u16 {
        cluster::key_slot(channel.as_ref())
    }

    /// Whether the server is a Redis Cluster node (from its answer to
    /// `CLUSTER SLOTS`; `false` until a node answered, and without bridged
    /// shard channels, which are what it is asked for).
    pub fn is_cluster(&self) -> bool {
        self.shared.slot_map().is_cluster()
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

    /// Why the latest connection attempt failed, or the latest connection
    /// broke; `None` if none ever did. It stays after the bridge
    /// reconnects: see [`is_connected`](Bridge::is_connected) for now.
    pub fn last_error(&self) -> Option<ConnectError> {
        self.shared.last_error.lock().clone()
    }

    /// Local publishes waiting in the outbound queue now.
    pub fn queued(&self) -> usize {
        self.shared.outbox.len()
    }

    /// The bridge's counters.
    pub fn stats(&self) -> BridgeStats {
        self.shared.stats()
    }

    /// Waits up to `timeout` until every local publish made before the
    /// call has been answered by Redis or counted as lost or unknown;
    /// returns whether that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.outbox.flush(Instant::now() + timeout)
    }

    /// Stops the bridge: detaches it from the broker (later publishes stay
    /// local), sends what is queued for up to `timeout`, then stops both
    /// threads. Whatever was still queued is counted in
    /// [`lost`](BridgeStats::lost), whatever was written but not answered
    /// in [`unknown`](BridgeStats::unknown). Returns the final counters.
    pub fn close(mut self, timeout: Duration) -> BridgeStats {
        self.shutdown(timeout);
        self.shared.stats()
    }

    fn shutdown(&mut self, timeout: Duration) {
        if self.threads.is_empty() {
            return;
        }
        let deadline = Instant::now() + timeout;
        if let Some(registry) = self.registry.upgrade() {
            // Waits for publishes inside the tap: nothing is queued after.
            registry.set_tap(None);
        }
        self.shared.outbox.flush(deadline);
        self.shared.abandon.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        self.shared.outbox.wake();
        // Bounded: the inbound thread may be waiting to deliver to a full
        // `Overflow::Block` subscriber; it is left to finish that one
        // delivery on its own (it delivers nothing after it).
        let grace = Instant::now() + TICK * 4 + Duration::from_millis(300);
        let finished = matches!(
            self.done.recv_deadline(grace.max(deadline)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        for thread in self.threads.drain(..) {
            if finished || thread.is_finished() {
                let _ = thread.join();
            }
        }
        self.shared.outbox.abandon(&self.shared);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown(self.shared.config.close_timeout);
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

/// The bridged names: a hash set of channels and a compiled pattern trie,
/// so that a publish on a name that is not bridged costs one hash lookup
/// (and one trie walk when there are patterns), however many are bridged.
struct Names {
    channels: FastSet<Name>,
    /// Distinct, in the order given.
    patterns: Vec<Glob>,
    trie: PatternTrie,
    /// Bridged shard channels.
    shard: FastSet<Name>,
}

impl Names {
    fn new(channels: Vec<Name>, patterns: &[Name], shard: Vec<Name>) -> Self {
        let mut globs: Vec<Glob> = Vec::new();
        let mut trie = PatternTrie::new();
        for pattern in patterns {
            if globs.iter().any(|g| g.as_name() == pattern) {
                continue;
            }
            let glob = Glob::new(pattern.clone());
            if !glob.is_unmatchable() {
                trie.insert(glob.tokens(), globs.len() as u64);
            }
            globs.push(glob);
        }
        Names {
            channels: channels.into_iter().collect(),
            patterns: globs,
            trie,
            shard: shard.into_iter().collect(),
        }
    }

    /// Whether a local publish on `channel` goes to Redis.
    fn bridges(&self, channel: &[u8]) -> bool {
        self.channels.contains(channel) || self.first_pattern(channel).is_some()
    }

    /// The first bridged pattern (in the order given) matching `channel`.
    fn first_pattern(&self, channel: &[u8]) -> Option<&Glob> {
        if self.patterns.is_empty() {
            return None;
        }
        let mut keys: SmallVec<[u64; 8]> = SmallVec::new();
        self.trie.matches_into(channel, &mut keys);
        keys.iter()
            .min()
            .and_then(|&key| self.patterns.get(key as usize))
    }

    /// Whether the copy of a remote publish that Redis sent through
    /// `pattern` (or the exact channel, for `None`) is the one to deliver:
    /// the exact channel if it is bridged, else the first bridged pattern
    /// that matches.
    fn chosen(&self, channel: &[u8], pattern: Option<&[u8]>) -> bool {
        let exact = self.channels.contains(channel);
        match pattern {
            None => exact,
            Some(pattern) => {
                !exact
                    && self
                        .first_pattern(channel)
                        .is_some_and(|glob| glob.as_name().as_bytes() == pattern)
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    lost: AtomicU64,
    unknown: AtomicU64,
    overflowed: AtomicU64,
    received: AtomicU64,
    missed: AtomicU64,
    reconnects: AtomicU64,
    redirected: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What the bridge's threads and the publish tap share.
struct Shared {
    /// Random, per bridge: marks this bridge's own messages coming back.
    origin: Origin,
    names: Names,
    config: Config,
    /// The URL's server: the node for `PUBLISH` and `SUBSCRIBE`.
    target: Target,
    /// Where to ask for the slot map: the URL's server, then the
    /// [`cluster`](BridgeBuilder::cluster) seeds.
    seeds: Vec<Target>,
    /// Which master serves each shard channel; replaced whole.
    slot_map: Mutex<Arc<SlotMap>>,
    /// Bumped on each change of `slot_map`.
    map_version: AtomicU64,
    /// Set to ask the shards thread for a fresh slot map.
    refresh: AtomicBool,
    timeouts: Timeouts,
    outbox: Outbox,
    stop: AtomicBool,
    /// Set when closing: stop waiting for replies and retrying.
    abandon: AtomicBool,
    inbound_up: AtomicBool,
    outbound_up: AtomicBool,
    /// Every master serving a bridged shard channel has its subscribed
    /// connection up.
    shards_up: AtomicBool,
    counters: Counters,
    /// Sequence numbers seen from other bridges; shared by the subscribed
    /// connections, since a shard channel moves between them.
    peers: Mutex<Peers>,
    last_error: Mutex<Option<ConnectError>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::Acquire)
    }

    fn failed(&self, error: ConnectError) {
        *self.last_error.lock() = Some(error);
    }

    fn stats(&self) -> BridgeStats {
        let c = &self.counters;
        BridgeStats {
            sent: c.sent.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            unknown: c.unknown.load(Ordering::Relaxed),
            overflowed: c.overflowed.load(Ordering::Relaxed),
            queued: self.outbox.len() as u64,
            received: c.received.load(Ordering::Relaxed),
            missed: c.missed.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            redirected: c.redirected.load(Ordering::Relaxed),
        }
    }

    /// The slot map now.
    fn slot_map(&self) -> Arc<SlotMap> {
        Arc::clone(&self.slot_map.lock())
    }

    /// Replaces the slot map if `map` differs from it.
    fn install(&self, map: SlotMap) {
        let mut current = self.slot_map.lock();
        if **current != map {
            *current = Arc::new(map);
            self.map_version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Asks the shards thread for a fresh slot map.
    fn want_refresh(&self) {
        self.refresh.store(true, Ordering::Release);
    }

    /// Sleeps up to `duration`, in ticks, returning early on stop.
    fn nap(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::sleep(left.min(TICK));
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .expect("the bridge can start a thread")
}

/// Doubling delays between connection attempts, and whether a connection
/// of this kind was made before (the next one is then a reconnection).
struct Backoff {
    next: Duration,
    connected_before: bool,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF.0,
            connected_before: false,
        }
    }

    /// Records a failure and sleeps before the next attempt.
    fn failed(&mut self, shared: &Shared, error: ConnectError) {
        shared.failed(error);
        shared.nap(self.next);
        self.next = (self.next * 2).min(BACKOFF.1);
    }

    /// Records a connection; counts it as a reconnection if one was made
    /// before.
    fn connected(&mut self, shared: &Shared) {
        if self.connected_before {
            Counters::add(&shared.counters.reconnects, 1);
        }
        self.connected_before = true;
        self.next = BACKOFF.0;
    }
}
