//! Property tests (proptest) of pattern matching: arbitrary byte patterns and
//! channels, biased towards the glob metacharacters.
//!
//! - The broker's compiled pattern trie agrees with the single-pattern
//!   matcher: a publish counts exactly the distinct live patterns that
//!   [`glob_match`] says match, and delivers their pmessages in pattern
//!   creation order; this stays true through removals (the trie prunes) and
//!   re-subscriptions (a pattern that died comes back last), with two
//!   subscribers sharing patterns.
//! - [`Glob::is_match`] and [`glob_match`] agree, never panic, and match
//!   the empty channel only with the empty pattern; both agree with a
//!   reference matcher written from the rules of `redis-semantics.md`
//!   (dynamic programming, no shortcuts: [`reference_match`]). The real
//!   Redis is compared in `tests/differential.rs`.

use std::collections::BTreeMap;

use channelcast::{glob_match, Broker, Glob, Message, Subscriber};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Cases for each property that builds a broker.
const BROKER_CASES: u32 = 5_000;
/// Cases for each property that only matches.
const MATCH_CASES: u32 = 10_000;

/// Glob metacharacters and their neighbours, a few letters, NUL and bytes
/// that are negative as signed chars.
const TRICKY: &[u8] = b"*?[]^-\\abc\x00\x80\xff";
/// Channel bytes: mostly letters (so patterns match), some metacharacters
/// taken literally, and the odd bytes.
const LETTERS: &[u8] = b"abc";
const ODD: &[u8] = b"*?[]^-\\\x00\x80\xff";

fn config(cases: u32) -> ProptestConfig {
    // Failures print their shrunk input; nothing is written to the tree.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

fn pattern_byte() -> impl Strategy<Value = u8> {
    prop_oneof![6 => select(TRICKY), 1 => any::<u8>()]
}

fn channel_byte() -> impl Strategy<Value = u8> {
    prop_oneof![6 => select(LETTERS), 2 => select(ODD), 1 => any::<u8>()]
}

/// A pattern: mostly from the tricky alphabet, sometimes fully arbitrary.
fn pattern(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => vec(pattern_byte(), 0..=max_len),
        1 => vec(any::<u8>(), 0..=max_len),
    ]
}

fn channel(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => vec(channel_byte(), 0..=max_len),
        1 => vec(any::<u8>(), 0..=max_len),
    ]
}

