//! The inbound side: subscribed connections; messages from other
//! processes are published locally, with gaps in other bridges' sequence
//! numbers counted and reported.
//!
//! One connection `SUBSCRIBE`s the channels and `PSUBSCRIBE`s the
//! patterns, at the URL's server ([`run`]). Shard channels are
//! `SSUBSCRIBE`d at the master serving their slot, one connection and
//! thread per master ([`shards`] keeps the slot map and those threads).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cluster::{self, SlotMap};
use super::envelope::{self, Origin};
use super::resp::{self, Conn, Frame, ReadError, Target};
use super::{spawn, Backoff, ConnectError, Counters, Shared, TICK};
use crate::fast_hash::FastMap;
use crate::registry::{Registry, Space};
use crate::Name;

/// Names per `SUBSCRIBE` command.
const NAMES_PER_COMMAND: usize = 1024;
/// A silent subscribed connection is probed with `PING` this often.
const PING_EVERY: Duration = Duration::from_secs(1);
/// While a master's subscribed connection is down, the slot map is read
/// again this often (a replica may have taken over).
const REFRESH_WHILE_DOWN: Duration = Duration::from_millis(500);
/// And this often in any case: a master that loses a slot does not always
/// tell its subscribers (no `sunsubscribe` push), and a subscriber cannot
/// tell a quiet channel from one now published elsewhere.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Payloads up to this size are copied out of the read buffer, so that a
/// small message waiting in a subscriber's queue does not keep a whole
/// read chunk alive; larger ones are shared with it.
const COPY_BELOW: usize = 16 * 1024;

/// The last sequence number seen from each other bridge, per channel and
/// per shard channel.
#[derive(Default)]
pub(super) struct Peers {
    seen: FastMap<Origin, [FastMap<Name, u64>; 2]>,
}

impl Peers {
    /// Records `seq` from `origin` on `channel`; returns how many of its
    /// messages on that channel are missing just before this one.
    fn missing(&mut self, origin: &Origin, space: Space, channel: &[u8], seq: u64) -> u64 {
        let channels =
            &mut self.seen.entry(*origin).or_default()[usize::from(space == Space::Shard)];
        if let Some(last) = channels.get_mut(channel) {
            let missed = seq.saturating_sub(*last + 1);
            *last = (*last).max(seq);
            missed
        } else {
            channels.insert(Name::from(channel), seq);
            0
        }
    }
}

/// The inbound thread: subscribes, delivers, reconnects.
pub(super) fn run(shared: &Shared, registry: &Weak<Registry<Bytes>>) {
    let names = &shared.names;
    if names.channels.is_empty() && names.patterns.is_empty() {
        // Nothing to receive: nothing to connect.
        shared.inbound_up.store(true, Ordering::Release);
        while !shared.stopped() {
            shared.nap(TICK);
        }
        shared.inbound_up.store(false, Ordering::Release);
        return;
    }
    let mut backoff = Backoff::new();
    while !shared.stopped() {
        let mut conn = match Conn::open(&shared.target, shared.timeouts)
            .and_then(|conn| subscribe(shared, conn, &classic_commands(shared)))
        {
            Ok(conn) => conn,
            Err(error) => {
                backoff.failed(shared, error);
                continue;
            }
        };
        backoff.connected(shared);
        shared.inbound_up.store(true, Ordering::Release);
        let error = receive(shared, registry, &mut conn, &shared.stop);
        shared.inbound_up.store(false, Ordering::Release);
        if let Some(error) = error {
            backoff.failed(shared, error);
        }
    }
}

/// The `SUBSCRIBE` and `PSUBSCRIBE` commands for the bridged channels and
/// patterns, and how many confirmations they bring.
fn classic_commands(shared: &Shared) -> (Vec<u8>, usize) {
    let names = &shared.names;
    let mut out = Vec::new();
    let mut expected = 0;
    let channels: Vec<&Name> = names.channels.iter().collect();
    for chunk in channels.chunks(NAMES_PER_COMMAND) {
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(chunk.iter().map(|name| name.as_bytes()));
        resp::encode(&mut out, &args);
        expected += chunk.len();
    }
    for chunk in names.patterns.chunks(NAMES_PER_COMMAND) {
        let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
        args.extend(chunk.iter().map(|glob| glob.as_name().as_bytes()));
        resp::encode(&mut out, &args);
        expected += chunk.len();
    }
    (out, expected)
}

