//! The outbound side: the bounded queue the publish tap fills, and the
//! thread that sends it to Redis as pipelined `PUBLISH`es, and `SPUBLISH`es
//! to the master serving each shard channel's slot.
//!
//! # Links
//!
//! The thread holds one *link* per node it sends to: the URL's server
//! (every `PUBLISH`, and the `SPUBLISH`es of a plain server), and each
//! Redis Cluster master serving a bridged shard channel. A batch taken
//! from the queue is split among the links, in order; each link sends its
//! part pipelined. A link whose node is down keeps its part (bounded like
//! the queue, the excess counted as [`overflowed`](super::BridgeStats))
//! and retries with backoff, while the other links keep sending. An
//! `SPUBLISH` that the cluster turns away without running it (`-MOVED`,
//! `-ASK`, `-CLUSTERDOWN`, `-TRYAGAIN`) is sent again, to the new master or
//! later, before the later publishes on its channel.
//!
//! # Exact accounting
//!
//! Each batch is encoded into one buffer and written; the thread knows how
//! many bytes left the process. A command none of whose bytes left was
//! certainly not received: it is kept and sent first on the next
//! connection (so the order holds). A command written in part cannot be
//! executed either (Redis drops an incomplete command when the connection
//! closes), so it is kept too. A command written whole whose reply never
//! came (the connection broke, or Redis did not answer within the reply
//! timeout) is *unknown*: Redis may have run it. A reply, even a slow one,
//! means *sent*; an error reply means Redis refused it: *lost*.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::cluster::{self, SlotMap};
use super::envelope;
use super::resp::{self, Conn, Frame, ReadError, Target};
use super::{BridgeOverflow, ConnectError, Counters, Shared, BACKOFF, TICK};
use crate::fast_hash::FastMap;
use crate::registry::Space;
use crate::Name;

/// At most this many publishes per write.
const BATCH: usize = 4096;
/// And at most about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// A cluster's "try again later" answer is retried after this long.
const RETRY_LATER: Duration = Duration::from_millis(100);

/// One local publish on its way to Redis.
pub(super) struct Outgoing {
    pub(super) channel: Name,
    pub(super) seq: u64,
    pub(super) payload: Bytes,
    pub(super) space: Space,
    /// The order in which the tap queued it, across all channels.
    ticket: u64,
    /// `-ASK`ed to this node: sent there once, after `ASKING`.
    ask: Option<Box<str>>,
}

/// The bounded queue between the tap and the outbound thread.
pub(super) struct Outbox {
    queue: Mutex<Queue>,
    /// The outbound thread waits here for publishes.
    ready: Condvar,
    /// `flush` waits here for the queue to be settled.
    settled: Condvar,
}

struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
    /// The last sequence number used per channel, for channels and for
    /// shard channels.
    seqs: [FastMap<Name, u64>; 2],
    /// Publishes ever queued.
    accepted: u64,
    /// Of those, publishes settled: sent, lost or unknown.
    settled: u64,
    /// The outbound thread is waiting on `ready`.
    idle: bool,
    /// Publishes the outbound thread took and holds, not yet written (for
    /// a node that is down, say), and their bytes: they count against the
    /// queue's bounds.
    held: usize,
    held_bytes: usize,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                seqs: [FastMap::default(), FastMap::default()],
                accepted: 0,
                settled: 0,
                idle: false,
                held: 0,
                held_bytes: 0,
            }),
            ready: Condvar::new(),
            settled: Condvar::new(),
        }
    }

    /// Publishes waiting: in the queue, or held by the outbound thread.
    pub(super) fn len(&self) -> usize {
        let queue = self.queue.lock();
        queue.items.len() + queue.held
    }

    /// Records what the outbound thread holds now.
    fn set_held(&self, messages: usize, bytes: usize) {
        let mut queue = self.queue.lock();
        (queue.held, queue.held_bytes) = (messages, bytes);
    }

    /// Queues a local publish: called by the tap, under the channel's
    /// lock, so it never waits for anything but this short lock.
    pub(super) fn push(&self, shared: &Shared, space: Space, channel: &[u8], payload: &Bytes) {
        let config = &shared.config;
        let mut queue = self.queue.lock();
        let seqs = &mut queue.seqs[usize::from(space == Space::Shard)];
        let (channel, seq) = match seqs.get_key_value(channel) {
            Some((name, &seq)) => (name.clone(), seq + 1),
            None => (Name::from(channel), 1),
        };
        seqs.insert(channel.clone(), seq);
        let size = payload.len();
        let full = |q: &Queue| {
            q.items.len() + q.held >= config.capacity
                || q.bytes + q.held_bytes + size > config.max_bytes
        };
        if full(&queue) {
            let room = config.overflow == BridgeOverflow::DropOldest && size <= config.max_bytes;
            if !room {
                drop(queue);
                Counters::add(&shared.counters.lost, 1);
                Counters::add(&shared.counters.overflowed, 1);
                return;
            }
            let mut dropped = 0;
            while full(&queue) {
                let Some(old) = queue.items.pop_front() else {
                    break;
                };
                queue.bytes -= old.payload.len();
                queue.settled += 1;
                dropped += 1;
            }
            Counters::add(&shared.counters.lost, dropped);
            Counters::add(&shared.counters.overflowed, dropped);
        }
        queue.bytes += size;
        let ticket = queue.accepted;
        queue.accepted += 1;
        queue.items.push_back(Outgoing {
            channel,
            seq,
            payload: payload.clone(),
            space,
            ticket,
            ask: None,
        });
        if queue.idle {
            queue.idle = false;
            self.ready.notify_one();
        }
    }

    /// Takes the next batch, waiting up to `wait` for the first publish.
    fn take(&self, batch: &mut Vec<Outgoing>, wait: Duration) {
        let mut queue = self.queue.lock();
        if queue.items.is_empty() && !wait.is_zero() {
            queue.idle = true;
            self.ready.wait_for(&mut queue, wait);
            queue.idle = false;
        }
        let mut bytes = 0;
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            let Some(item) = queue.items.pop_front() else {
                break;
            };
            bytes += item.payload.len();
            batch.push(item);
        }
        queue.bytes -= bytes;
        queue.held += batch.len();
        queue.held_bytes += bytes;
    }

    /// Records `n` publishes taken from the queue as settled.
    fn settle(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut queue = self.queue.lock();
        queue.settled += n as u64;
        if queue.settled >= queue.accepted {
            self.settled.notify_all();
        }
    }

    /// Waits until everything queued before the call is settled.
    pub(super) fn flush(&self, deadline: Instant) -> bool {
        let mut queue = self.queue.lock();
        let target = queue.accepted;
        while queue.settled < target {
            if self.settled.wait_until(&mut queue, deadline).timed_out() {
                return queue.settled >= target;
            }
        }
        true
    }

    /// Wakes the outbound thread (to see the stop flag).
    pub(super) fn wake(&self) {
        self.ready.notify_all();
    }

    /// Counts what is still queued as lost (the bridge is closed).
    pub(super) fn abandon(&self, shared: &Shared) {
        let mut queue = self.queue.lock();
        let left = queue.items.len();
        queue.items.clear();
        queue.bytes = 0;
        queue.settled += left as u64;
        drop(queue);
        Counters::add(&shared.counters.lost, left as u64);
        self.settled.notify_all();
    }
}

/// One node the outbound thread sends to.
struct Link {
    target: Target,
    conn: Option<Conn>,
    /// Publishes routed here and not yet written, in order.
    pending: VecDeque<Outgoing>,
    /// Their payload bytes.
    bytes: usize,
    /// No attempt before this: backoff, or a "try again later" answer.
    wait_until: Instant,
    delay: Duration,
    connected_before: bool,
}

impl Link {
    fn new(target: Target) -> Self {
        Link {
            target,
            conn: None,
            pending: VecDeque::new(),
            bytes: 0,
            wait_until: Instant::now(),
            delay: BACKOFF.0,
            connected_before: false,
        }
    }

