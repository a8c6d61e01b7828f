//! Replicated state: writer threads publish updates on one channel at once,
//! and replica threads apply them to their own key-value store in arrival
//! order. The updates do not commute (`SET` then `INCRBY` is not `INCRBY`
//! then `SET`), so the replicas end identical only because every subscriber
//! of a channel, pattern subscribers included, gets its messages in the same
//! order (guarantee 4). The payload is a struct: a `Broker<Update>`.
//!
//! Run it with `cargo run --example replicas`.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{self, Write};
use std::sync::Barrier;
use std::thread;

use channelcast::{Broker, Message};

pub(crate) const WRITERS: usize = 4;
pub(crate) const UPDATES_PER_WRITER: usize = 300;
/// One replica thread per subscription; a pattern reaches the same stream.
pub(crate) const REPLICAS: [&str; 3] = ["kv.updates", "kv.updates", "kv.*"];
const KEYS: [&str; 3] = ["apples", "pears", "plums"];

/// One operation on a store: `SET`, `INCRBY` (from 0 if missing) or `DEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Set(&'static str, i64),
    IncrBy(&'static str, i64),
    Del(&'static str),
}

/// An update as published: its writer, its number for that writer, its op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) writer: usize,
    pub(crate) seq: usize,
    pub(crate) op: Op,
}

/// A replica: its store, and every update it applied, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replica {
    pub(crate) state: BTreeMap<&'static str, i64>,
    pub(crate) history: Vec<Update>,
}

impl Replica {
    pub(crate) fn apply(&mut self, update: Update) {
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

/// FNV-1a, a digest that does not change from run to run.
fn digest(text: &str) -> u64 {
    let step = |hash: u64, byte: u8| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    text.bytes().fold(0xcbf2_9ce4_8422_2325, step)
}

/// Runs writers and replicas, writes a report to `out`, returns the replicas.
pub(crate) fn run(out: &mut impl Write) -> Result<Vec<Replica>, Box<dyn Error>> {
    let broker: Broker<Update> = Broker::default();
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
            // Ends once the writers and `run` have dropped their brokers.
            for update in sub.iter().filter_map(Message::into_payload) {
                replica.apply(update);
            }
            replica
        }));
    }

    let start = Barrier::new(WRITERS);
    thread::scope(|s| {
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
    });
    drop(broker);

    let replicas: Vec<Replica> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
    let stream = &replicas[0].history;
    let switches = stream.windows(2).filter(|w| w[0].writer != w[1].writer);
    writeln!(
        out,
        "{WRITERS} writers published {UPDATES_PER_WRITER} updates each"
    )?;
    writeln!(out, "stream ({} writer switches):", switches.count())?;
    for update in &stream[..5] {
        writeln!(out, "    writer {}: {:?}", update.writer, update.op)?;
    }
    writeln!(out, "    ...")?;
    for (replica, via) in replicas.iter().zip(REPLICAS) {
        let state = digest(&format!("{:?}", replica.state));
        let n = replica.history.len();
        writeln!(
            out,
            "replica via {via:<10}: {n} updates, state {state:016x}"
        )?;
    }
    let agree = replicas.iter().all(|replica| *replica == replicas[0]);
    writeln!(out, "all agree: {agree}; state {:?}", replicas[0].state)?;
    Ok(replicas)
}

fn main() -> Result<(), Box<dyn Error>> {
    let replicas = run(&mut io::stdout().lock())?;
    assert!(replicas.iter().all(|r| *r == replicas[0]));
    Ok(())
}
