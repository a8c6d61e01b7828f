//! Tests for Redis glob matching: the verified table, the depth limit and
//! the no-exponential-time rule, checked through `Glob` and a live `Broker`.

use channelcast::{glob_match, Broker, Glob};

mod common;

use common::{TableRow, GLOB_TABLE};

/// Rows beyond the verified table: rules 22-26.
const MORE: &[TableRow] = &[
    (b"", &[b""], &[b"a"]),
    (b"*", &[b"a", b"anything at all"], &[b""]),
    (b"?", &[b"a", b"\xff"], &[b"", b"ab"]),
    (b"??", &["é".as_bytes()], &[b"a"]),
    (b"a**b", &[b"ab", b"axxb"], &[b"a", b"b"]),
];

#[test]
fn verified_table_matches_like_redis() {
    for (pattern, yes, no) in GLOB_TABLE.iter().chain(MORE) {
        let glob = Glob::new(*pattern);
        for channel in *yes {
            assert!(
                glob.is_match(channel),
                "{glob:?} should match {:?}",
                channelcast::Name::from(*channel)
            );
        }
        for channel in *no {
            assert!(
                !glob.is_match(channel),
                "{glob:?} should not match {:?}",
                channelcast::Name::from(*channel)
            );
        }
    }
}

#[test]
fn verified_table_holds_for_pattern_subscriptions() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    for (pattern, yes, no) in GLOB_TABLE.iter().chain(MORE) {
        sub.psubscribe([*pattern]).unwrap();
        for channel in *yes {
            assert_eq!(
                broker.publish(channel, "x"),
                1,
                "{pattern:?} on {channel:?}"
            );
        }
        for channel in *no {
            assert_eq!(
                broker.publish(channel, "x"),
                0,
                "{pattern:?} on {channel:?}"
            );
        }
        sub.punsubscribe_all().unwrap();
    }
}

#[test]
fn channels_filter_uses_the_same_matcher() {
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.subscribe(["", "a", "]", "b", "-"]).unwrap();
    assert_eq!(broker.channels_matching("*"), ["-", "]", "a", "b"]);
    assert_eq!(broker.channels_matching("[a-]"), ["]", "a"]);
    assert_eq!(broker.channels_matching(""), [""]);
    assert_eq!(broker.channels().len(), 5);
}

#[test]
fn depth_limit_makes_over_1000_star_groups_unmatchable() {
    let a1000 = "a".repeat(1000);
    assert!(glob_match("*a".repeat(1000), &a1000));
    assert!(!glob_match("*a".repeat(1001), "a".repeat(1001)));
    assert!(glob_match("*a".repeat(1000) + "*", &a1000));
    assert!(!glob_match("*a".repeat(1000) + "*b", a1000.clone() + "b"));
    // A final star costs no level: 1001 star groups, the last one final.
    assert!(glob_match("*a".repeat(1000) + "*", a1000 + "zzz"));
}

#[test]
fn matching_is_never_exponential() {
    // Redis CVE-2022-36021: `a*` x 20 + `b` against 5,000 `a`s.
    let pattern = "a*".repeat(20) + "b";
    let channel = "a".repeat(5_000);
    for _ in 0..10 {
        assert!(!glob_match(&pattern, &channel));
    }
    let pattern = "*a".repeat(5_000);
    assert!(!glob_match(&pattern, "a".repeat(4_999)));
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.psubscribe(["*a*a*a*a*a*a*a*a*a*a*b"]).unwrap();
    assert_eq!(broker.publish("a".repeat(5_000), "x"), 0);
}

#[test]
fn any_bytes_are_a_valid_pattern_and_channel() {
    // A deterministic sweep over short byte strings from a tricky alphabet:
    // no panic, and a pattern always matches itself when it has no
    // metacharacters.
    let alphabet: &[u8] = b"*?[]^-\\a\x00\xff";
    let mut patterns = vec![Vec::new()];
    for _ in 0..4 {
        let longer: Vec<Vec<u8>> = patterns
            .iter()
            .flat_map(|p| alphabet.iter().map(move |b| [p.as_slice(), &[*b]].concat()))
            .collect();
        patterns.extend(longer);
        patterns.dedup();
    }
    for pattern in &patterns {
        let glob = Glob::new(pattern.as_slice());
        for channel in patterns.iter().take(200) {
            let _ = glob.is_match(channel);
        }
        if !pattern.iter().any(|b| b"*?[\\".contains(b)) {
            assert!(glob.is_match(pattern), "{glob:?} matches itself");
        }
    }
}

#[test]
fn pathological_pattern_sets_finish() {
    // Asserted only as "finishes" (and correct): the time is in the
    // `patterns/pathological` benchmark.
    let broker = Broker::new();
    let sub = broker.subscriber();
    sub.psubscribe(["*a".repeat(5_000)]).unwrap();
    sub.psubscribe(["*a".repeat(1_000)]).unwrap();
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    sub.psubscribe((0..n).map(|i| format!("*a*a*a*a*b{i}")))
        .unwrap();
    assert_eq!(broker.numpat(), n + 2);
    // `*a` x 5,000 is beyond the nesting limit: it matches nothing.
    assert_eq!(broker.publish("a".repeat(5_000), "x"), 1);
    assert_eq!(broker.publish("a".repeat(64) + "b7", "x"), 1);
    assert_eq!(broker.publish("ab".repeat(100), "x"), 0);
}