/// The `SSUBSCRIBE` commands for shard channels, one slot per command (as
/// Redis Cluster requires), and how many confirmations they bring.
fn shard_commands(channels: &[Name]) -> (Vec<u8>, usize) {
    let mut by_slot: BTreeMap<u16, Vec<&[u8]>> = BTreeMap::new();
    for channel in channels {
        by_slot
            .entry(cluster::key_slot(channel))
            .or_default()
            .push(channel.as_bytes());
    }
    let mut out = Vec::new();
    for names in by_slot.values() {
        for chunk in names.chunks(NAMES_PER_COMMAND) {
            let mut args: Vec<&[u8]> = vec![b"SSUBSCRIBE"];
            args.extend_from_slice(chunk);
            resp::encode(&mut out, &args);
        }
    }
    (out, channels.len())
}

/// Sends subscribe commands and waits for their confirmations.
fn subscribe(
    shared: &Shared,
    mut conn: Conn,
    (commands, expected): &(Vec<u8>, usize),
) -> Result<Conn, ConnectError> {
    let addr = conn.addr().to_owned();
    let io = |detail: String| ConnectError::Io {
        addr: addr.clone(),
        detail,
    };
    conn.write(commands).1.map_err(|e| io(e.to_string()))?;
    let deadline = Instant::now() + shared.config.reply_timeout;
    let mut confirmed = 0;
    while confirmed < *expected {
        match conn.read_until(deadline) {
            Ok(Frame::Array(Some(items)))
                if matches!(
                    items.first().and_then(Frame::bulk).map(|kind| &kind[..]),
                    Some(b"subscribe" | b"psubscribe" | b"ssubscribe")
                ) =>
            {
                confirmed += 1;
            }
            Ok(Frame::Error(text)) => {
                return Err(ConnectError::Rejected {
                    addr: addr.clone(),
                    reply: String::from_utf8_lossy(&text).into_owned(),
                })
            }
            // A message on a name confirmed already: the server only sends
            // those after the confirmation; nothing to deliver yet.
            Ok(_) => {}
            Err(ReadError::Timeout) => {
                return Err(ConnectError::NoAnswer {
                    addr: addr.clone(),
                    waited: shared.config.reply_timeout,
                })
            }
            Err(error) => return Err(io(error.to_string())),
        }
    }
    Ok(conn)
}