    fn up(&mut self, shared: &Shared, conn: Conn, main: bool) {
        if self.connected_before {
            Counters::add(&shared.counters.reconnects, 1);
        }
        self.connected_before = true;
        self.delay = BACKOFF.0;
        self.conn = Some(conn);
        if main {
            shared.outbound_up.store(true, Ordering::Release);
        }
    }

    fn down(&mut self, shared: &Shared, error: ConnectError, main: bool) {
        shared.failed(error);
        self.conn = None;
        self.wait_until = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(BACKOFF.1);
        if main {
            shared.outbound_up.store(false, Ordering::Release);
        }
    }

    fn push_front(&mut self, items: Vec<Outgoing>) {
        for item in items.into_iter().rev() {
            self.bytes += item.payload.len();
            self.pending.push_front(item);
        }
    }
}

/// The outbound thread's state.
struct Outbound<'a> {
    shared: &'a Shared,
    /// The URL's server first.
    links: Vec<Link>,
    /// The slot map, with the `-MOVED` answers seen since it was read.
    map: Arc<SlotMap>,
    version: u64,
    sender: Sender,
    batch: Vec<Outgoing>,
}

/// The outbound thread: connects, sends batches, reconnects.
pub(super) fn run(shared: &Shared, first: Option<Conn>) {
    let mut out = Outbound {
        shared,
        links: vec![Link::new(shared.target.clone())],
        map: shared.slot_map(),
        version: shared.map_version.load(Ordering::Acquire),
        sender: Sender::default(),
        batch: Vec::new(),
    };
    if let Some(conn) = first {
        out.links[0].up(shared, conn, true);
    }
    let mut taken = Vec::new();
    loop {
        if shared.abandoned() {
            break;
        }
        out.follow_map();
        let now = Instant::now();
        let busy: usize = out
            .links
            .iter()
            .filter(|link| link.conn.is_some())
            .map(|link| link.pending.len())
            .sum();
        if busy < BATCH {
            shared.outbox.take(&mut taken, out.idle_wait(now));
            out.route(taken.drain(..));
        }
        if shared.stopped() && out.links.iter().all(|link| link.pending.is_empty()) {
            break;
        }
        let mut redirected = Vec::new();
        for index in 0..out.links.len() {
            out.service(index, &mut redirected);
        }
        if !redirected.is_empty() {
            out.reroute(redirected);
        }
        out.publish_held();
    }
    shared.outbox.set_held(0, 0);
    shared.outbound_up.store(false, Ordering::Release);
    let left: usize = out.links.iter().map(|link| link.pending.len()).sum();
    Counters::add(&shared.counters.lost, left as u64);
    shared.outbox.settle(left);
}

