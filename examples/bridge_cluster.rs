//! Two OS processes sharing shard channels through a Redis Cluster.
//!
//! Run with `cargo run --features redis --example bridge_cluster`. It uses
//! the cluster at `REDIS_CLUSTER_URLS` if set (comma-separated
//! `redis://host:port/` URLs of some of its nodes), else starts a
//! throwaway cluster of three masters on free loopback ports with
//! `redis-server` and `redis-cli --cluster create` (both must be on the
//! PATH). The parent process starts a copy of itself as a listener; each
//! process has its own `Broker` bridged to the cluster for three shard
//! channels, which land on different masters: every `SPUBLISH` goes to the
//! master serving its channel's hash slot, and only there.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use channelcast::{Bridge, Broker, Message};

const CHANNELS: [&str; 3] = ["orders", "payments", "{user42}.inbox"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("listener") {
        let urls: Vec<String> = args.collect();
        return listener(&urls);
    }
    let (urls, _cluster) = if let Ok(list) = std::env::var("REDIS_CLUSTER_URLS") {
        let urls: Vec<String> = list.split(',').map(|u| u.trim().to_owned()).collect();
        (urls, None)
    } else {
        let cluster = LocalCluster::start(3)?;
        (cluster.urls(), Some(cluster))
    };

    let broker = Broker::new();
    let bridge = bridge(&broker, &urls)?;
    let me = std::process::id();
    println!(
        "[{me}] publisher: bridged to {} (cluster: {})",
        urls[0],
        bridge.is_cluster()
    );
    for channel in CHANNELS {
        println!(
            "[{me}] shard channel {channel:?}: hash slot {}",
            Bridge::key_slot(channel)
        );
    }

    let mut child = Command::new(std::env::current_exe()?)
        .arg("listener")
        .args(&urls)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    // Wait until the listener is subscribed before talking.
    assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));

    for channel in CHANNELS {
        for text in ["hello", "bye"] {
            let payload = format!("{text} on {channel}");
            println!("[{me}] spublish {channel}: {payload}");
            broker.spublish(channel, payload);
        }
    }
    for line in lines {
        println!("{}", line?);
    }
    child.wait()?;
    let stats = bridge.close(Duration::from_secs(5));
    println!(
        "[{me}] bridge: {} sent, {} lost, {} unknown, {} redirected",
        stats.sent, stats.lost, stats.unknown, stats.redirected
    );
    Ok(())
}

/// A bridge for the shard channels; the other URLs are seeds.
fn bridge(broker: &Broker, urls: &[String]) -> Result<Bridge, Box<dyn std::error::Error>> {
    let bridge = Bridge::builder(broker, &urls[0])
        .cluster(&urls[1..])
        .shard_channels(CHANNELS)
        .start()?;
    if !bridge.wait_connected(Duration::from_secs(10)) {
        return Err(format!("the cluster does not answer: {:?}", bridge.last_error()).into());
    }
    Ok(bridge)
}

/// The second process: its own broker, bridged to the same cluster, with
/// a local subscriber on the shard channels.
fn listener(urls: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::process::id();
    let broker = Broker::new();
    let bridge = bridge(&broker, urls)?;
    let sub = broker.subscriber();
    sub.ssubscribe(CHANNELS)?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut byes = 0;
    while byes < CHANNELS.len() {
        if let Message::SMessage { channel, payload } = sub.recv_timeout(Duration::from_secs(10))? {
            println!("[{me}] listener got smessage on {channel}: {payload:?}");
            if payload.starts_with(b"bye") {
                byes += 1;
            }
        }
    }
    let stats = bridge.close(Duration::from_secs(5));
    println!(
        "[{me}] listener bridge: {} received, {} missed",
        stats.received, stats.missed
    );
    Ok(())
}

/// A throwaway cluster: `redis-server`s in cluster mode, joined with
/// `redis-cli --cluster create`; stopped and its files removed on drop.
struct LocalCluster {
    nodes: Vec<(u16, Child)>,
    dir: PathBuf,
}

impl LocalCluster {
    fn start(masters: usize) -> Result<LocalCluster, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("channelcast-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            dir,
        };
        for i in 0..masters {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{i}.conf")])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!("cannot start redis-server ({e}); set REDIS_CLUSTER_URLS instead")
                })?;
            cluster.nodes.push((port, child));
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        for (port, _) in &cluster.nodes {
            LocalCluster::wait(*port, "PONG", &["PING"])?;
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()?;
        if !created.success() {
            return Err("redis-cli --cluster create failed".into());
        }
        for (port, _) in &cluster.nodes {
            LocalCluster::wait(*port, "cluster_state:ok", &["CLUSTER", "INFO"])?;
        }
        Ok(cluster)
    }

    /// Runs `redis-cli -p port command…` until its output contains `want`.
    fn wait(port: u16, want: &str, command: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(command)
                .output()
                .map_err(|e| format!("cannot run redis-cli: {e}"))?;
            if String::from_utf8_lossy(&output.stdout).contains(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("node {port} never answered {want}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