/// Reads pushes until the connection breaks (the error) or the bridge
/// stops (`None`).
fn receive(
    shared: &Shared,
    registry: &Weak<Registry<Bytes>>,
    conn: &mut Conn,
    stop: &AtomicBool,
) -> Option<ConnectError> {
    let stopped = || shared.stopped() || stop.load(Ordering::Acquire);
    let mut probe = Probe::new();
    // The channel of the message at hand, copied out of the read buffer.
    let mut scratch: Vec<u8> = Vec::new();
    while !stopped() {
        let len = match conn.next_len(TICK) {
            Ok(len) => len,
            Err(ReadError::Timeout) => {
                if let Err(error) = probe.idle(shared, conn) {
                    return Some(error);
                }
                continue;
            }
            Err(error) => return Some(io_error(conn, &error.to_string())),
        };
        probe.quiet = false;
        let frame = conn.front(len);
        let Some(items) = resp::bulk_items(frame) else {
            conn.consume(len);
            continue;
        };
        let item = |i: usize| items.get(i).map(|range| &frame[range.clone()]);
        let (space, pattern, channel, payload) = match item(0) {
            Some(b"message") => (Space::Channel, None, item(1), items.get(2)),
            Some(b"pmessage") => (Space::Channel, item(1), item(2), items.get(3)),
            Some(b"smessage") => (Space::Shard, None, item(1), items.get(2)),
            Some(b"sunsubscribe") => {
                // The server dropped a shard channel: its slot moved to
                // another master. Read the map again and subscribe there.
                shared.want_refresh();
                conn.consume(len);
                continue;
            }
            _ => {
                conn.consume(len); // pong, confirmations
                continue;
            }
        };
        let (Some(channel), Some(payload)) = (channel, payload.cloned()) else {
            conn.consume(len);
            continue;
        };
        let chosen = match space {
            Space::Channel => shared.names.chosen(channel, pattern),
            Space::Shard => shared.names.shard.contains(channel),
        };
        if !chosen {
            conn.consume(len);
            continue;
        }
        let channel = {
            scratch.clear();
            scratch.extend_from_slice(channel);
            &scratch[..]
        };
        let Some(registry) = registry.upgrade() else {
            shared.stop.store(true, Ordering::Release);
            return None;
        };
        if stopped() {
            return None;
        }
        let body = match envelope::open(&frame[payload.clone()]) {
            Some((stamp, _)) if stamp.origin == shared.origin => {
                conn.consume(len);
                continue;
            }
            Some((stamp, body)) => {
                let missed = shared
                    .peers
                    .lock()
                    .missing(&stamp.origin, space, channel, stamp.seq);
                if missed > 0 {
                    report_gap(shared, &registry, space, channel, missed);
                }
                payload.start + body.start..payload.end
            }
            None => payload,
        };
        let body = if body.len() < COPY_BELOW {
            let copy = Bytes::copy_from_slice(&frame[body]);
            conn.consume(len);
            copy
        } else {
            conn.take(len).slice(body)
        };
        Counters::add(&shared.counters.received, 1);
        // Not through `Broker::publish`: the tap must not send it back.
        registry.publish(space, channel, body);
    }
    None
}

/// Watches a silent subscribed connection: `PING` after [`PING_EVERY`]
/// of silence, given up when the answer does not come in time.
struct Probe {
    heard: Instant,
    pinged: Option<Instant>,
    /// Nothing arrived since the last look.
    quiet: bool,
}

impl Probe {
    fn new() -> Self {
        Probe {
            heard: Instant::now(),
            pinged: None,
            quiet: true,
        }
    }

    /// Called when nothing arrived for a tick.
    fn idle(&mut self, shared: &Shared, conn: &mut Conn) -> Result<(), ConnectError> {
        let now = Instant::now();
        if !self.quiet {
            (self.heard, self.pinged, self.quiet) = (now, None, true);
        }
        if let Some(at) = self.pinged {
            if now.duration_since(at) >= shared.config.reply_timeout {
                return Err(ConnectError::NoAnswer {
                    addr: conn.addr().to_owned(),
                    waited: now.duration_since(at),
                });
            }
        } else if now.duration_since(self.heard) >= PING_EVERY {
            let mut ping = Vec::new();
            resp::encode(&mut ping, &[b"PING"]);
            if let Err(error) = conn.write(&ping).1 {
                return Err(io_error(conn, &error.to_string()));
            }
            self.pinged = Some(now);
        }
        Ok(())
    }
}

fn io_error(conn: &Conn, detail: &str) -> ConnectError {
    ConnectError::Io {
        addr: conn.addr().to_owned(),
        detail: detail.to_owned(),
    }
}

/// Reports `missed` messages from another bridge that never arrived on
/// `channel`: counted in [`BridgeStats::missed`](super::BridgeStats::missed)
/// and queued as a `Message::Lagged` to the local subscribers.
fn report_gap(
    shared: &Shared,
    registry: &Registry<Bytes>,
    space: Space,
    channel: &[u8],
    missed: u64,
) {
    Counters::add(&shared.counters.missed, missed);
    // In band, where the messages are missing, to every local subscriber
    // a publish on this channel would reach.
    registry.publish_lagged(space, channel, missed);
}