/// A channel that `pattern` likely matches: each `*` becomes zero to two
/// bytes of `fill`, each `?` one, a class its first member, an escape the
/// escaped byte. Not exact (negated classes, ranges), which is fine: the
/// properties compare matchers, they do not trust this.
fn instance(pattern: &[u8], fill: &[u8]) -> Vec<u8> {
    let mut fill = fill.iter().copied().cycle().chain(std::iter::repeat(b'a'));
    let mut out = Vec::new();
    let mut at = 0;
    while at < pattern.len() {
        match pattern[at] {
            b'*' => {
                let n = fill.next().unwrap_or(0) % 3;
                out.extend(fill.by_ref().take(usize::from(n)));
            }
            b'?' => out.extend(fill.next()),
            b'[' | b'\\' if at + 1 < pattern.len() => {
                at += 1;
                out.push(pattern[at]);
                if pattern[at - 1] == b'[' {
                    // Skip the rest of the class.
                    while at < pattern.len() && pattern[at] != b']' {
                        at += 1;
                    }
                }
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    out
}

/// The channels to publish on: the random ones, plus an instance of each
/// pattern (a likely match for it and its neighbours).
fn channels_for(patterns: &[Vec<u8>], random: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let fill = random.concat();
    let derived = patterns.iter().map(|p| instance(p, &fill));
    random.iter().cloned().chain(derived).collect()
}

/// A pattern and a channel, half the time an instance of the pattern.
fn pattern_and_channel(max_len: usize) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (pattern(max_len), channel(max_len), any::<bool>()).prop_map(|(pattern, channel, derive)| {
        if derive {
            let derived = instance(&pattern, &channel);
            (pattern, derived)
        } else {
            (pattern, channel)
        }
    })
}

// ---------------------------------------------------------------------------
// A reference matcher, written from the rules (not from any matcher's code)
// ---------------------------------------------------------------------------

/// One element of a pattern: a star group, or one byte from a set.
enum Element {
    Star,
    One(Box<[bool; 256]>),
}

fn only(byte: u8) -> [bool; 256] {
    let mut set = [false; 256];
    set[usize::from(byte)] = true;
    set
}

/// Reads the element at `at` by the rules of `redis-semantics.md` (rules
/// 23-27); returns it and where the next one starts.
fn element_at(pattern: &[u8], at: usize) -> (Element, usize) {
    match pattern[at] {
        b'*' => {
            let end = pattern[at..].iter().take_while(|b| **b == b'*').count();
            (Element::Star, at + end)
        }
        b'?' => (Element::One(Box::new([true; 256])), at + 1),
        b'\\' if at + 1 < pattern.len() => (Element::One(Box::new(only(pattern[at + 1]))), at + 2),
        b'[' => {
            let mut at = at + 1;
            let negate = pattern.get(at) == Some(&b'^');
            if negate {
                at += 1;
            }
            let mut set = [false; 256];
            while at < pattern.len() {
                let rest = &pattern[at..];
                if rest[0] == b'\\' && rest.len() >= 2 {
                    set[usize::from(rest[1])] = true;
                    at += 2;
                } else if rest[0] == b']' {
                    at += 1;
                    break;
                } else if rest.len() >= 3 && rest[1] == b'-' {
                    // Signed chars, as on x86; reversed ranges swapped.
                    let (a, b) = (i8::from_ne_bytes([rest[0]]), i8::from_ne_bytes([rest[2]]));
                    let (low, high) = (a.min(b), a.max(b));
                    for byte in 0..=255u8 {
                        if (low..=high).contains(&i8::from_ne_bytes([byte])) {
                            set[usize::from(byte)] = true;
                        }
                    }
                    at += 3;
                } else {
                    set[usize::from(rest[0])] = true;
                    at += 1;
                }
            }
            if negate {
                for member in &mut set {
                    *member = !*member;
                }
            }
            (Element::One(Box::new(set)), at)
        }
        byte => (Element::One(Box::new(only(byte))), at + 1),
    }
}

/// Whether `string` matches `pattern`, by dynamic programming over
/// (element, byte) positions: rules 22-28, with none of the shortcuts a
/// fast matcher takes.
fn reference_match(pattern: &[u8], string: &[u8]) -> bool {
    if string.is_empty() {
        return pattern.is_empty(); // rule 22
    }
    let mut elements = Vec::new();
    let mut at = 0;
    while at < pattern.len() {
        let (element, next) = element_at(pattern, at);
        elements.push(element);
        at = next;
    }
    // Rule 28: more than 1000 star groups with something after them.
    let nested = elements
        .iter()
        .enumerate()
        .filter(|(i, e)| matches!(e, Element::Star) && i + 1 < elements.len())
        .count();
    if nested > 1000 {
        return false;
    }
    // matches[i][j]: elements[i..] match string[j..].
    let (m, n) = (elements.len(), string.len());
    let mut matches = vec![vec![false; n + 1]; m + 1];
    matches[m][n] = true;
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            matches[i][j] = match &elements[i] {
                Element::Star => matches[i + 1][j] || (j < n && matches[i][j + 1]),
                Element::One(set) => j < n && set[usize::from(string[j])] && matches[i + 1][j + 1],
            };
        }
    }
    matches[0][0]
}

// ---------------------------------------------------------------------------
// A model of the broker's pattern table
// ---------------------------------------------------------------------------

/// The live patterns of a broker with two subscribers: each pattern's
/// creation sequence and which subscribers hold it.
#[derive(Default)]
struct Model {
    next: u64,
    live: BTreeMap<Vec<u8>, (u64, [bool; 2])>,
}

