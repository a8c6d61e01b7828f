//! `PatternTrie`: every live pattern compiled into one trie, so that a
//! publish finds its matching patterns without testing each one.
//!
//! Patterns are inserted by their compiled tokens ([`Token`]). A literal
//! byte, `?` and a `[...]` class are edges that consume one byte; a star
//! group is an edge to a *star node*, which loops on every byte. Matching a
//! channel steps the set of live nodes over its bytes:
//!
//! - a live ordinary node is replaced by the children whose edge accepts the
//!   byte (literal edges are found by binary search, so a node with many
//!   literal children costs the same as one with a single child);
//! - a star node, once reached, stays live for the rest of the channel, so it
//!   is kept in a separate set that only grows;
//! - reaching any node also reaches its star child without consuming a byte.
//!
//! Each node has one parent, so no ordinary node can become live twice in a
//! step; only star nodes need de-duplicating. The cost of a match is thus
//! O(channel length × live nodes), independent of the patterns that fell
//! off on the way, and never exponential.
//!
//! Patterns that Redis's nesting limit makes unmatchable
//! ([`Glob::is_unmatchable`](crate::Glob::is_unmatchable)) are never inserted.

use std::cell::RefCell;
use std::collections::HashSet;

use smallvec::SmallVec;

use crate::fast_hash::Hasher;
use crate::glob::{ByteSet, Token};

type NodeId = u32;

/// "No such edge" for the single-child slots.
const NONE: NodeId = NodeId::MAX;
const ROOT: NodeId = 0;

/// Identifies a pattern to the caller (the registry uses its creation
/// sequence number, which also gives the delivery order).
pub(crate) type PatternKey = u64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    // Edge lists and ends are exact-size boxed slices: a trie has several
    // nodes per pattern and edits are rare next to matches, so memory wins
    // over amortized growth.
    /// Literal-byte edges, sorted by byte.
    bytes: Box<[(u8, NodeId)]>,
    /// `[...]` edges, one per distinct byte set.
    classes: Box<[(ByteSet, NodeId)]>,
    /// The `?` edge, or `NONE`.
    any: NodeId,
    /// The star-group edge, or `NONE`.
    star: NodeId,
    /// The patterns that end here.
    ends: Box<[PatternKey]>,
}

impl Node {
    fn new() -> Node {
        Node {
            any: NONE,
            star: NONE,
            ..Node::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
            && self.classes.is_empty()
            && self.any == NONE
            && self.star == NONE
            && self.ends.is_empty()
    }

    /// The child through `token`'s edge, if that edge exists.
    fn child(&self, token: &Token) -> Option<NodeId> {
        let id = match token {
            Token::Byte(byte) => self
                .bytes
                .binary_search_by_key(byte, |edge| edge.0)
                .map_or(NONE, |at| self.bytes[at].1),
            Token::Any => self.any,
            Token::Star => self.star,
            Token::Class(set) => self
                .classes
                .iter()
                .find(|edge| edge.0 == **set)
                .map_or(NONE, |edge| edge.1),
        };
        (id != NONE).then_some(id)
    }

    fn set_child(&mut self, token: &Token, child: NodeId) {
        match token {
            Token::Byte(byte) => {
                let at = self
                    .bytes
                    .binary_search_by_key(byte, |edge| edge.0)
                    .unwrap_or_else(|at| at);
                insert_at(&mut self.bytes, at, (*byte, child));
            }
            Token::Any => self.any = child,
            Token::Star => self.star = child,
            Token::Class(set) => {
                let at = self.classes.len();
                insert_at(&mut self.classes, at, (**set, child));
            }
        }
    }

    fn remove_child(&mut self, token: &Token) {
        match token {
            Token::Byte(byte) => retain(&mut self.bytes, |edge| edge.0 != *byte),
            Token::Any => self.any = NONE,
            Token::Star => self.star = NONE,
            Token::Class(set) => retain(&mut self.classes, |edge| edge.0 != **set),
        }
    }
}

/// Inserts `item` at `at` in an exact-size boxed slice.
fn insert_at<T>(list: &mut Box<[T]>, at: usize, item: T) {
    let mut items = std::mem::take(list).into_vec();
    items.reserve_exact(1);
    items.insert(at, item);
    *list = items.into_boxed_slice();
}

/// Keeps the items of an exact-size boxed slice that `keep` accepts.
fn retain<T>(list: &mut Box<[T]>, keep: impl FnMut(&T) -> bool) {
    let mut items = std::mem::take(list).into_vec();
    items.retain(keep);
    *list = items.into_boxed_slice();
}

/// The compiled trie of every matchable live pattern.
#[derive(Debug, Clone)]
pub(crate) struct PatternTrie {
    /// Node arena; `ROOT` is always at index 0.
    nodes: Vec<Node>,
    /// Freed arena slots, reused before the arena grows.
    free: Vec<NodeId>,
}

/// Per-thread buffers for matching, so a publish allocates nothing once a
/// thread has warmed up (publishers match concurrently under a read lock).
#[derive(Default)]
struct Scratch {
    live: Vec<NodeId>,
    next: Vec<NodeId>,
    stars: Vec<NodeId>,
    star_seen: HashSet<NodeId, Hasher>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl PatternTrie {
    pub(crate) fn new() -> Self {
        PatternTrie {
            nodes: vec![Node::new()],
            free: Vec::new(),
        }
    }

    /// The number of nodes in use (root included).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = Node::new();
            id
        } else {
            let id = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 trie nodes");
            assert!(id != NONE, "fewer than 2^32 - 1 trie nodes");
            self.nodes.push(Node::new());
            id
        }
    }

