//! Tests that run each example in `examples/` into a buffer and check what
//! it did, not only that it ran: who heard what, who acknowledged what,
//! whether the replicas converged, how often each handler ran.

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
#[path = "../examples/dispatch.rs"]
#[allow(dead_code)]
mod dispatch;
#[path = "../examples/replicas.rs"]
#[allow(dead_code)]
mod replicas;
#[path = "../examples/workers.rs"]
#[allow(dead_code)]
mod workers;

/// Runs an example's `run` into a buffer; gives its result and transcript.
macro_rules! run_example {
    ($example:ident) => {{
        let mut out = Vec::new();
        let result = $example::run(&mut out).expect("the example failed");
        let transcript = String::from_utf8(out).expect("the transcript is UTF-8");
        (result, transcript)
    }};
}

#[test]
fn chat_lines_reach_every_other_member_and_the_moderator_exactly_once() {
    let (mut heard, transcript) = run_example!(chat);

    let mut expected = Vec::new();
    for (speaker, room, text) in chat::SCRIPT {
        let line = format!("{speaker}: {text}");
        let others = chat::members_of(room).filter(|member| *member != speaker);
        for listener in others.chain(["moderator"]) {
            expected.push((listener.to_owned(), room.to_owned(), line.clone()));
        }
        assert!(transcript.contains(&format!("<{speaker}> {text}\n")));
    }
    expected.sort();
    heard.sort();
    // Equal as multisets: nobody missed a line, heard one twice, heard
    // their own, or heard a room they are not in.
    assert_eq!(heard, expected);
    assert!(transcript.ends_with("the moderator logged 9 lines\n"));
}

#[test]
fn chat_transcript_lists_the_listeners_of_each_line() {
    let (_, transcript) = run_example!(chat);
    let listeners: Vec<_> = (transcript.lines())
        .filter_map(|line| line.trim().strip_prefix("(heard by "))
        .collect();
    assert_eq!(listeners.len(), chat::SCRIPT.len());
    assert_eq!(listeners[0], "bob, carol, moderator)"); // alice in room:rust
    assert_eq!(listeners[3], "alice, carol, moderator)"); // dave in room:random
}

#[test]
fn workers_acknowledge_every_command_sent_to_them_and_nothing_else() {
    let (acks, transcript) = run_example!(workers);

    let mut expected: Vec<(String, usize)> = Vec::new();
    for worker in workers::WORKERS {
        expected.push((worker.to_owned(), 0)); // came online
    }
    for (id, (target, _)) in (1..).zip(workers::COMMANDS) {
        for worker in workers::WORKERS {
            if target == "all" || target == worker {
                expected.push((worker.to_owned(), id));
            }
        }
    }
    let mut actual: Vec<_> = acks.iter().map(|a| (a.worker.clone(), a.id)).collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);

    let result = |worker: &str, id| {
        let ack = acks.iter().find(|a| a.worker == worker && a.id == id);
        ack.map(|a| a.result.as_str())
    };
    assert_eq!(result("web2", 2), Some("nginx restarted"));
    assert_eq!(result("web1", 5), Some("now running v1.4.2"));
    for worker in workers::WORKERS {
        assert_eq!(result(worker, 0), Some("online"));
        assert_eq!(result(worker, workers::COMMANDS.len()), Some("bye"));
    }
    // Three listeners on the broadcast channel, none once they shut down.
    assert!(transcript.contains("control: PUBSUB NUMSUB cmd.all = 3\n"));
    assert!(transcript.ends_with("PUBSUB NUMSUB cmd.all = 0\n"));
    assert!(transcript.contains("control -> cmd.all   #1 uptime (3 listening)\n"));
}

#[test]
fn replicas_apply_the_same_updates_in_the_same_order() {
    let (replicas, transcript) = run_example!(replicas);
    assert_eq!(replicas.len(), replicas::REPLICAS.len());

    let reference = &replicas[0];
    for replica in &replicas[1..] {
        assert_eq!(replica.history, reference.history);
        assert_eq!(replica.state, reference.state);
    }

    // Every update exactly once, each writer's in publish order.
    let total = replicas::WRITERS * replicas::UPDATES_PER_WRITER;
    assert_eq!(reference.history.len(), total);
    for writer in 0..replicas::WRITERS {
        let seqs: Vec<_> = (reference.history.iter())
            .filter(|update| update.writer == writer)
            .map(|update| update.seq)
            .collect();
        assert_eq!(seqs, (0..replicas::UPDATES_PER_WRITER).collect::<Vec<_>>());
    }

    // The state is what replaying the history gives, and is not empty.
    let mut replayed = replicas::Replica::default();
    for &update in &reference.history {
        replayed.apply(update);
    }
    assert_eq!(&replayed, reference);
    assert!(!reference.state.is_empty());
    assert!(transcript.contains("all agree: true"));
}

#[test]
fn dispatch_runs_each_handler_once_per_delivery_from_its_source() {
    let (tally, transcript) = run_example!(dispatch);
    let expected = dispatch::Tally {
        orders: 2,
        revenue: 250 + 180,
        art: 2,
        news: 3, // news.art twice (after its channel handler), news.sport once
        alerts: 2,
        metrics: 3,
        max_cpu: 93,
        unhandled: 1, // audit
    };
    assert_eq!(tally, expected);

    // One publish on news.art runs the channel handler, then the pattern's.
    let position = |needle: &str| transcript.find(needle).expect(needle);
    assert!(
        position("[news.art] to the art desk: Monet at the Orsay")
            < position("[news.*]   ticker: news.art: Monet at the Orsay")
    );
    assert!(transcript.contains("PUBLISH  news.art   Monet at the Orsay -> 2\n"));
    assert!(transcript.contains("(none)     audit: bob logged in\n"));
}
