//! The outbound side: the bounded queue the publish tap fills, and the
//! thread that sends it to Redis as pipelined `PUBLISH`es.
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::envelope;
use super::resp::{self, Conn, Frame, ReadError};
use super::{Backoff, BridgeOverflow, ConnectError, Counters, Shared, TICK};
use crate::fast_hash::FastMap;
use crate::Name;

/// At most this many publishes per write.
const BATCH: usize = 4096;
/// And at most about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// One local publish on its way to Redis.
pub(super) struct Outgoing {
    pub(super) channel: Name,
    pub(super) seq: u64,
    pub(super) payload: Bytes,
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
    /// The last sequence number used per channel.
    seqs: FastMap<Name, u64>,
    /// Publishes ever queued.
    accepted: u64,
    /// Of those, publishes settled: sent, lost or unknown.
    settled: u64,
    /// The outbound thread is waiting on `ready`.
    idle: bool,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                seqs: FastMap::default(),
                accepted: 0,
                settled: 0,
                idle: false,
            }),
            ready: Condvar::new(),
            settled: Condvar::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Queues a local publish: called by the tap, under the channel's
    /// lock, so it never waits for anything but this short lock.
    pub(super) fn push(&self, shared: &Shared, channel: &[u8], payload: &Bytes) {
        let config = &shared.config;
        let mut queue = self.queue.lock();
        let (channel, seq) = match queue.seqs.get_key_value(channel) {
            Some((name, &seq)) => (name.clone(), seq + 1),
            None => (Name::from(channel), 1),
        };
        queue.seqs.insert(channel.clone(), seq);
        let size = payload.len();
        let full =
            |q: &Queue| q.items.len() >= config.capacity || q.bytes + size > config.max_bytes;
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
        queue.accepted += 1;
        queue.items.push_back(Outgoing {
            channel,
            seq,
            payload: payload.clone(),
        });
        if queue.idle {
            queue.idle = false;
            self.ready.notify_one();
        }
    }

    /// Takes the next batch, waiting up to `wait` for the first publish.
    fn take(&self, batch: &mut Vec<Outgoing>, wait: Duration) {
        let mut queue = self.queue.lock();
        if queue.items.is_empty() {
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

/// The outbound thread: connects, sends batches, reconnects.
pub(super) fn run(shared: &Shared, first: Option<Conn>) {
    let mut backoff = Backoff::new();
    let mut conn = first;
    if conn.is_some() {
        backoff.connected(shared);
        shared
            .outbound_up
            .store(true, std::sync::atomic::Ordering::Release);
    }
    // Publishes taken from the queue but not yet written: sent first.
    let mut carry: Vec<Outgoing> = Vec::new();
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut sender = Sender::default();
    loop {
        if shared.abandoned() {
            break;
        }
        if conn.is_none() {
            match Conn::open(&shared.target, shared.timeouts) {
                Ok(fresh) => {
                    backoff.connected(shared);
                    conn = Some(fresh);
                    shared
                        .outbound_up
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                Err(error) => {
                    backoff.failed(shared, error);
                    continue;
                }
            }
        }
        let Some(live) = conn.as_mut() else { continue };
        batch.append(&mut carry);
        if batch.is_empty() {
            shared.outbox.take(&mut batch, TICK);
        }
        if batch.is_empty() && shared.stopped() {
            break;
        }
        // Also checked while idle, so that a dead connection is noticed
        // (and reported by `is_connected`) before anything is written to it.
        if live.closed_by_peer() {
            shared.failed(ConnectError::Io {
                addr: live.addr().to_owned(),
                detail: "the server closed the connection".to_owned(),
            });
            conn = None;
            shared
                .outbound_up
                .store(false, std::sync::atomic::Ordering::Release);
            carry.append(&mut batch);
            continue;
        }
        if batch.is_empty() {
            continue;
        }
        let outcome = sender.send(shared, live, &mut batch);
        shared.outbox.settle(outcome.settled);
        carry = outcome.unsent;
        if let Some(error) = outcome.broken {
            shared.failed(error);
            conn = None;
            shared
                .outbound_up
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
    shared
        .outbound_up
        .store(false, std::sync::atomic::Ordering::Release);
    let left = carry.len() + batch.len();
    Counters::add(&shared.counters.lost, left as u64);
    shared.outbox.settle(left);
}

/// What became of one batch.
struct Outcome {
    /// Publishes now counted as sent, lost or unknown.
    settled: usize,
    /// Publishes not written, in order, to send again.
    unsent: Vec<Outgoing>,
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
    fn send(&mut self, shared: &Shared, conn: &mut Conn, batch: &mut Vec<Outgoing>) -> Outcome {
        self.buffer.clear();
        self.ends.clear();
        for item in batch.iter() {
            encode_publish(&mut self.buffer, &shared.origin, item);
            self.ends.push(self.buffer.len());
        }
        let (written, result) = conn.write(&self.buffer);
        let counters = &shared.counters;
        if let Err(error) = result {
            // Whole commands that left may have run; the rest did not.
            let whole = self.ends.iter().take_while(|&&end| end <= written).count();
            Counters::add(&counters.unknown, whole as u64);
            let unsent = batch.split_off(whole);
            batch.clear();
            return Outcome {
                settled: whole,
                unsent,
                broken: Some(ConnectError::Io {
                    addr: conn.addr().to_owned(),
                    detail: error.to_string(),
                }),
            };
        }
        let n = batch.len();
        batch.clear();
        let (mut sent, mut refused) = (0, 0);
        let mut broken = None;
        let mut answered = 0;
        let mut last_progress = Instant::now();
        let mut seen = 0;
        while answered < n {
            match conn.read(TICK) {
                Ok(Frame::Int(_)) => {
                    sent += 1;
                    answered += 1;
                }
                Ok(Frame::Error(text)) => {
                    refused += 1;
                    answered += 1;
                    shared.failed(ConnectError::Rejected {
                        addr: conn.addr().to_owned(),
                        reply: String::from_utf8_lossy(&text).into_owned(),
                    });
                }
                Ok(other) => {
                    broken = Some(ConnectError::NotRedis {
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
                        broken = Some(ConnectError::NoAnswer {
                            addr: conn.addr().to_owned(),
                            waited,
                        });
                        break;
                    }
                }
                Err(error) => {
                    broken = Some(ConnectError::Io {
                        addr: conn.addr().to_owned(),
                        detail: error.to_string(),
                    });
                    break;
                }
            }
        }
        Counters::add(&counters.sent, sent);
        Counters::add(&counters.lost, refused);
        Counters::add(&counters.unknown, (n - answered) as u64);
        Outcome {
            settled: n,
            unsent: Vec::new(),
            broken,
        }
    }
}

/// Appends `PUBLISH channel <envelope>` to `out`, without building the
/// envelope separately.
fn encode_publish(out: &mut Vec<u8>, origin: &envelope::Origin, item: &Outgoing) {
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    resp::header(out, b'$', item.channel.len());
    out.extend_from_slice(&item.channel);
    out.extend_from_slice(b"\r\n");
    resp::header(out, b'$', envelope::HEADER_LEN + item.payload.len());
    out.extend_from_slice(&envelope::header(origin, item.seq, item.payload.len()));
    out.extend_from_slice(&item.payload);
    out.extend_from_slice(b"\r\n");
}
