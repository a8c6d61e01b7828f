//! A callback table keyed by message source, run in a worker loop.
//!
//! Every delivery names where it came from: its channel (`message`), the
//! pattern that matched (`pmessage`) or its shard channel (`smessage`). A
//! [`Dispatcher`] maps each source to a handler and finds it with one hash
//! lookup. A worker thread runs the loop while the main thread publishes.
//! A publish on `news.art` runs two handlers, the channel's and the
//! `news.*` pattern's, as Redis delivers it twice. (When the loop needs
//! nothing else, `Dispatcher::run` is the loop.)
//!
//! Run it with `cargo run --example dispatch`.

use std::error::Error;
use std::sync::Mutex;
use std::thread;

use channelcast::{Broker, Dispatcher, Message};

/// What the main thread sends, in order: (command, channel, payload).
const FEED: [(&str, &str, &str); 11] = [
    ("PUBLISH", "orders", "espresso 250"),
    ("PUBLISH", "news.art", "Monet at the Orsay"),
    ("PUBLISH", "alert.disk", "/var 95% full"),
    ("SPUBLISH", "metrics", "cpu 71"),
    ("PUBLISH", "orders", "croissant 180"),
    ("PUBLISH", "news.sport", "Lyon wins 2-1"),
    ("PUBLISH", "audit", "bob logged in"),
    ("SPUBLISH", "metrics", "cpu 93"),
    ("PUBLISH", "news.art", "Vermeer on loan"),
    ("PUBLISH", "alert.cpu", "load 12.5"),
    ("SPUBLISH", "metrics", "cpu 64"),
];

/// How often each handler ran, and what the handlers computed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    orders: usize,  // channel `orders`
    revenue: u64,   // in cents
    art: usize,     // channel `news.art`
    news: usize,    // pattern `news.*`
    alerts: usize,  // pattern `alert.*`
    metrics: usize, // shard channel `metrics`
    max_cpu: u64,
    unhandled: usize, // deliveries with no handler (`audit`)
}

fn main() -> Result<(), Box<dyn Error>> {
    let broker = Broker::new();
    let sub = broker.subscriber();
    let log = Mutex::new(Vec::new()); // what the handlers say, in order
    let say = |line: String| log.lock().unwrap().push(line);
    let mut t = Tally::default();

    let mut table = Dispatcher::new();
    table
        .on_channel("orders", |msg| {
            let order = text(msg);
            let (item, cents) = order.split_once(' ').unwrap_or((&order, "0"));
            t.orders += 1;
            t.revenue += cents.parse::<u64>().unwrap_or(0);
            let (euros, cents) = (t.revenue / 100, t.revenue % 100);
            say(format!("[orders]   one {item}; takings {euros}.{cents:02}"));
        })
        .on_channel("news.art", |msg| {
            t.art += 1;
            say(format!("[news.art] to the art desk: {}", text(msg)));
        })
        .on_pattern("news.*", |msg| {
            t.news += 1;
            say(format!("[news.*]   ticker: {}", text(msg)));
        })
        .on_pattern("alert.*", |msg| {
            t.alerts += 1;
            say(format!("[alert.*]  paging on-call: {}", text(msg)));
        })
        .on_shard("metrics", |msg| {
            let cpu = text(msg).trim_start_matches("cpu ").parse().unwrap_or(0);
            t.metrics += 1;
            t.max_cpu = t.max_cpu.max(cpu);
            say(format!("[metrics]  cpu {cpu}%, peak {}%", t.max_cpu));
        });
    table.subscribe(&sub)?;
    sub.subscribe(["audit"])?; // a channel with no handler

    let unhandled = thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut unhandled = 0;
            // Ends once the broker is dropped and the queue is drained.
            for msg in sub.iter().filter(Message::is_delivery) {
                if !table.dispatch(&msg) {
                    unhandled += 1;
                    let channel = msg.channel().expect("a delivery");
                    say(format!("(none)     {channel}: {}", text(&msg)));
                }
            }
            unhandled
        });
        println!("main thread (-> deliveries):");
        for (command, channel, payload) in FEED {
            let n = match command {
                "SPUBLISH" => broker.spublish(channel, payload),
                _ => broker.publish(channel, payload),
            };
            println!("{command:<8} {channel:<10} {payload:<18} -> {n}");
        }
        drop(broker);
        worker.join().expect("worker thread")
    });
    drop(table); // ends the handlers' borrows of `t` and `log`

    println!("\nworker loop:");
    for line in log.into_inner()? {
        println!("  {line}");
    }
    println!("\ntotals: {:?}", Tally { unhandled, ..t });
    Ok(())
}

/// The payload as text; for a pattern match, after the channel it came on.
fn text(msg: &Message) -> String {
    let payload = String::from_utf8_lossy(msg.payload().map_or(&[][..], |p| &p[..]));
    match msg {
        Message::Message { .. } | Message::SMessage { .. } => payload.into_owned(),
        _ => format!("{}: {payload}", msg.channel().expect("a delivery")),
    }
}
