//! Batch management of servers: a control thread sends commands to a pool of
//! worker threads and collects their status reports.
//!
//! Each worker listens on its own channel (`cmd.web1`, …) and on a broadcast
//! channel (`cmd.all`), and reports on `status.<name>`; the control thread
//! reads every report through one pattern, `status.*`. The count `publish`
//! returns tells it how many reports to wait for, and `numsub` (Redis
//! `PUBSUB NUMSUB`) shows who is listening.
//!
//! Half way through, a monitor starts. The broker retains each worker's
//! last status (beyond Redis: see "Late joiners" in the crate docs), so the
//! monitor, subscribing to `status.*` with history, sees every worker's
//! current state at once, then the reports that follow, none missing.
//!
//! Run it with `cargo run --example workers`.

use std::error::Error;
use std::thread;
use std::time::Duration;

use channelcast::{Broker, Message, SubscribeError, Subscriber};

/// The servers in the pool.
const WORKERS: [&str; 3] = ["web1", "web2", "db1"];

/// What the control thread sends, in order: (target, command). The target
/// is a worker or `all`; command `n` (from 1) goes out as `"<n> <command>"`.
const COMMANDS: [(&str, &str); 6] = [
    ("all", "uptime"),
    ("web2", "restart nginx"),
    ("all", "disk /var"),
    ("db1", "backup orders"),
    ("web1", "deploy v1.4.2"),
    ("all", "shutdown"),
];

/// A status report: `worker` answered command `id` (0: "I am online").
#[derive(Debug)]
struct Ack {
    worker: String,
    id: usize,
    result: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    let broker = Broker::new();
    // Each worker's last report, for monitors that start late.
    broker.retain_last_matching("status.*", 1);
    let reports = broker.subscriber();
    reports.psubscribe(["status.*"])?;
    reports.recv()?; // the psubscribe confirmation
    let pool: Vec<_> = WORKERS
        .iter()
        .map(|&name| {
            let broker = broker.clone();
            thread::spawn(move || worker(name, &broker))
        })
        .collect();

    // Waits for `n` reports and prints them, in pool order.
    let collect = |n: usize| {
        let mut batch: Vec<Ack> = (0..n).map_while(|_| next_ack(&reports)).collect();
        batch.sort_by_key(|ack| WORKERS.iter().position(|w| *w == ack.worker));
        for Ack { worker, id, result } in &batch {
            println!("    status.{worker:<5} #{id} {result}");
        }
    };

    println!("control: waiting for {} workers", WORKERS.len());
    collect(WORKERS.len());
    println!(
        "control: PUBSUB NUMSUB cmd.all = {}",
        broker.numsub_one("cmd.all")
    );
    let mut monitor = None;
    for (id, (target, command)) in (1..).zip(COMMANDS) {
        let n = broker.publish(format!("cmd.{target}"), format!("{id} {command}"));
        println!("control -> cmd.{target:<5} #{id} {command} ({n} listening)");
        collect(n);
        if id == 3 {
            monitor = Some(start_monitor(&broker)?);
        }
    }

    for worker in pool {
        worker.join().expect("worker thread")?;
    }
    if let Some(monitor) = monitor {
        let live: Vec<_> = monitor.try_iter().collect();
        println!("monitor: then {} live reports:", live.len());
        for message in &live {
            print_report(message);
        }
    }
    let listening = broker.numsub_one("cmd.all");
    println!("control: pool shut down, PUBSUB NUMSUB cmd.all = {listening}");
    Ok(())
}

/// A monitor that starts after the workers reported: it gets each worker's
/// last status right away, as retained messages, then live reports.
fn start_monitor(broker: &Broker) -> Result<Subscriber, SubscribeError> {
    let monitor = broker.subscriber_builder().confirmations(false).build();
    monitor.psubscribe_with_history(["status.*"])?;
    println!("monitor: started late; each worker's last status, retained:");
    for message in monitor.try_iter() {
        print_report(&message);
    }
    Ok(monitor)
}

/// Prints a report as the monitor sees it, marking retained ones.
fn print_report(message: &Message) {
    if let (Some(channel), Some(text)) = (message.channel(), message.payload_str()) {
        let (id, result) = text.split_once(' ').unwrap_or(("?", text));
        let retained = if message.is_retained() {
            " (retained)"
        } else {
            ""
        };
        println!(
            "    monitor: {:<12} #{id} {result}{retained}",
            channel.to_string()
        );
    }
}

/// The next report, or `None` if none comes within a few seconds.
fn next_ack(reports: &Subscriber) -> Option<Ack> {
    let msg = reports.recv_timeout(Duration::from_secs(5)).ok()?;
    let worker = msg.channel()?.strip_prefix(b"status.")?;
    let worker = String::from_utf8_lossy(worker).into_owned();
    let (id, result) = std::str::from_utf8(msg.payload()?).ok()?.split_once(' ')?;
    let (id, result) = (id.parse().ok()?, result.to_owned());
    Some(Ack { worker, id, result })
}

/// One server: runs the commands it receives until told to shut down.
fn worker(name: &str, broker: &Broker) -> Result<(), SubscribeError> {
    let commands = broker.subscriber();
    commands.subscribe([format!("cmd.{name}"), "cmd.all".to_owned()])?;
    let status = format!("status.{name}");
    let seed = name.bytes().map(usize::from).sum::<usize>(); // fake but stable readings
    broker.publish(&status, "0 online");
    for payload in commands.iter().filter_map(Message::into_payload) {
        let text = String::from_utf8_lossy(&payload);
        let (id, command) = text.split_once(' ').unwrap_or(("?", &text));
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let result = match verb {
            "uptime" => format!("up {} days", seed % 30),
            "disk" => format!("{arg} {}% used", 40 + seed % 50),
            "restart" => format!("{arg} restarted"),
            "backup" => format!("{arg} saved to /backups/{arg}.rdb"),
            "deploy" => format!("now running {arg}"),
            "shutdown" => "bye".to_owned(),
            _ => format!("unknown command {verb:?}"),
        };
        broker.publish(&status, format!("{id} {result}"));
        if verb == "shutdown" {
            break;
        }
    }
    Ok(())
}