impl Model {
    fn psubscribe(&mut self, who: usize, pattern: &[u8]) {
        let next = &mut self.next;
        let entry = self.live.entry(pattern.to_vec()).or_insert_with(|| {
            *next += 1;
            (*next, [false; 2])
        });
        entry.1[who] = true;
    }

    fn punsubscribe(&mut self, who: usize, pattern: &[u8]) {
        if let Some(entry) = self.live.get_mut(pattern) {
            entry.1[who] = false;
            if entry.1 == [false; 2] {
                self.live.remove(pattern);
            }
        }
    }

    /// What a publish on `channel` counts, and the pmessage patterns each
    /// subscriber gets, in creation order.
    fn publish(&self, channel: &[u8]) -> (usize, [Vec<Vec<u8>>; 2]) {
        let mut matching: Vec<(&u64, &Vec<u8>, &[bool; 2])> = self
            .live
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, channel))
            .map(|(pattern, (seq, holders))| (seq, pattern, holders))
            .collect();
        matching.sort_unstable();
        let count = matching
            .iter()
            .map(|(_, _, holders)| holders.iter().filter(|h| **h).count())
            .sum();
        let of = |who: usize| {
            matching
                .iter()
                .filter(|(_, _, holders)| holders[who])
                .map(|(_, pattern, _)| (*pattern).clone())
                .collect()
        };
        (count, [of(0), of(1)])
    }
}

/// The pattern of each pmessage queued for `sub` on `channel`; anything else
/// fails the case.
fn pmessage_patterns(sub: &Subscriber, channel: &[u8]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut patterns = Vec::new();
    for message in sub.try_iter() {
        match message {
            Message::PMessage {
                pattern,
                channel: on,
                ..
            } if on.as_bytes() == channel => patterns.push(pattern.as_bytes().to_vec()),
            other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        }
    }
    Ok(patterns)
}

/// Publishes on every channel and compares counts and pmessages with the
/// model.
fn check_publishes(
    broker: &Broker,
    subs: &[Subscriber; 2],
    model: &Model,
    channels: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(broker.numpat(), model.live.len());
    for channel in channels {
        let (count, expected) = model.publish(channel);
        prop_assert_eq!(
            broker.publish(channel, "x"),
            count,
            "count for channel {:?}",
            channel
        );
        for (sub, expected) in subs.iter().zip(&expected) {
            prop_assert_eq!(
                &pmessage_patterns(sub, channel)?,
                expected,
                "pmessages for channel {:?}",
                channel
            );
        }
    }
    Ok(())
}

