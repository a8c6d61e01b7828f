//! A chat room: users are threads, rooms are channels (`room:rust`,
//! `room:random`), and a moderator thread sees every room through one
//! pattern subscription, `room:*`.
//!
//! The host (the main thread) gives each user the floor in turn on a private
//! channel, `dm:<name>`, and waits until the room and the moderator have heard
//! the line, so the conversation reads in order. Then the host says goodbye,
//! the users leave, and the moderator's stream ends with the last `Broker`.
//!
//! Run it with `cargo run --example chat`.

use std::error::Error;
use std::thread;
use std::time::Duration;

use channelcast::crossbeam_channel::{unbounded, Sender};
use channelcast::{Broker, Message, Name, Subscriber};

const RUST: &str = "room:rust";
const RANDOM: &str = "room:random";

/// Who is in which room.
const MEMBERS: [(&str, &[&str]); 4] = [
    ("alice", &[RUST, RANDOM]),
    ("bob", &[RUST]),
    ("carol", &[RUST, RANDOM]),
    ("dave", &[RANDOM]),
];

/// The conversation: who says what, where, in this order.
const SCRIPT: [(&str, &str, &str); 9] = [
    ("alice", RUST, "morning! anyone tried channelcast?"),
    ("bob", RUST, "yes: Redis pub/sub, no server"),
    ("carol", RUST, "the moderator hears us via room:*"),
    ("dave", RANDOM, "lunch at noon, anyone?"),
    ("alice", RANDOM, "count me in"),
    ("carol", RANDOM, "me too, if bob is buying"),
    ("bob", RUST, "quiet in here... is everyone out?"),
    ("dave", RANDOM, "noon it is, then"),
    ("alice", RUST, "back to work, bob: see you at 1"),
];

/// One chat line as one listener received it: (listener, room, line), where
/// the listener is a user or `"moderator"` and the line is `"<speaker>: <text>"`.
type Heard = (String, String, String);

/// The users in `room`.
fn members_of(room: &str) -> impl Iterator<Item = &'static str> + '_ {
    MEMBERS
        .iter()
        .filter(move |(_, rooms)| rooms.contains(&room))
        .map(|(name, _)| *name)
}

fn main() -> Result<(), Box<dyn Error>> {
    let broker = Broker::new();
    let (tx, reports) = unbounded();

    // Subscribe before any thread starts, so that nothing said is missed.
    let moderator = broker.subscriber();
    moderator.psubscribe(["room:*"])?;
    let mut users = Vec::new();
    for &(name, rooms) in &MEMBERS {
        let sub = broker.subscriber();
        sub.subscribe(rooms.iter().copied().chain([format!("dm:{name}").as_str()]))?;
        println!("* {name} joined {}", rooms.join(", "));
        let (broker, tx) = (broker.clone(), tx.clone());
        users.push(thread::spawn(move || user(name, &sub, &broker, &tx)));
    }
    println!("* the moderator is watching room:*\n");
    let watcher = thread::spawn(move || {
        for msg in &moderator {
            if let (Some(room), Some(line)) = (msg.channel(), msg.payload()) {
                let _ = tx.send(heard("moderator", room, line));
            }
        }
    });

    let mut log = Vec::new();
    for (speaker, room, said) in SCRIPT {
        broker.publish(format!("dm:{speaker}"), "your turn");
        let expected = members_of(room).filter(|m| *m != speaker).count() + 1;
        let wait = || reports.recv_timeout(Duration::from_secs(5)).ok();
        let batch: Vec<Heard> = (0..expected).map_while(|_| wait()).collect();
        let mut names: Vec<_> = batch.iter().map(|(name, ..)| name.as_str()).collect();
        names.sort_by_key(|name| (*name == "moderator", *name));
        println!("{room:<12} <{speaker}> {said}");
        println!("{:13}(heard by {})", "", names.join(", "));
        log.extend(batch);
    }

    for (name, _) in MEMBERS {
        broker.publish(format!("dm:{name}"), "bye");
    }
    for user in users {
        user.join().expect("user thread");
    }
    drop(broker); // the last handle: the moderator's stream ends
    watcher.join().expect("moderator thread");
    log.extend(reports.try_iter()); // anything that came in late
    let logged = log.iter().filter(|(name, ..)| name == "moderator").count();
    println!(
        "\n* all gone; {} lines heard in all, the moderator logged {logged}",
        log.len()
    );
    Ok(())
}

/// One user: speaks on the host's cue, reports what others say.
fn user(name: &str, sub: &Subscriber, broker: &Broker, tx: &Sender<Heard>) {
    let mut lines = SCRIPT.iter().filter(|(speaker, ..)| *speaker == name);
    let own = format!("{name}: ");
    for msg in sub {
        let Message::Message { channel, payload } = msg else {
            continue; // a subscribe confirmation
        };
        if channel.starts_with(b"dm:") {
            match (&payload[..], lines.next()) {
                (b"your turn", Some((_, room, said))) => {
                    broker.publish(room, format!("{own}{said}"));
                }
                _ => return, // "bye" (or nothing left to say)
            }
        } else if !payload.starts_with(own.as_bytes()) {
            let _ = tx.send(heard(name, &channel, &payload));
        }
    }
}

fn heard(listener: &str, room: &Name, line: &[u8]) -> Heard {
    let line = String::from_utf8_lossy(line).into_owned();
    (listener.to_owned(), room.to_string(), line)
}
