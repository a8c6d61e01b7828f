//! Chat rooms served by tokio: one task per connection, one channel per room.
//!
//! Each connection task waits on two things at once with `tokio::select!`:
//! what its client sends (here an mpsc channel stands in for the socket's
//! read half) and what its rooms say (`Subscriber::recv_async`, which is
//! cancel-safe, so losing the race in `select!` loses no message). A line
//! from the client is published to its room with `publish_copy` (the text
//! sits in a reused buffer); a line from a room is written back to the
//! client. A logger task follows every room through one pattern, `room:*`.
//!
//! When a client hangs up, its task ends and its subscriber leaves its
//! rooms; when the last `Broker` handle is gone, the logger's receive loop
//! ends by itself.
//!
//! Run it with `cargo run --example async_rooms`.

use std::error::Error;
use std::fmt::Write as _;
use std::time::Duration;

use channelcast::{Broker, Message};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Who joins which rooms.
const CLIENTS: [(&str, &[&str]); 3] = [
    ("alice", &["rust", "tokio"]),
    ("bob", &["rust"]),
    ("carol", &["tokio"]),
];

/// What the clients type, in this order: (who, room, text).
const SCRIPT: [(&str, &str, &str); 5] = [
    ("alice", "rust", "hello, rustaceans"),
    ("bob", "rust", "hi alice!"),
    ("carol", "tokio", "is select! cancel-safe here?"),
    ("alice", "tokio", "recv_async is: nothing is lost"),
    ("bob", "rust", "see you later"),
];

/// One client connection: relays the client's lines to its rooms and its
/// rooms' lines to the client, until the client hangs up.
async fn connection(
    name: &'static str,
    rooms: &'static [&'static str],
    broker: Broker,
    mut from_client: mpsc::Receiver<(&'static str, &'static str)>,
    to_client: mpsc::UnboundedSender<String>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let sub = broker.subscriber_builder().confirmations(false).build();
    sub.subscribe(rooms.iter().map(|room| format!("room:{room}")))?;
    let mut line = String::new();
    loop {
        tokio::select! {
            said = sub.recv_async() => {
                let Ok(Message::Message { channel, payload }) = said else { break };
                let room = channel.strip_prefix(b"room:").unwrap_or(&channel);
                let text = String::from_utf8_lossy(&payload);
                to_client.send(format!("[{}] {text}", String::from_utf8_lossy(room)))?;
            }
            typed = from_client.recv() => {
                let Some((room, text)) = typed else { break }; // hung up
                line.clear();
                write!(line, "{name}: {text}")?;
                broker.publish_copy(format!("room:{room}"), &line);
            }
        }
    }
    Ok(()) // dropping `sub` leaves every room
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let broker = Broker::new();

    let logger = broker.subscriber_builder().confirmations(false).build();
    logger.psubscribe(["room:*"])?;
    let logger = tokio::spawn(async move {
        let mut lines = 0;
        // Ends when every Broker handle is gone and the queue is drained.
        while let Ok(msg) = logger.recv_async().await {
            lines += usize::from(msg.is_delivery());
        }
        lines
    });

    let mut clients = Vec::new();
    for (name, rooms) in CLIENTS {
        let (typing, from_client) = mpsc::channel(8);
        let (to_client, screen) = mpsc::unbounded_channel();
        let task = tokio::spawn(connection(
            name,
            rooms,
            broker.clone(),
            from_client,
            to_client,
        ));
        clients.push((name, rooms, typing, screen, task));
    }
    // Connections subscribe as they start; wait until every room is joined.
    while broker.numsub_one("room:rust") < 2 || broker.numsub_one("room:tokio") < 2 {
        tokio::task::yield_now().await;
    }

    // Each line is typed once the previous one has reached every screen, so
    // the transcript reads in script order.
    let mut screens: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for (who, room, text) in SCRIPT {
        let (_, _, typing, ..) = clients.iter().find(|c| c.0 == who).expect("a client");
        typing.send((room, text)).await?;
        for (i, (_, rooms, _, screen, _)) in clients.iter_mut().enumerate() {
            if rooms.contains(&room) {
                let line = timeout(Duration::from_secs(5), screen.recv()).await?;
                screens[i].push(line.expect("the connection is up"));
            }
        }
    }

    for ((name, rooms, typing, _, task), screen) in clients.into_iter().zip(screens) {
        drop(typing); // the client hangs up
        task.await??;
        println!("{name}'s screen ({}):", rooms.join(", "));
        for line in screen {
            println!("    {line}");
        }
    }
    println!(
        "after the clients left: {} in room:rust",
        broker.numsub_one("room:rust")
    );
    drop(broker); // the last handle: the logger's loop ends
    println!("the logger saw {} lines", logger.await?);
    Ok(())
}
