//! Time-boxed waits shared by the integration tests: a hang fails the test
//! instead of hanging the run. Each file that wants them says
//! `#[path = "common/wait.rs"] mod wait;` and uses what it needs.
#![allow(dead_code)]

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use channelcast::{Message, Subscriber};

/// How long a wait may take before it counts as a hang: far more than any
/// of these tests needs on a loaded machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `work` on its own thread and returns its result, or fails the whole
/// test run if it does not finish within [`PATIENCE`]: it says what hung and
/// exits the process with a failure. Unwinding instead could hang in turn,
/// where the test's broker or subscribers, dropped on the way out, need a
/// lock the stuck thread holds. A panic in `work` is passed on as it is.
pub(crate) fn within<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(work)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => panic::resume_unwind(panic),
        Err(timeout) => {
            // Straight to the process's stderr: the harness's capture of
            // `eprintln!` would be lost with the exit.
            let _ = writeln!(
                std::io::stderr(),
                "{what}: did not finish within {PATIENCE:?} (a hang: {timeout})"
            );
            std::process::exit(101)
        }
    }
}

/// Waits until `done` holds, failing the test after [`PATIENCE`].
pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Receives deliveries until `n` have arrived (confirmations skipped).
pub(crate) fn deliveries(sub: &Subscriber, n: usize) -> Vec<Message> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        let msg = sub
            .recv_deadline(deadline)
            .unwrap_or_else(|e| panic!("{e}: got {} of {n}", got.len()));
        if msg.is_delivery() {
            got.push(msg);
        }
    }
    got
}

/// Receives the next item, failing the test after [`PATIENCE`], and asserts
/// that it is of `kind` (see [`Message::kind`]).
pub(crate) fn expect_kind(sub: &Subscriber, kind: &str) -> Message {
    let message = sub.recv_timeout(PATIENCE).expect("an item in time");
    assert_eq!(message.kind(), kind, "got {message:?}");
    message
}

/// Asserts that no delivery arrives for a short while.
pub(crate) fn nothing_more(sub: &Subscriber) {
    let extra: Vec<_> = std::iter::from_fn(|| sub.recv_timeout(Duration::from_millis(200)).ok())
        .filter(Message::is_delivery)
        .collect();
    assert!(extra.is_empty(), "unexpected: {extra:?}");
}