/// One master's subscribed connection for the shard channels of its
/// slots, on its own thread.
struct Worker {
    addr: String,
    channels: Vec<Name>,
    stop: Arc<AtomicBool>,
    up: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The shards thread: keeps the slot map fresh and one [`Worker`] per
/// master serving a bridged shard channel, started, stopped and replaced
/// as the map changes (`-MOVED` answers, `sunsubscribe` pushes from a
/// master that lost a slot, a master that cannot be reached, failover).
pub(super) fn shards(
    shared: &Arc<Shared>,
    registry: &Weak<Registry<Bytes>>,
    done: &crossbeam_channel::Sender<()>,
) {
    let mut workers: Vec<Worker> = Vec::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut refreshed: Option<Instant> = None;
    let mut kept = None;
    while !shared.stopped() {
        let all_up = workers.iter().all(|w| w.up.load(Ordering::Acquire));
        let due = refreshed.map_or(true, |at| {
            let every = if all_up {
                REFRESH_EVERY
            } else {
                REFRESH_WHILE_DOWN
            };
            at.elapsed() >= every
        });
        if shared.refresh.swap(false, Ordering::AcqRel) || due {
            match cluster::fetch(shared, &mut kept) {
                Ok(map) => shared.install(map),
                Err(error) => shared.failed(error),
            }
            refreshed = Some(Instant::now());
        }
        let wanted = assignment(&shared.names.shard, &shared.slot_map());
        let (keep, gone): (Vec<Worker>, Vec<Worker>) = workers
            .into_iter()
            .partition(|w| wanted.get(&w.addr) == Some(&w.channels));
        workers = keep;
        for worker in gone {
            worker.stop.store(true, Ordering::Release);
            stopping.push(worker.thread);
        }
        for (addr, channels) in wanted {
            if workers.iter().any(|w| w.addr == addr) {
                continue;
            }
            let target = cluster::node_target(&shared.target, &addr);
            let stop = Arc::new(AtomicBool::new(false));
            let up = Arc::new(AtomicBool::new(false));
            let thread = spawn("channelcast-bridge-shard", {
                let (shared, registry, done) = (Arc::clone(shared), registry.clone(), done.clone());
                let (stop, up, channels) = (Arc::clone(&stop), Arc::clone(&up), channels.clone());
                move || {
                    worker(&shared, &registry, &target, &channels, &stop, &up);
                    drop(done);
                }
            });
            workers.push(Worker {
                addr,
                channels,
                stop,
                up,
                thread,
            });
        }
        for thread in std::mem::take(&mut stopping) {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                stopping.push(thread);
            }
        }
        let all_up = workers.iter().all(|w| w.up.load(Ordering::Acquire));
        shared.shards_up.store(all_up, Ordering::Release);
        shared.nap(TICK);
    }
    shared.shards_up.store(false, Ordering::Release);
    for worker in &workers {
        worker.stop.store(true, Ordering::Release);
    }
}

/// Which master subscribes to which bridged shard channels (sorted), on
/// `map`; channels whose slot no master serves are left out.
fn assignment(
    channels: &crate::fast_hash::FastSet<Name>,
    map: &SlotMap,
) -> BTreeMap<String, Vec<Name>> {
    let mut wanted: BTreeMap<String, Vec<Name>> = BTreeMap::new();
    for channel in channels {
        if let Some(addr) = map.owner_of(channel) {
            wanted
                .entry(addr.to_owned())
                .or_default()
                .push(channel.clone());
        }
    }
    for names in wanted.values_mut() {
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    }
    wanted
}

/// A worker's thread: subscribes at one master, delivers, reconnects,
/// until stopped (its master no longer serves exactly these channels).
fn worker(
    shared: &Shared,
    registry: &Weak<Registry<Bytes>>,
    target: &Target,
    channels: &[Name],
    stop: &AtomicBool,
    up: &AtomicBool,
) {
    let commands = shard_commands(channels);
    let mut backoff = Backoff::new();
    while !shared.stopped() && !stop.load(Ordering::Acquire) {
        let mut conn = match Conn::open(target, shared.timeouts)
            .and_then(|conn| subscribe(shared, conn, &commands))
        {
            Ok(conn) => conn,
            Err(error) => {
                shared.want_refresh();
                backoff.failed(shared, error);
                continue;
            }
        };
        backoff.connected(shared);
        up.store(true, Ordering::Release);
        let error = receive(shared, registry, &mut conn, stop);
        up.store(false, Ordering::Release);
        if let Some(error) = error {
            shared.want_refresh();
            backoff.failed(shared, error);
        }
    }
}