    /// Adds pattern `key` with compiled `tokens`.
    pub(crate) fn insert(&mut self, tokens: &[Token], key: PatternKey) {
        let mut at = ROOT;
        for token in tokens {
            at = if let Some(child) = self.nodes[at as usize].child(token) {
                child
            } else {
                let child = self.alloc();
                self.nodes[at as usize].set_child(token, child);
                child
            };
        }
        let ends = &mut self.nodes[at as usize].ends;
        let len = ends.len();
        insert_at(ends, len, key);
    }

    /// Removes pattern `key`, inserted with the same `tokens`, and every node
    /// it alone was keeping alive.
    pub(crate) fn remove(&mut self, tokens: &[Token], key: PatternKey) {
        let mut path: SmallVec<[NodeId; 32]> = SmallVec::with_capacity(tokens.len() + 1);
        path.push(ROOT);
        for token in tokens {
            match self.nodes[*path.last().unwrap() as usize].child(token) {
                Some(child) => path.push(child),
                None => return,
            }
        }
        retain(&mut self.nodes[*path.last().unwrap() as usize].ends, |k| {
            *k != key
        });
        // Prune the nodes left with nothing, from the end of the path up.
        for (depth, token) in tokens.iter().enumerate().rev() {
            let node = path[depth + 1];
            if !self.nodes[node as usize].is_empty() {
                break;
            }
            self.nodes[path[depth] as usize].remove_child(token);
            self.nodes[node as usize] = Node::default();
            self.free.push(node);
        }
        if self.node_count() == 1 && self.nodes[ROOT as usize].ends.is_empty() {
            // Empty again: give the arena's memory back.
            *self = PatternTrie::new();
        }
    }