/// Drains every confirmation, checking there are `expected` of them.
fn confirmations(sub: &Subscriber, expected: usize) -> Result<(), TestCaseError> {
    let kinds: Vec<&str> = sub.try_iter().map(|m| m.kind()).collect();
    prop_assert_eq!(kinds.len(), expected, "confirmations {:?}", kinds);
    prop_assert!(kinds
        .iter()
        .all(|kind| *kind == "psubscribe" || *kind == "punsubscribe"));
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(BROKER_CASES))]

    /// One subscriber, up to 20 patterns (repeats included): each publish
    /// counts the distinct matching patterns, and the pmessages name them in
    /// the order they were first subscribed.
    #[test]
    fn trie_counts_and_orders_what_glob_match_matches(
        patterns in vec(pattern(8), 0..=20),
        random in vec(channel(10), 1..=8),
    ) {
        let broker = Broker::new();
        let sub = broker.subscriber();
        let mut model = Model::default();
        if !patterns.is_empty() {
            sub.psubscribe(patterns.iter().map(Vec::as_slice)).unwrap();
        }
        for pattern in &patterns {
            model.psubscribe(0, pattern);
        }
        confirmations(&sub, patterns.len())?;
        let channels = channels_for(&patterns, &random);
        check_publishes(&broker, &[sub, broker.subscriber()], &model, &channels)?;
    }

    /// Two subscribers share patterns; the first drops some (the trie prunes
    /// the patterns nobody holds any more), then takes them back (a pattern
    /// that died is created anew, after the others); then both let go.
    #[test]
    fn trie_stays_exact_through_removals_and_returns(
        patterns in vec(pattern(8), 1..=20),
        second in vec(any::<bool>(), 20),
        dropped in vec(any::<bool>(), 20),
        random in vec(channel(10), 1..=8),
    ) {
        let broker = Broker::new();
        let subs = [broker.subscriber(), broker.subscriber()];
        let mut model = Model::default();
        let shared: Vec<&[u8]> = patterns
            .iter()
            .zip(&second)
            .filter(|(_, second)| **second)
            .map(|(pattern, _)| pattern.as_slice())
            .collect();
        let removed: Vec<&[u8]> = patterns
            .iter()
            .zip(&dropped)
            .filter(|(_, dropped)| **dropped)
            .map(|(pattern, _)| pattern.as_slice())
            .collect();
        let channels = channels_for(&patterns, &random);

        subs[0].psubscribe(patterns.iter().map(Vec::as_slice)).unwrap();
        for p in &patterns {
            model.psubscribe(0, p);
        }
        if !shared.is_empty() {
            subs[1].psubscribe(shared.iter().copied()).unwrap();
            for p in &shared {
                model.psubscribe(1, p);
            }
        }
        confirmations(&subs[0], patterns.len())?;
        confirmations(&subs[1], shared.len())?;
        check_publishes(&broker, &subs, &model, &channels)?;

        if !removed.is_empty() {
            subs[0].punsubscribe(removed.iter().copied()).unwrap();
            for p in &removed {
                model.punsubscribe(0, p);
            }
            confirmations(&subs[0], removed.len())?;
            check_publishes(&broker, &subs, &model, &channels)?;

            subs[0].psubscribe(removed.iter().rev().copied()).unwrap();
            for p in removed.iter().rev() {
                model.psubscribe(0, p);
            }
            confirmations(&subs[0], removed.len())?;
            check_publishes(&broker, &subs, &model, &channels)?;
        }

        subs[0].punsubscribe_all().unwrap();
        for p in &patterns {
            model.punsubscribe(0, p);
        }
        subs[0].try_iter().for_each(drop);
        check_publishes(&broker, &subs, &model, &channels)?;
        drop(subs);
        prop_assert_eq!(broker.numpat(), 0);
        for channel in &channels {
            prop_assert_eq!(broker.publish(channel, "x"), 0);
        }
    }
}

proptest! {
    #![proptest_config(config(MATCH_CASES))]

    /// `Glob` and `glob_match` agree with each other and with Redis's
    /// algorithm; the empty channel matches only the empty pattern.
    #[test]
    fn glob_and_glob_match_agree_with_the_reference((pattern, channel) in pattern_and_channel(12)) {
        let glob = Glob::new(pattern.as_slice());
        let matched = glob_match(&pattern, &channel);
        prop_assert_eq!(glob.is_match(&channel), matched);
        prop_assert_eq!(matched, reference_match(&pattern, &channel));
        prop_assert_eq!(glob.as_name().as_bytes(), pattern.as_slice());
        prop_assert_eq!(glob_match(&pattern, b""), pattern.is_empty());
        prop_assert_eq!(glob.is_match(b""), pattern.is_empty());
    }

    /// Fully arbitrary bytes, longer: nothing panics, and the same agreement.
    #[test]
    fn arbitrary_bytes_never_panic(
        pattern in vec(any::<u8>(), 0..=40),
        channel in vec(any::<u8>(), 0..=40),
    ) {
        let matched = glob_match(&pattern, &channel);
        prop_assert_eq!(Glob::new(pattern.as_slice()).is_match(&channel), matched);
        prop_assert_eq!(matched, reference_match(&pattern, &channel));
        // A pattern always matches itself with its metacharacters escaped.
        let mut escaped = Vec::with_capacity(pattern.len() * 2);
        for byte in &pattern {
            escaped.extend_from_slice(&[b'\\', *byte]);
        }
        prop_assert!(glob_match(&escaped, &pattern));
    }
}
