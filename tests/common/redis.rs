//! A tiny blocking RESP2 client, just enough to drive Pub/Sub on a real
//! `redis-server` from the tests. Every read has a timeout, so a test that
//! waits for something Redis never sends fails instead of hanging.

use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// How long any single reply may take before the read fails.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`
    Simple(Vec<u8>),
    /// `-ERR ...`
    Error(Vec<u8>),
    /// `:42`
    Integer(i64),
    /// `$3 foo`, or `$-1` (nil) as `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` (nil) as `None`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer of an integer reply.
    pub(crate) fn integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The bytes of a non-nil bulk string.
    pub(crate) fn bulk(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The items of a non-nil array.
    pub(crate) fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// Shows bytes as text with anything unprintable escaped.
pub(crate) struct Show<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0 {
            match byte {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b' '..=b'~' => write!(f, "{}", char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(text) => write!(f, "+{}", Show(text)),
            Reply::Error(text) => write!(f, "-{}", Show(text)),
            Reply::Integer(value) => write!(f, ":{value}"),
            Reply::Bulk(Some(bytes)) => write!(f, "{}", Show(bytes)),
            Reply::Bulk(None) | Reply::Array(None) => f.write_str("(nil)"),
            Reply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.into())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One connection to the server.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.writer.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to `127.0.0.1:port`.
    pub(crate) fn connect(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
        })
    }

    /// Sends one command, an array of bulk strings, without reading the
    /// reply (so commands can be pipelined).
    pub(crate) fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        write!(out, "*{}\r\n", args.len())?;
        for arg in args {
            write!(out, "${}\r\n", arg.len())?;
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)
    }

    /// Sends one command and reads its reply.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args)?;
        self.read_reply()
    }

    /// Reads the next reply, waiting at most [`REPLY_TIMEOUT`].
    pub(crate) fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.read_line()?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(protocol_error("empty reply line"));
        };
        match kind {
            b'+' => Ok(Reply::Simple(rest.to_vec())),
            b'-' => Ok(Reply::Error(rest.to_vec())),
            b':' => Ok(Reply::Integer(parse_int(rest)?)),
            b'$' => {
                let Ok(len) = usize::try_from(parse_int(rest)?) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(protocol_error("bulk string not followed by CRLF"));
                }
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            b'*' => {
                let Ok(len) = usize::try_from(parse_int(rest)?) else {
                    return Ok(Reply::Array(None));
                };
                let items = (0..len)
                    .map(|_| self.read_reply())
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(Reply::Array(Some(items)))
            }
            other => Err(protocol_error(format!(
                "unknown reply type {:?}",
                char::from(other)
            ))),
        }
    }

    /// Reads the next push (or reply) if one starts within `timeout`;
    /// `Ok(None)` when nothing arrived in time. Once a reply has started,
    /// the rest of it gets the full [`REPLY_TIMEOUT`].
    pub(crate) fn read_push(&mut self, timeout: Duration) -> io::Result<Option<Reply>> {
        if self.reader.buffer().is_empty() {
            let stream = self.reader.get_ref();
            stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            let filled = self.reader.fill_buf().map(<[u8]>::is_empty);
            self.reader
                .get_ref()
                .set_read_timeout(Some(REPLY_TIMEOUT))?;
            match filled {
                Ok(false) => {}
                Ok(true) => return Err(ErrorKind::UnexpectedEof.into()),
                Err(error) if is_timeout(&error) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        self.read_reply().map(Some)
    }

    /// Sends `PING token` (allowed in subscribe mode too) without reading
    /// the answer; see [`Conn::read_until_pong`].
    pub(crate) fn send_ping(&mut self, token: &[u8]) -> io::Result<()> {
        self.send(&[b"PING", token])
    }

    /// Reads everything up to the answer to `PING token` and returns what
    /// came before it: a barrier that collects exactly the pushes the server
    /// queued for this connection before it saw the `PING`, with no timing
    /// guesswork. The answer is the bulk string `token` outside subscribe
    /// mode and `["pong", token]` inside it (RESP2).
    pub(crate) fn read_until_pong(&mut self, token: &[u8]) -> io::Result<Vec<Reply>> {
        let mut before = Vec::new();
        loop {
            let reply = self.read_reply()?;
            if reply.bulk() == Some(token) {
                return Ok(before);
            }
            if let Some([kind, echo]) = reply.items() {
                if kind.bulk() == Some(b"pong") && echo.bulk() == Some(token) {
                    return Ok(before);
                }
            }
            before.push(reply);
        }
    }

    /// [`send_ping`](Conn::send_ping) then [`read_until_pong`](Conn::read_until_pong).
    pub(crate) fn sync(&mut self, token: &[u8]) -> io::Result<Vec<Reply>> {
        self.send_ping(token)?;
        self.read_until_pong(token)
    }

    /// Sends `QUIT` and waits until the server has closed the connection,
    /// which it does only after dropping every subscription of it.
    pub(crate) fn quit(mut self) -> io::Result<()> {
        let reply = self.call(&[b"QUIT"])?;
        if reply != Reply::Simple(b"OK".to_vec()) {
            return Err(protocol_error(format!("QUIT answered {reply:?}")));
        }
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(protocol_error(format!("data after QUIT: {}", Show(&rest))))
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(protocol_error(format!(
                "reply line not ended by CRLF: {}",
                Show(&line)
            )));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

fn parse_int(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| protocol_error(format!("not an integer: {}", Show(digits))))
}

/// A `redis-server` child with chosen options, for the bridge tests: it can
/// be paused (`SIGSTOP`), resumed, killed and restarted on its port, and
/// [`Cluster`] starts several in cluster mode.
///
/// Skips (returns `None` after saying why) when `redis-server` is not on
/// the `PATH`, unless `CHANNELCAST_REQUIRE_REDIS` is set.
#[derive(Debug)]
pub(crate) struct Server {
    child: std::process::Child,
    port: u16,
    args: Vec<String>,
}

impl Server {
    /// Starts a server on a free loopback port with `args` added.
    pub(crate) fn start(args: &[&str]) -> Option<Server> {
        let program = server_program()?;
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let mut failure = String::new();
        for _ in 0..5 {
            match Server::launch(&program, free_port(), &args) {
                Ok(server) => return Some(server),
                Err(why) => failure = why,
            }
        }
        panic!("redis-server did not start: {failure}");
    }

    fn launch(program: &std::path::Path, port: u16, args: &[String]) -> Result<Server, String> {
        let mut child = std::process::Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {port} exited with {status}"));
            }
            if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                // Whoever answered, this server must still be running: one
                // that could not bind its port exits at once (and the
                // answer came from another process).
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("redis-server on port {port} exited with {status}"));
                }
                return Ok(Server {
                    child,
                    port,
                    args: args.to_vec(),
                });
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} did not listen"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills this server and starts a new one on the same port with the
    /// same options.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let program = server_program().expect("redis-server was there a moment ago");
        let mut failure = String::new();
        for _ in 0..40 {
            match Server::launch(&program, self.port, &self.args) {
                Ok(server) => {
                    // The old child is reaped already: dropping it is harmless.
                    drop(std::mem::replace(self, server));
                    return;
                }
                Err(why) => failure = why,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come back: {failure}");
    }

    /// Kills this server and starts a new one on the same port with other
    /// options.
    pub(crate) fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|&a| a.to_owned()).collect();
        self.restart();
    }

    /// Kills the server (it stays down until [`restart`](Server::restart)).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A new client connection.
    pub(crate) fn conn(&self) -> Conn {
        Conn::connect(self.port).expect("a connection to redis-server")
    }

    /// Stops the process (`SIGSTOP`): connections stay open, nothing is
    /// answered.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (`SIGCONT`).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = std::process::Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `masters` masters on loopback ports, made with