impl Outbound<'_> {
    /// How long to wait for new publishes: not at all when a link can send
    /// or connect now.
    fn idle_wait(&self, now: Instant) -> Duration {
        let mut wait = TICK;
        for (index, link) in self.links.iter().enumerate() {
            if link.pending.is_empty() && !(index == 0 && link.conn.is_none()) {
                continue;
            }
            let left = link.wait_until.saturating_duration_since(now);
            if left.is_zero() {
                return Duration::ZERO;
            }
            wait = wait.min(left);
        }
        wait
    }

    /// Takes a new slot map from the shards thread, if there is one, and
    /// sends what waits by it.
    fn follow_map(&mut self) {
        let version = self.shared.map_version.load(Ordering::Acquire);
        if version == self.version {
            return;
        }
        self.version = version;
        self.map = self.shared.slot_map();
        // Links to nodes that are no longer masters, with nothing to send,
        // are closed.
        let map = Arc::clone(&self.map);
        let mut index = 0;
        self.links.retain(|link| {
            index += 1;
            index == 1
                || !link.pending.is_empty()
                || map.nodes().iter().any(|addr| *addr == link.target.addr())
        });
        self.reroute(Vec::new());
    }

    /// Routes every waiting publish again (after a map change or
    /// redirections), in the order the tap queued them.
    fn reroute(&mut self, mut items: Vec<Outgoing>) {
        for link in &mut self.links {
            items.extend(link.pending.drain(..));
            link.bytes = 0;
        }
        items.sort_by_key(|item| item.ticket);
        self.route(items.into_iter());
    }

    /// Appends publishes to the links they go to.
    fn route(&mut self, items: impl Iterator<Item = Outgoing>) {
        let shared = self.shared;
        let config = &shared.config;
        for item in items {
            let index = match (item.space, &item.ask) {
                (Space::Channel, _) => 0,
                (Space::Shard, Some(addr)) => self.link_for(&addr.clone()),
                (Space::Shard, None) => {
                    let Some(addr) = self.map.owner_of(&item.channel) else {
                        shared.failed(ConnectError::Rejected {
                            addr: shared.target.addr(),
                            reply: format!(
                                "no master serves slot {} (of shard channel {:?})",
                                cluster::key_slot(&item.channel),
                                String::from_utf8_lossy(&item.channel)
                            ),
                        });
                        Counters::add(&shared.counters.lost, 1);
                        shared.outbox.settle(1);
                        continue;
                    };
                    let addr = addr.to_owned();
                    self.link_for(&addr)
                }
            };
            let link = &mut self.links[index];
            let size = item.payload.len();
            if link.pending.len() >= config.capacity || link.bytes + size > config.max_bytes {
                // The node has been down long enough to fill a queue.
                Counters::add(&shared.counters.lost, 1);
                Counters::add(&shared.counters.overflowed, 1);
                shared.outbox.settle(1);
                continue;
            }
            link.bytes += size;
            link.pending.push_back(item);
        }
    }

    /// Tells the queue how many publishes the links hold.
    fn publish_held(&self) {
        let held = self.links.iter().map(|link| link.pending.len()).sum();
        let bytes = self.links.iter().map(|link| link.bytes).sum();
        self.shared.outbox.set_held(held, bytes);
    }

    /// The link to the node at `addr`, made if new.
    fn link_for(&mut self, addr: &str) -> usize {
        if let Some(index) = self
            .links
            .iter()
            .position(|link| link.target.addr() == addr)
        {
            return index;
        }
        self.links
            .push(Link::new(cluster::node_target(&self.shared.target, addr)));
        self.links.len() - 1
    }

    /// Connects a link or sends one batch on it.
    fn service(&mut self, index: usize, redirected: &mut Vec<Outgoing>) {
        let shared = self.shared;
        let main = index == 0;
        let clustered = self.map.is_cluster();
        let link = &mut self.links[index];
        let now = Instant::now();
        if now < link.wait_until || (!main && link.pending.is_empty()) {
            return;
        }
        let Some(conn) = link.conn.as_mut() else {
            match Conn::open(&link.target, shared.timeouts) {
                Ok(conn) => link.up(shared, conn, main),
                Err(error) => {
                    link.down(shared, error, main);
                    if clustered {
                        shared.want_refresh();
                    }
                }
            }
            return;
        };
        // Also checked while idle, so that a dead connection is noticed
        // (and reported by `is_connected`) before anything is written to it.
        if conn.closed_by_peer() {
            let error = ConnectError::Io {
                addr: conn.addr().to_owned(),
                detail: "the server closed the connection".to_owned(),
            };
            link.down(shared, error, main);
            if clustered {
                shared.want_refresh();
            }
            return;
        }
        if link.pending.is_empty() {
            return;
        }
        let mut bytes = 0;
        while self.batch.len() < BATCH && bytes < BATCH_BYTES {
            let Some(item) = link.pending.pop_front() else {
                break;
            };
            bytes += item.payload.len();
            self.batch.push(item);
        }
        link.bytes -= bytes;
        // What is written is no longer held: the queue has room for more.
        self.publish_held();
        let link = &mut self.links[index];
        let Some(conn) = link.conn.as_mut() else {
            return;
        };
        let outcome = self.sender.send(shared, conn, &mut self.batch);
        shared.outbox.settle(outcome.settled);
        if outcome.later {
            link.wait_until = Instant::now() + RETRY_LATER;
            shared.want_refresh();
        }
        link.push_front(outcome.back);
        if !outcome.moved.is_empty() {
            let map = Arc::make_mut(&mut self.map);
            for (item, hint) in outcome.moved {
                if let Some((slot, addr)) = hint {
                    map.moved(slot, &addr);
                }
                redirected.push(item);
            }
            shared.want_refresh();
        }
        if let Some(error) = outcome.broken {
            link.down(shared, error, main);
            if clustered {
                shared.want_refresh();
            }
        }
    }
}

