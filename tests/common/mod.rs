//! Test support shared by the integration tests: a throwaway `redis-server`
//! on 127.0.0.1, a small RESP2 client ([`Conn`]) and a deterministic PRNG
//! ([`Rng`]), all without extra dependencies.
//!
//! Each `tests/*.rs` that says `mod common;` compiles this module on its own
//! and uses only part of it, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

mod glob_table;
mod redis;

#[allow(unused_imports)]
pub(crate) use glob_table::{TableRow, GLOB_TABLE};

#[allow(unused_imports)]
pub(crate) use redis::{Conn, Reply, Show};

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process listening on 127.0.0.1 only, with
/// persistence off. Killed (and reaped) on drop.
#[derive(Debug)]
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a private server, for a test marked
    /// `#[ignore = "needs redis-server"]`: such a test runs only when asked
    /// for (`cargo test -- --include-ignored`), and then a missing server is
    /// a failure, not a silent pass.
    ///
    /// ```ignore
    /// #[test]
    /// #[ignore = "needs redis-server"]
    /// fn compares_with_redis() {
    ///     let server = common::RedisServer::require();
    ///     // …
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH` or does not come up.
    pub(crate) fn require() -> RedisServer {
        let Some(program) = find_on_path("redis-server") else {
            panic!(
                "this test needs redis-server on PATH (apt-get install redis-server); \
                 a plain `cargo test` ignores it"
            );
        };
        Self::launch_anywhere(&program)
    }

    /// Starts a private server, or returns `None` (after saying why on
    /// stderr) when `redis-server` is not installed, so that the calling
    /// test can skip. Prefer [`require`](RedisServer::require) with an
    /// ignored test: a skip looks exactly like a pass.
    ///
    /// ```ignore
    /// let Some(server) = common::RedisServer::start() else { return };
    /// ```
    ///
    /// # Panics
    ///
    /// When `redis-server` is installed but does not come up, or is missing
    /// while `CHANNELCAST_REQUIRE_REDIS` is set (as `.ci/run` does).
    pub(crate) fn start() -> Option<RedisServer> {
        let Some(program) = find_on_path("redis-server") else {
            // CI sets this so that a missing server fails instead of skipping.
            assert!(
                std::env::var_os("CHANNELCAST_REQUIRE_REDIS").is_none(),
                "CHANNELCAST_REQUIRE_REDIS is set but redis-server is not on PATH"
            );
            eprintln!(
                "skipping: redis-server not found on PATH \
                 (install it with apt-get install redis-server)"
            );
            return None;
        };
        Some(Self::launch_anywhere(&program))
    }

    /// Starts `program` on a free port.
    fn launch_anywhere(program: &std::path::Path) -> RedisServer {
        // A port taken from the OS can be grabbed by someone else before
        // the server binds it (tests run in parallel), so retry a few times.
        let mut last_failure = String::new();
        for _ in 0..5 {
            match launch(program, free_port()) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }

    /// Starts a new server on `port` again (after this one was dropped), for
    /// tests that take the server away and bring it back.
    ///
    /// # Panics
    ///
    /// When it does not come up.
    #[allow(dead_code)]
    pub(crate) fn restart_on(port: u16) -> RedisServer {
        let program = find_on_path("redis-server").expect("redis-server was there a moment ago");
        let mut last_failure = String::new();
        for _ in 0..20 {
            match launch(&program, port) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come back on port {port}: {last_failure}");
    }

    /// The port it listens on (127.0.0.1).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A new connection to it.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub(crate) fn connect(&self) -> Conn {
        Conn::connect(self.port)
            .unwrap_or_else(|error| panic!("cannot connect to redis-server: {error}"))
    }
}

/// Runs `redis-server` on 127.0.0.1:`port` with persistence off and waits
/// until it answers.
fn launch(program: &std::path::Path, port: u16) -> Result<RedisServer, String> {
    let mut child = Command::new(program)
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    match wait_until_ready(&mut child, port) {
        Ok(()) => Ok(RedisServer { child, port }),
        Err(failure) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failure)
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until the server on `port` answers `PING` and turns out to be our
/// child (not another test's server that won a race for the same port).
fn wait_until_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited with {status}"));
        }
        if let Ok(mut conn) = Conn::connect(port) {
            if let Ok(Reply::Simple(pong)) = conn.call(&[b"PING"]) {
                if pong == b"PONG" {
                    return if server_pid(&mut conn) == Some(child.id()) {
                        Ok(())
                    } else {
                        Err(format!("port {port} is served by another process"))
                    };
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The `process_id` from `INFO server`.
fn server_pid(conn: &mut Conn) -> Option<u32> {
    let info = conn.call(&[b"INFO", b"server"]).ok()?;
    let text = String::from_utf8(info.bulk()?.to_vec()).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|error| panic!("cannot bind 127.0.0.1:0: {error}"));
    listener
        .local_addr()
        .unwrap_or_else(|error| panic!("no local address: {error}"))
        .port()
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A small deterministic PRNG (splitmix64): the same seed gives the same
/// test on every machine, without a `rand` dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        // Multiply-shift: unbiased enough for tests, no division.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `low..=high`.
    pub(crate) fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub(crate) fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `len` bytes drawn from `alphabet`.
    pub(crate) fn bytes(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
}
