//! The inbound side: one subscribed connection; messages from other
//! processes are published locally, with gaps in other bridges' sequence
//! numbers counted and reported.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::envelope::{self, Origin};
use super::resp::{self, Conn, Frame, ReadError};
use super::{Backoff, ConnectError, Counters, Shared, TICK};
use crate::fast_hash::FastMap;
use crate::registry::{Registry, Space};
use crate::Name;

/// Names per `SUBSCRIBE` command.
const NAMES_PER_COMMAND: usize = 1024;
/// A silent subscribed connection is probed with `PING` this often.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Payloads up to this size are copied out of the read buffer, so that a
/// small message waiting in a subscriber's queue does not keep a whole
/// read chunk alive; larger ones are shared with it.
const COPY_BELOW: usize = 16 * 1024;

/// The last sequence number seen from each other bridge, per channel.
#[derive(Default)]
pub(super) struct Peers {
    seen: FastMap<Origin, FastMap<Name, u64>>,
}

impl Peers {
    /// Records `seq` from `origin` on `channel`; returns how many of its
    /// messages on that channel are missing just before this one.
    fn missing(&mut self, origin: &Origin, channel: &[u8], seq: u64) -> u64 {
        let channels = self.seen.entry(*origin).or_default();
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
    let mut peers = Peers::default();
    while !shared.stopped() {
        let mut conn = match Conn::open(&shared.target, shared.timeouts)
            .and_then(|conn| subscribe(shared, conn))
        {
            Ok(conn) => conn,
            Err(error) => {
                backoff.failed(shared, error);
                continue;
            }
        };
        backoff.connected(shared);
        shared.inbound_up.store(true, Ordering::Release);
        let error = receive(shared, registry, &mut conn, &mut peers);
        shared.inbound_up.store(false, Ordering::Release);
        if let Some(error) = error {
            backoff.failed(shared, error);
        }
    }
}

/// Subscribes to every bridged name and waits for the confirmations.
fn subscribe(shared: &Shared, mut conn: Conn) -> Result<Conn, ConnectError> {
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
    let addr = conn.addr().to_owned();
    let io = |detail: String| ConnectError::Io {
        addr: addr.clone(),
        detail,
    };
    conn.write(&out).1.map_err(|e| io(e.to_string()))?;
    let deadline = Instant::now() + shared.config.reply_timeout;
    let mut confirmed = 0;
    while confirmed < expected {
        match conn.read_until(deadline) {
            Ok(Frame::Array(Some(items))) if matches!(items.first().and_then(Frame::bulk), Some(kind) if kind == &b"subscribe"[..] || kind == &b"psubscribe"[..]) =>
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
    peers: &mut Peers,
) -> Option<ConnectError> {
    let mut heard = Instant::now();
    let mut pinged: Option<Instant> = None;
    let mut quiet = true;
    // The channel of the message at hand, copied out of the read buffer.
    let mut scratch: Vec<u8> = Vec::new();
    while !shared.stopped() {
        let len = match conn.next_len(TICK) {
            Ok(len) => len,
            Err(ReadError::Timeout) => {
                let now = Instant::now();
                if !quiet {
                    // Something arrived since the last look.
                    (heard, pinged, quiet) = (now, None, true);
                }
                if let Some(at) = pinged {
                    if now.duration_since(at) >= shared.config.reply_timeout {
                        return Some(ConnectError::NoAnswer {
                            addr: conn.addr().to_owned(),
                            waited: now.duration_since(at),
                        });
                    }
                } else if now.duration_since(heard) >= PING_EVERY {
                    let mut ping = Vec::new();
                    resp::encode(&mut ping, &[b"PING"]);
                    if let Err(error) = conn.write(&ping).1 {
                        return Some(io_error(conn, &error.to_string()));
                    }
                    pinged = Some(now);
                }
                continue;
            }
            Err(error) => return Some(io_error(conn, &error.to_string())),
        };
        quiet = false;
        let frame = conn.front(len);
        let Some(items) = resp::bulk_items(frame) else {
            conn.consume(len);
            continue;
        };
        let item = |i: usize| items.get(i).map(|range| &frame[range.clone()]);
        let (pattern, channel, payload) = match item(0) {
            Some(b"message") => (None, item(1), items.get(2)),
            Some(b"pmessage") => (item(1), item(2), items.get(3)),
            _ => {
                conn.consume(len); // pong, confirmations
                continue;
            }
        };
        let (Some(channel), Some(payload)) = (channel, payload.cloned()) else {
            conn.consume(len);
            continue;
        };
        if !shared.names.chosen(channel, pattern) {
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
        if shared.stopped() {
            return None;
        }
        let body = match envelope::open(&frame[payload.clone()]) {
            Some((stamp, _)) if stamp.origin == shared.origin => {
                conn.consume(len);
                continue;
            }
            Some((stamp, body)) => {
                let missed = peers.missing(&stamp.origin, channel, stamp.seq);
                if missed > 0 {
                    report_gap(shared, &registry, Space::Channel, channel, missed);
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
        registry.publish(Space::Channel, channel, body);
    }
    None
}

fn io_error(conn: &Conn, detail: &str) -> ConnectError {
    ConnectError::Io {
        addr: conn.addr().to_owned(),
        detail: detail.to_owned(),
    }
}

/// Reports `missed` messages from another bridge that never arrived on
/// `channel`.
///
/// Counted in [`BridgeStats::missed`](super::BridgeStats::missed). The
/// core has no way yet to queue a `Message::Lagged` to the local
/// subscribers of one channel (a `Registry::publish_lagged(space, channel,
/// missed)` that queues the report under the channel's lock, to the same
/// subscribers a publish there would reach); once it has, this is where it
/// is called.
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