/// What became of one batch.
struct Outcome {
    /// Publishes now counted as sent, lost or unknown.
    settled: usize,
    /// Publishes not run, in order, to send again on this link first: not
    /// written (whole), or answered "try again later".
    back: Vec<Outgoing>,
    /// Whether a node answered "try again later".
    later: bool,
    /// Publishes a node said are served elsewhere (`-MOVED`, with the new
    /// owner of the slot, or `-ASK`, in [`Outgoing::ask`]).
    moved: Vec<(Outgoing, Option<(u16, String)>)>,
    /// Why the connection must be given up, if it must.
    broken: Option<ConnectError>,
}

/// Encodes and writes batches, reads their replies.
#[derive(Default)]
struct Sender {
    buffer: Vec<u8>,
    /// Where each command of the batch ends in `buffer`.
    ends: Vec<usize>,
}

impl Sender {
    /// Sends `batch` (emptied) on `conn` and reads the replies.
    fn send(&mut self, shared: &Shared, conn: &mut Conn, batch: &mut Vec<Outgoing>) -> Outcome {
        self.buffer.clear();
        self.ends.clear();
        for item in batch.iter() {
            encode_publish(&mut self.buffer, &shared.origin, item);
            self.ends.push(self.buffer.len());
        }
        let (written, result) = conn.write(&self.buffer);
        let counters = &shared.counters;
        let mut outcome = Outcome {
            settled: 0,
            back: Vec::new(),
            later: false,
            moved: Vec::new(),
            broken: None,
        };
        if let Err(error) = result {
            // Whole commands that left may have run; the rest did not.
            let whole = self.ends.iter().take_while(|&&end| end <= written).count();
            Counters::add(&counters.unknown, whole as u64);
            outcome.back = batch.split_off(whole);
            batch.clear();
            outcome.settled = whole;
            outcome.broken = Some(ConnectError::Io {
                addr: conn.addr().to_owned(),
                detail: error.to_string(),
            });
            return outcome;
        }
        let n = batch.len();
        let mut items = batch.drain(..);
        let (mut sent, mut refused, mut answered) = (0, 0, 0);
        let mut last_progress = Instant::now();
        let mut seen = 0;
        let mut next = items.next();
        // The `ASKING` before an `-ASK`ed publish has its own reply.
        let mut asking = next.as_ref().is_some_and(|item| item.ask.is_some());
        while let Some(item) = next.take() {
            match conn.read(TICK) {
                Ok(_) if asking => {
                    asking = false;
                    next = Some(item);
                    continue;
                }
                Ok(Frame::Int(_)) => sent += 1,
                Ok(Frame::Error(text)) => {
                    if !outcome.turned_away(shared, conn, item, &text) {
                        refused += 1;
                    }
                }
                Ok(other) => {
                    outcome.broken = Some(ConnectError::NotRedis {
                        addr: conn.addr().to_owned(),
                        got: format!("{other:?}"),
                    });
                    break;
                }
                Err(ReadError::Timeout) => {
                    if answered > seen {
                        (seen, last_progress) = (answered, Instant::now());
                    }
                    let waited = last_progress.elapsed();
                    if waited >= shared.config.reply_timeout || shared.abandoned() {
                        outcome.broken = Some(ConnectError::NoAnswer {
                            addr: conn.addr().to_owned(),
                            waited,
                        });
                        break;
                    }
                    next = Some(item);
                    continue;
                }
                Err(error) => {
                    outcome.broken = Some(ConnectError::Io {
                        addr: conn.addr().to_owned(),
                        detail: error.to_string(),
                    });
                    break;
                }
            }
            answered += 1;
            next = items.next();
            asking = next.as_ref().is_some_and(|item| item.ask.is_some());
        }
        drop(items);
        let unanswered = n - answered;
        Counters::add(&counters.sent, sent);
        Counters::add(&counters.lost, refused);
        Counters::add(&counters.unknown, unanswered as u64);
        outcome.settled = sent as usize + refused as usize + unanswered;
        outcome
    }
}