/// `redis-cli --cluster create`; its nodes' files live in a fresh
/// directory removed on drop.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Server>,
    dir: std::path::PathBuf,
}

impl Cluster {
    pub(crate) fn start(masters: usize) -> Option<Cluster> {
        server_program()?;
        let dir = std::env::temp_dir().join(format!(
            "channelcast-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let dir_arg = dir.display().to_string();
        let mut nodes = Vec::new();
        for i in 0..masters {
            let file = format!("nodes-{i}.conf");
            nodes.push(Server::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &file,
                "--cluster-node-timeout",
                "1000",
                // The other masters keep serving their slots while one is down.
                "--cluster-require-full-coverage",
                "no",
                "--dir",
                &dir_arg,
            ])?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Cluster { nodes, dir };
        cluster.wait_ok();
        Some(cluster)
    }

    /// Waits until every node says `cluster_state:ok`.
    pub(crate) fn wait_ok(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let mut conn = node.conn();
                let info = conn.call(&[b"CLUSTER", b"INFO"]).expect("CLUSTER INFO");
                if info
                    .bulk()
                    .is_some_and(|text| text.windows(16).any(|w| w == b"cluster_state:ok"))
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster did not become ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub(crate) fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// `CLUSTER KEYSLOT name`, asked of the first node.
    pub(crate) fn keyslot(&self, name: &[u8]) -> u16 {
        let reply = self.nodes[0]
            .conn()
            .call(&[b"CLUSTER", b"KEYSLOT", name])
            .expect("CLUSTER KEYSLOT");
        u16::try_from(reply.integer().expect("an integer slot")).expect("a slot")
    }

    /// The index in `nodes` of the master serving `slot`, from
    /// `CLUSTER SLOTS` as the first live node answers it.
    pub(crate) fn owner(&self, slot: u16) -> usize {
        let reply = self.nodes[0]
            .conn()
            .call(&[b"CLUSTER", b"SLOTS"])
            .expect("CLUSTER SLOTS");
        for range in reply.items().expect("ranges") {
            let fields = range.items().expect("a range");
            let (start, end) = (fields[0].integer().unwrap(), fields[1].integer().unwrap());
            if (start..=end).contains(&i64::from(slot)) {
                let port = fields[2].items().unwrap()[1].integer().unwrap();
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port()) == port)
                    .expect("a node of this cluster");
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// `INFO commandstats`'s count of `SPUBLISH` calls on node `i`.
    pub(crate) fn spublish_calls(&self, i: usize) -> u64 {
        let reply = self.nodes[i]
            .conn()
            .call(&[b"INFO", b"commandstats"])
            .expect("INFO");
        let text = String::from_utf8_lossy(reply.bulk().expect("INFO text")).into_owned();
        text.lines()
            .find_map(|line| line.strip_prefix("cmdstat_spublish:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().expect("a count"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_program() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CHANNELCAST_REQUIRE_REDIS").is_none(),
            "CHANNELCAST_REQUIRE_REDIS is set but redis-server is not on PATH"
        );
        eprintln!("skipping: redis-server not found on PATH (apt-get install redis-server)");
    }
    found
}

/// A loopback port nobody listens on now, and that this test process has not
/// handed out before: tests run in parallel, and a server that restarts on
/// its port must not find another test's server there.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl Server {
    /// Starts a server that listens for TLS only (`--port 0`), on a free
    /// loopback port, with `tls_args` added (`--tls-cert-file` and the
    /// rest). [`port`](Server::port) is its TLS port; it restarts the same.
    pub(crate) fn start_tls(tls_args: &[&str]) -> Option<Server> {
        let program = server_program()?;
        let mut failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut args = vec![
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                port.to_string(),
            ];
            args.extend(tls_args.iter().map(|&a| a.to_owned()));
            match Server::launch(&program, port, &args) {
                Ok(server) => return Some(server),
                Err(why) => failure = why,
            }
        }
        panic!("redis-server (TLS) did not start: {failure}");
    }

    /// `rediss://127.0.0.1:port/`, for a server from
    /// [`start_tls`](Server::start_tls).
    pub(crate) fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }
}
