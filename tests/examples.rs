//! Tests that run each example in `examples/` as a program, as a user would,
//! and check what it printed: who heard what, who acknowledged what, whether
//! the replicas converged, how often each handler ran.
//!
//! The examples are built once per test binary with `cargo build --examples`
//! (a no-op when `cargo test` already built them), then started from the
//! target directory; each run has a time limit, so a hang fails the test.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long one example may run (debug build, 2 shared cores).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The directory the test binary was built into (`target/debug`), where the
/// examples land too.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/examples-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_owned()
}

/// Builds every example once, with the same profile and features as this test.
fn build_examples() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--examples", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir().ends_with("release") {
            build.arg("--release");
        }
        if cfg!(feature = "redis") {
            build.args(["--features", "redis"]);
        }
        let status = build
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("cargo build --examples failed: {status}"))
    });
    if let Err(failure) = built {
        panic!("{failure}");
    }
}

/// Runs example `name` and returns what it printed, failing if it fails or
/// runs past [`TIME_LIMIT`].
fn run_example(name: &str) -> String {
    build_examples();
    let path = profile_dir()
        .join("examples")
        .join(name)
        .with_extension(std::env::consts::EXE_EXTENSION);
    let mut child = Command::new(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the example") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} ran for more than {TIME_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let out = reader.join().unwrap().expect("the output is UTF-8");
    assert!(status.success(), "example {name} failed ({status}):\n{out}");
    out
}

#[test]
fn chat_lines_reach_every_other_member_and_the_moderator_exactly_once() {
    let out = run_example("chat");
    // "* alice joined room:rust, room:random"
    let members: Vec<(&str, Vec<&str>)> = (out.lines())
        .filter_map(|line| line.strip_prefix("* ")?.split_once(" joined "))
        .map(|(name, rooms)| (name, rooms.split(", ").collect()))
        .collect();
    assert_eq!(members.len(), 4, "{out}");

    // "room:rust    <alice> text" then "             (heard by bob, carol, moderator)"
    let lines: Vec<&str> = out.lines().collect();
    let mut spoken = 0;
    let mut heard_in_all = 0;
    for pair in lines.windows(2) {
        let Some((room, said)) = pair[0].split_once(" <") else {
            continue;
        };
        let (room, speaker) = (room.trim(), said.split_once('>').unwrap().0);
        let mut expected: Vec<&str> = (members.iter())
            .filter(|(name, rooms)| *name != speaker && rooms.contains(&room))
            .map(|(name, _)| *name)
            .collect();
        expected.sort_unstable();
        expected.push("moderator");
        let heard = pair[1].trim().strip_prefix("(heard by ").unwrap();
        // Nobody missed a line, heard one twice, heard their own, or heard
        // a room they are not in.
        assert_eq!(heard, format!("{})", expected.join(", ")), "{out}");
        spoken += 1;
        heard_in_all += expected.len();
    }
    assert_eq!(spoken, 9, "{out}");
    assert!(
        out.ends_with(&format!(
            "* all gone; {heard_in_all} lines heard in all, the moderator logged {spoken}\n"
        )),
        "{out}"
    );
}

#[test]
fn workers_acknowledge_every_command_sent_to_them_and_nothing_else() {
    let out = run_example("workers");
    // "    status.web1  #3 /var 58% used"
    let status = |line: &str| -> Option<(String, usize, String)> {
        let rest = line.trim().strip_prefix("status.")?;
        let (worker, rest) = rest.split_once(" #")?;
        let (id, result) = rest.split_once(' ')?;
        Some((
            worker.trim().to_owned(),
            id.parse().ok()?,
            result.to_owned(),
        ))
    };
    let acks: Vec<_> = out.lines().filter_map(status).collect();
    // The late monitor sees each worker's last status (#3), then what
    // follows. Each worker reports on a channel of its own, and order is
    // promised per channel only: what follows is compared worker by worker
    // (a stable sort by worker keeps each worker's order). A worker's
    // report may reach the control thread before the monitor, so another
    // worker's later report can come first in the monitor's stream.
    let mut monitor: Vec<&str> = (out.lines())
        .filter_map(|line| line.trim().strip_prefix("monitor: status."))
        .collect();
    assert_eq!(monitor.len(), 8, "{out}");
    monitor[3..].sort_by_key(|line| line.split_once(' ').map(|(worker, _)| worker));
    assert_eq!(
        monitor,
        [
            "db1   #3 /var 87% used (retained)",
            "web1  #3 /var 57% used (retained)",
            "web2  #3 /var 58% used (retained)",
            "db1   #4 orders saved to /backups/orders.rdb",
            "db1   #6 bye",
            "web1  #5 now running v1.4.2",
            "web1  #6 bye",
            "web2  #6 bye",
        ],
        "{out}"
    );
    let pool: BTreeSet<String> = (acks.iter())
        .filter(|(_, id, result)| *id == 0 && result == "online")
        .map(|(worker, ..)| worker.clone())
        .collect();
    assert_eq!(pool.len(), 3, "{out}");

    // "control -> cmd.all   #1 uptime (3 listening)"
    let mut expected = BTreeSet::new();
    let mut commands = 0;
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("control -> cmd.") else {
            continue;
        };
        let (target, rest) = rest.split_once(" #").unwrap();
        let id: usize = rest.split_once(' ').unwrap().0.parse().unwrap();
        let target = target.trim();
        let reached: Vec<_> = (pool.iter())
            .filter(|worker| target == "all" || target == worker.as_str())
            .collect();
        assert!(
            line.ends_with(&format!("({} listening)", reached.len())),
            "{line}"
        );
        expected.extend(reached.into_iter().map(|worker| (worker.clone(), id)));
        commands += 1;
    }
    expected.extend(pool.iter().map(|worker| (worker.clone(), 0)));
    let actual: BTreeSet<_> = (acks.iter())
        .map(|(worker, id, _)| (worker.clone(), *id))
        .collect();
    assert_eq!(actual, expected, "{out}");
    assert_eq!(acks.len(), expected.len(), "a duplicate report:\n{out}");

    let result = |worker: &str, id| {
        let ack = acks.iter().find(|a| a.0 == worker && a.1 == id);
        ack.map(|a| a.2.as_str())
    };
    assert_eq!(result("web2", 2), Some("nginx restarted"));
    assert_eq!(result("web1", 5), Some("now running v1.4.2"));
    for worker in &pool {
        assert_eq!(result(worker, commands), Some("bye"), "{out}");
    }
    // Three listeners on the broadcast channel, none once they shut down.
    assert!(
        out.contains("control: PUBSUB NUMSUB cmd.all = 3\n"),
        "{out}"
    );
    assert!(out.ends_with("PUBSUB NUMSUB cmd.all = 0\n"), "{out}");
}