impl Outcome {
    /// Sorts out a publish refused with the error reply `text`; returns
    /// whether it will be sent again (else it is lost).
    fn turned_away(
        &mut self,
        shared: &Shared,
        conn: &Conn,
        mut item: Outgoing,
        text: &[u8],
    ) -> bool {
        let refusal = Refusal::of(text);
        if matches!(refusal, Refusal::Later | Refusal::No) {
            shared.failed(ConnectError::Rejected {
                addr: conn.addr().to_owned(),
                reply: String::from_utf8_lossy(text).into_owned(),
            });
        }
        match refusal {
            Refusal::Moved(slot, addr) => {
                item.ask = None;
                self.moved.push((item, Some((slot, addr))));
            }
            Refusal::Ask(addr) => {
                item.ask = Some(addr.into_boxed_str());
                self.moved.push((item, None));
            }
            Refusal::Later => {
                item.ask = None;
                self.back.push(item);
                self.later = true;
            }
            Refusal::No => return false,
        }
        Counters::add(&shared.counters.redirected, 1);
        true
    }
}

/// Why a node refused a publish, and what to do about it.
enum Refusal {
    /// `-MOVED slot host:port`: the slot is served there now.
    Moved(u16, String),
    /// `-ASK slot host:port`: being migrated; ask there, once.
    Ask(String),
    /// `-CLUSTERDOWN`, `-TRYAGAIN`: not now.
    Later,
    /// Anything else: refused for good.
    No,
}

impl Refusal {
    fn of(text: &[u8]) -> Refusal {
        let text = String::from_utf8_lossy(text);
        let mut words = text.split_ascii_whitespace();
        match words.next() {
            Some(kind @ ("MOVED" | "ASK")) => {
                let slot = words.next().and_then(|slot| slot.parse().ok());
                match (slot, words.next()) {
                    (Some(slot), Some(addr)) if kind == "MOVED" => {
                        Refusal::Moved(slot, addr.to_owned())
                    }
                    (Some(_), Some(addr)) => Refusal::Ask(addr.to_owned()),
                    _ => Refusal::No,
                }
            }
            Some("CLUSTERDOWN" | "TRYAGAIN") => Refusal::Later,
            _ => Refusal::No,
        }
    }
}

/// Appends `PUBLISH channel <envelope>` (`SPUBLISH` for a shard channel,
/// after `ASKING` when `-ASK`ed) to `out`, without building the envelope
/// separately.
fn encode_publish(out: &mut Vec<u8>, origin: &envelope::Origin, item: &Outgoing) {
    if item.ask.is_some() {
        out.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
    }
    match item.space {
        Space::Channel => out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n"),
        Space::Shard => out.extend_from_slice(b"*3\r\n$8\r\nSPUBLISH\r\n"),
    }
    resp::header(out, b'$', item.channel.len());
    out.extend_from_slice(&item.channel);
    out.extend_from_slice(b"\r\n");
    resp::header(out, b'$', envelope::HEADER_LEN + item.payload.len());
    out.extend_from_slice(&envelope::header(origin, item.seq, item.payload.len()));
    out.extend_from_slice(&item.payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart() {
        assert!(matches!(
            Refusal::of(b"MOVED 3999 127.0.0.1:6381"),
            Refusal::Moved(3999, addr) if addr == "127.0.0.1:6381"
        ));
        assert!(matches!(
            Refusal::of(b"ASK 3999 127.0.0.1:6381"),
            Refusal::Ask(addr) if addr == "127.0.0.1:6381"
        ));
        assert!(matches!(
            Refusal::of(b"CLUSTERDOWN The cluster is down"),
            Refusal::Later
        ));
        assert!(matches!(Refusal::of(b"TRYAGAIN"), Refusal::Later));
        assert!(matches!(Refusal::of(b"MOVED x y"), Refusal::No));
        assert!(matches!(Refusal::of(b"NOPERM no"), Refusal::No));
    }
}
