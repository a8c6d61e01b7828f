//! Two OS processes sharing channels through a real Redis server.
//!
//! Run with `cargo run --features redis --example bridge`. It uses the server
//! at `REDIS_URL` if set, else starts a throwaway `redis-server` on a free
//! loopback port (so `redis-server` must be on the PATH). The parent process
//! starts a copy of itself as a listener; each process has its own `Broker`
//! bridged to Redis for `chat` and `news.*`, and plain local subscribers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use channelcast::{Bridge, Broker, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("listener") {
        return listener(&args.next().ok_or("listener needs a URL")?);
    }
    let (url, _server) = if let Ok(url) = std::env::var("REDIS_URL") {
        (url, None)
    } else {
        let (url, server) = start_redis()?;
        (url, Some(KillOnDrop(server)))
    };

    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, &url)
        .channels(["chat"])
        .patterns(["news.*"])
        .start()?;
    if !bridge.wait_connected(Duration::from_secs(5)) {
        return Err(format!("no Redis server answers at {url}").into());
    }

    let mut child = Command::new(std::env::current_exe()?)
        .args(["listener", &url])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    // Wait until the listener is subscribed before talking.
    assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));

    let me = std::process::id();
    println!("[{me}] publisher: bridged to {url}");
    for line in ["hello from the other process", "same API as local pub/sub"] {
        println!("[{me}] publish chat: {line}");
        broker.publish("chat", line);
    }
    println!("[{me}] publish news.tech: channelcast goes multi-process");
    broker.publish("news.tech", "channelcast goes multi-process");
    broker.publish("chat", "bye");
    for line in lines {
        println!("{}", line?);
    }
    child.wait()?;
    // Sends whatever is still queued, then reports where every publish went.
    let stats = bridge.close(Duration::from_secs(5));
    println!(
        "[{me}] bridge: {} sent, {} lost, {} unknown",
        stats.sent, stats.lost, stats.unknown
    );
    Ok(())
}

/// The second process: its own broker, bridged to the same server, with a
/// local subscriber on `chat` and a pattern subscriber on `news.*`.
fn listener(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::process::id();
    let broker = Broker::new();
    let bridge = Bridge::builder(&broker, url)
        .channels(["chat"])
        .patterns(["news.*"])
        .start()?;
    let sub = broker.subscriber();
    sub.subscribe(["chat"])?;
    sub.psubscribe(["news.*"])?;
    if !bridge.wait_connected(Duration::from_secs(5)) {
        return Err("listener: no Redis server".into());
    }
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        match sub.recv_timeout(Duration::from_secs(10))? {
            Message::Message { channel, payload } => {
                println!("[{me}] listener got message on {channel}: {payload:?}");
                if payload == "bye" {
                    break;
                }
            }
            Message::PMessage {
                pattern,
                channel,
                payload,
            } => println!("[{me}] listener got pmessage {pattern} -> {channel}: {payload:?}"),
            _confirmation => {}
        }
    }
    let stats = bridge.close(Duration::from_secs(5));
    println!(
        "[{me}] listener bridge: {} received, {} missed",
        stats.received, stats.missed
    );
    Ok(())
}

/// Starts `redis-server` on a free loopback port with persistence off.
fn start_redis() -> Result<(String, Child), Box<dyn std::error::Error>> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e}); set REDIS_URL instead"))?;
    Ok((format!("redis://127.0.0.1:{port}/"), server))
}

/// Stops the throwaway server when the example ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