    /// Appends to `out` the key of every pattern that matches `channel`.
    pub(crate) fn matches_into(&self, channel: &[u8], out: &mut SmallVec<[PatternKey; 8]>) {
        if channel.is_empty() {
            // Redis expands no star over the empty channel: only `""` matches.
            out.extend_from_slice(&self.nodes[ROOT as usize].ends);
            return;
        }
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            scratch.live.clear();
            scratch.stars.clear();
            scratch.star_seen.clear();
            self.reach(ROOT, scratch);
            for &byte in channel {
                let Scratch {
                    live,
                    next,
                    stars,
                    star_seen,
                } = &mut *scratch;
                next.clear();
                // Stars reached while stepping this byte start looping on
                // the next one: step only those active before it.
                let active_stars = stars.len();
                for &at in live.iter() {
                    self.step(at, byte, next, stars, star_seen);
                }
                for index in 0..active_stars {
                    let at = stars[index];
                    self.step(at, byte, next, stars, star_seen);
                }
                std::mem::swap(live, next);
                if live.is_empty() && stars.is_empty() {
                    return;
                }
            }
            for at in scratch.live.iter().chain(&scratch.stars) {
                out.extend_from_slice(&self.nodes[*at as usize].ends);
            }
        });
    }

    /// Steps live node `at` over `byte`: every child whose edge accepts it
    /// becomes live in `next`.
    fn step(
        &self,
        at: NodeId,
        byte: u8,
        next: &mut Vec<NodeId>,
        stars: &mut Vec<NodeId>,
        star_seen: &mut HashSet<NodeId, Hasher>,
    ) {
        let node = &self.nodes[at as usize];
        if let Ok(edge) = node.bytes.binary_search_by_key(&byte, |edge| edge.0) {
            self.reach_into(node.bytes[edge].1, next, stars, star_seen);
        }
        if node.any != NONE {
            self.reach_into(node.any, next, stars, star_seen);
        }
        for (set, child) in &node.classes {
            if set.contains(byte) {
                self.reach_into(*child, next, stars, star_seen);
            }
        }
    }

    fn reach(&self, node: NodeId, scratch: &mut Scratch) {
        let Scratch {
            live,
            stars,
            star_seen,
            ..
        } = scratch;
        self.reach_into(node, live, stars, star_seen);
    }

    /// Makes `node` live in `into`, and its star child (if any) live for
    /// good.
    fn reach_into(
        &self,
        node: NodeId,
        into: &mut Vec<NodeId>,
        stars: &mut Vec<NodeId>,
        star_seen: &mut HashSet<NodeId, Hasher>,
    ) {
        into.push(node);
        let star = self.nodes[node as usize].star;
        if star != NONE && star_seen.insert(star) {
            stars.push(star);
        }
    }

    /// A description of the trie independent of node numbering, for tests
    /// that compare an edited trie with a freshly built one.
    #[cfg(test)]
    fn canonical(&self) -> String {
        use std::fmt::Write;

        fn walk(trie: &PatternTrie, at: NodeId, out: &mut String) {
            let node = &trie.nodes[at as usize];
            let mut ends = node.ends.to_vec();
            ends.sort_unstable();
            let _ = write!(out, "{ends:?}(");
            for (byte, child) in &node.bytes {
                let _ = write!(out, "b{byte}:");
                walk(trie, *child, out);
            }
            let mut classes: Vec<_> = node.classes.iter().map(|(s, c)| (s.words(), *c)).collect();
            classes.sort_unstable();
            for (set, child) in classes {
                let _ = write!(out, "c{set:?}:");
                walk(trie, child, out);
            }
            if node.any != NONE {
                out.push_str("?:");
                walk(trie, node.any, out);
            }
            if node.star != NONE {
                out.push_str("*:");
                walk(trie, node.star, out);
            }
            out.push(')');
        }
        let mut out = String::new();
        walk(self, ROOT, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Glob;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
            let len = self.next() % (max_len + 1);
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    const PATTERN_BYTES: &[u8] = b"*?[]^-\\abc\x80\xff\x00";
    const CHANNEL_BYTES: &[u8] = b"abc][-\\^\x80\xff\x00";

    fn trie_matches(trie: &PatternTrie, channel: &[u8]) -> Vec<PatternKey> {
        let mut out = SmallVec::new();
        trie.matches_into(channel, &mut out);
        let mut out = out.into_vec();
        out.sort_unstable();
        out
    }

    #[test]
    fn trie_agrees_with_the_single_pattern_matcher() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..20 {
            let globs: Vec<Glob> = (0..200)
                .map(|_| Glob::new(rng.bytes(PATTERN_BYTES, 7)))
                .collect();
            let mut trie = PatternTrie::new();
            for (key, glob) in globs.iter().enumerate() {
                if !glob.is_unmatchable() {
                    trie.insert(glob.tokens(), key as PatternKey);
                }
            }
            for _ in 0..200 {
                let channel = rng.bytes(CHANNEL_BYTES, 8);
                let expected: Vec<PatternKey> = globs
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.is_match(&channel))
                    .map(|(k, _)| k as PatternKey)
                    .collect();
                assert_eq!(
                    trie_matches(&trie, &channel),
                    expected,
                    "round {round}, channel {channel:?}"
                );
            }
        }
    }

    #[test]
    fn removals_leave_the_trie_as_if_freshly_built() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        let mut trie = PatternTrie::new();
        let mut live: Vec<(PatternKey, Glob)> = Vec::new();
        for key in 0..3_000 {
            if live.is_empty() || rng.next() % 3 != 0 {
                let glob = Glob::new(rng.bytes(PATTERN_BYTES, 6));
                trie.insert(glob.tokens(), key);
                live.push((key, glob));
            } else {
                let at = (rng.next() % live.len() as u64) as usize;
                let (key, glob) = live.swap_remove(at);
                trie.remove(glob.tokens(), key);
            }
            if key % 500 == 0 {
                let mut fresh = PatternTrie::new();
                for (key, glob) in &live {
                    fresh.insert(glob.tokens(), *key);
                }
                assert_eq!(trie.canonical(), fresh.canonical());
                assert_eq!(trie.node_count(), fresh.node_count());
            }
        }
        for (key, glob) in live.drain(..) {
            trie.remove(glob.tokens(), key);
        }
        assert_eq!(trie.node_count(), 1);
        assert_eq!(
            trie.nodes.capacity(),
            1,
            "an empty trie gives its memory back"
        );
    }

    #[test]
    fn the_empty_pattern_survives_the_removal_of_the_others() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("").tokens(), 1);
        trie.insert(Glob::new("a").tokens(), 2);
        trie.remove(Glob::new("a").tokens(), 2);
        assert_eq!(trie_matches(&trie, b""), [1]);
    }

    #[test]
    fn stars_reached_on_a_byte_start_looping_on_the_next() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("a*a").tokens(), 1);
        assert!(trie_matches(&trie, b"a").is_empty());
        assert_eq!(trie_matches(&trie, b"aa"), [1]);
    }

    #[test]
    fn long_star_chains_match_in_linear_steps() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("a*".repeat(20) + "b").tokens(), 1);
        trie.insert(Glob::new("*a".repeat(1000)).tokens(), 2);
        let channel = "a".repeat(5_000);
        assert_eq!(trie_matches(&trie, channel.as_bytes()), [2]);
    }
}