#[test]
fn replicas_apply_the_same_updates_in_the_same_order() {
    let out = run_example("replicas");
    // "    replica on channel kv.updates applied 1200 of 1200 updates, store fingerprint …"
    let replicas: Vec<(&str, &str)> = (out.lines())
        .filter_map(|line| line.trim().strip_prefix("replica on "))
        .map(|line| {
            let (_, applied) = line.split_once(" applied ").unwrap();
            let (counts, fingerprint) = applied.split_once(" updates, store fingerprint ").unwrap();
            (counts, fingerprint)
        })
        .collect();
    assert_eq!(replicas.len(), 4, "{out}"); // the last one joined late
    for (counts, fingerprint) in &replicas {
        assert_eq!(*counts, "1200 of 1200", "{out}");
        assert_eq!(*fingerprint, replicas[0].1, "{out}");
    }
    assert!(out.contains("in the order it sent them: yes."), "{out}");
    assert!(out.contains("hold the same store: yes."), "{out}");
    assert!(out.contains("applied each exactly once."), "{out}");
}

#[test]
fn dispatch_runs_each_handler_once_per_delivery_from_its_source() {
    let out = run_example("dispatch");
    assert!(
        out.contains(
            "totals: Tally { orders: 2, revenue: 430, art: 2, news: 3, alerts: 2, \
             metrics: 3, max_cpu: 93, unhandled: 1 }"
        ),
        "{out}"
    );
    // One publish on news.art runs the channel handler, then the pattern's.
    let position = |needle: &str| out.find(needle).expect(needle);
    assert!(
        position("[news.art] to the art desk: Monet at the Orsay")
            < position("[news.*]   ticker: news.art: Monet at the Orsay")
    );
    assert!(out.contains("PUBLISH  news.art   Monet at the Orsay -> 2\n"));
    assert!(out.contains("(none)     audit: bob logged in\n"));
}

#[test]
fn async_rooms_show_each_client_its_rooms_lines_in_order() {
    let out = run_example("async_rooms");
    let screen = |name: &str| -> Vec<&str> {
        let start = out.find(&format!("{name}'s screen")).expect(name);
        (out[start..].lines().skip(1))
            .take_while(|line| line.starts_with("    "))
            .map(str::trim)
            .collect()
    };
    let rust = [
        "alice: hello, rustaceans",
        "bob: hi alice!",
        "bob: see you later",
    ];
    let tokio = [
        "carol: is select! cancel-safe here?",
        "alice: recv_async is: nothing is lost",
    ];
    let tagged = |room: &str, lines: &[&str]| -> Vec<String> {
        lines
            .iter()
            .map(|line| format!("[{room}] {line}"))
            .collect()
    };
    assert_eq!(screen("bob"), tagged("rust", &rust), "{out}");
    assert_eq!(screen("carol"), tagged("tokio", &tokio), "{out}");
    let alice = screen("alice");
    assert_eq!(alice.len(), rust.len() + tokio.len(), "{out}");
    // Alice's screen holds both rooms, each in its own order.
    let only = |room: &str| -> Vec<String> {
        (alice.iter())
            .filter(|line| line.starts_with(&format!("[{room}]")))
            .map(|line| (*line).to_owned())
            .collect()
    };
    assert_eq!(only("rust"), tagged("rust", &rust));
    assert_eq!(only("tokio"), tagged("tokio", &tokio));
    assert!(
        out.contains("after the clients left: 0 in room:rust\n"),
        "{out}"
    );
    assert!(out.ends_with("the logger saw 5 lines\n"), "{out}");
}
