//! Replicated state: writer threads publish updates on one channel at once,
//! and replica threads apply them to their own key-value store in arrival
//! order. The updates do not commute (`SET` then `INCRBY` is not `INCRBY`
//! then `SET`), so the replicas end identical only because every subscriber
//! of a channel, pattern subscribers included, gets its messages in the same
//! order (guarantee 4). The payload is a struct: a `Broker<Update>`.
//!
//! One more replica starts late, while the writers are busy. The broker
//! retains the channel's updates (beyond Redis: see "Late joiners" in the
//! crate docs), and the late replica subscribes with history: it gets every
//! update published before it joined, then the live ones, with no gap and
//! no duplicate, so it converges too.
//!
//! Run it with `cargo run --example replicas`.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use channelcast::{Broker, Message};

const WRITERS: usize = 4;
const UPDATES_PER_WRITER: usize = 300;
/// One replica thread per subscription; a pattern reaches the same stream.
const REPLICAS: [&str; 3] = ["kv.updates", "kv.updates", "kv.*"];
const KEYS: [&str; 3] = ["apples", "pears", "plums"];

/// One operation on a store: `SET`, `INCRBY` (from 0 if missing) or `DEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set(&'static str, i64),
    IncrBy(&'static str, i64),
    Del(&'static str),
}

/// An update as published: its writer, its number for that writer, its op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Update {
    writer: usize,
    seq: usize,
    op: Op,
}

/// A replica: its store, and every update it applied, in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Replica {
    state: BTreeMap<&'static str, i64>,
    history: Vec<Update>,
}

impl Replica {
    fn apply(&mut self, update: Update) {
        match update.op {
            Op::Set(key, value) => _ = self.state.insert(key, value),
            Op::IncrBy(key, delta) => *self.state.entry(key).or_default() += delta,
            Op::Del(key) => _ = self.state.remove(key),
        }
        self.history.push(update);
    }
}

/// The `seq`-th update of `writer`: mostly increments, some sets and deletes.
fn update(writer: usize, seq: usize) -> Update {
    let key = KEYS[(writer + seq) % KEYS.len()];
    let small = |n: usize| i64::try_from(n).expect("a small number");
    let op = match seq % 5 {
        0 => Op::Set(key, small(writer * 1000 + seq)),
        4 if writer == 0 => Op::Del(key),
        _ => Op::IncrBy(key, small(writer + 1)),
    };
    Update { writer, seq, op }
}

/// A replica that joins now, with the channel's history: it applies the
/// retained updates, then the live ones; returns it with how many updates
/// were retained ones.
fn late_replica(
    broker: &Broker<Update>,
) -> Result<thread::JoinHandle<(Replica, usize)>, channelcast::SubscribeError> {
    let sub = broker.subscriber();
    sub.subscribe_with_history(["kv.updates"])?;
    Ok(thread::spawn(move || {
        let (mut replica, mut retained) = (Replica::default(), 0);
        for message in &sub {
            retained += usize::from(message.is_retained());
            if let Some(update) = message.into_payload() {
                replica.apply(update);
            }
        }
        (replica, retained)
    }))
}

/// FNV-1a, a digest that does not change from run to run.
fn digest(text: &str) -> u64 {
    let step = |hash: u64, byte: u8| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    text.bytes().fold(0xcbf2_9ce4_8422_2325, step)
}

fn main() -> Result<(), Box<dyn Error>> {
    let broker: Broker<Update> = Broker::default();
    let total = WRITERS * UPDATES_PER_WRITER;
    // Keep every update, for replicas that start late.
    broker.retain_last("kv.updates", total);
    let mut replicas = Vec::new();
    for name in REPLICAS {
        let sub = broker.subscriber();
        if name.contains('*') {
            sub.psubscribe([name])?;
        } else {
            sub.subscribe([name])?;
        }
        replicas.push(thread::spawn(move || {
            let mut replica = Replica::default();
            // Ends once the writers and `main` have dropped their brokers.
            for update in sub.iter().filter_map(Message::into_payload) {
                replica.apply(update);
            }
            replica
        }));
    }

    let start = Barrier::new(WRITERS);
    let late = thread::scope(|s| {
        for writer in 0..WRITERS {
            let (broker, start) = (broker.clone(), &start);
            s.spawn(move || {
                start.wait(); // all writers race from the same moment
                for seq in 0..UPDATES_PER_WRITER {
                    broker.publish("kv.updates", update(writer, seq));
                    thread::yield_now(); // let the others in between
                }
            });
        }
        // A replica that starts once a third of the updates are out.
        while broker.stats().retained < (total / 3) as u64 {
            thread::sleep(Duration::from_millis(1));
        }
        late_replica(&broker)
    })?;
    drop(broker);
    let mut replicas: Vec<Replica> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
    let (late, retained) = late.join().unwrap();
    replicas.push(late);

    println!("{WRITERS} writer threads each published {UPDATES_PER_WRITER} updates to kv.updates at the same time.");
    let stream = &replicas[0].history;
    let switches = stream
        .windows(2)
        .filter(|w| w[0].writer != w[1].writer)
        .count();
    println!("Their updates arrived interleaved: the stream switches from one writer to another {switches} times.");
    println!("It begins like this:");
    for update in &stream[..5] {
        println!("    writer {}: {:?}", update.writer, update.op);
    }
    println!();
    println!("Each replica applied what it received, in the order it received it:");
    let vias = REPLICAS.into_iter().chain(["kv.updates"]);
    for (at, (replica, via)) in replicas.iter().zip(vias).enumerate() {
        let how = if via.contains('*') {
            "pattern"
        } else if at == REPLICAS.len() {
            "channel (late)"
        } else {
            "channel"
        };
        let fingerprint = digest(&format!("{:?}", replica.state));
        let n = replica.history.len();
        println!("    replica on {how} {via:<10} applied {n} of {total} updates, store fingerprint {fingerprint:016x}");
    }
    let in_order = (0..WRITERS).all(|writer| {
        let seqs = stream.iter().filter(|u| u.writer == writer).map(|u| u.seq);
        seqs.eq(0..UPDATES_PER_WRITER)
    });
    let agree = replicas.iter().all(|replica| *replica == replicas[0]);
    println!();
    println!("The late replica joined after {retained} updates: it received them as retained");
    println!(
        "messages, then {} live ones, and applied each exactly once.",
        replicas[REPLICAS.len()].history.len() - retained
    );
    println!(
        "Every writer's updates arrived in the order it sent them: {}.",
        yes(in_order)
    );
    println!(
        "All replicas saw the same order and hold the same store: {}.",
        yes(agree)
    );
    println!("The store: {:?}", replicas[0].state);
    println!();
    println!("The updates do not commute, so a single reordering would show up as a");
    println!("different fingerprint: one order per channel is what keeps replicas equal.");
    Ok(())
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "NO"
    }
}
