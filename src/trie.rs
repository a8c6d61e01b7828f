//! `PatternTrie`: every live pattern compiled into one trie, matched through
//! a lazily built DFA, so that a publish finds its matching patterns in one
//! table lookup per channel byte, whatever the patterns.
//!
//! # The trie
//!
//! Patterns are inserted by their compiled tokens ([`Token`]). A literal
//! byte, `?` and a `[...]` class are edges that consume one byte; a star
//! group is an edge to a *star node*, which loops on every byte. Reaching a
//! node also reaches its star child without consuming a byte. Read as an
//! NFA, the trie accepts a channel when a node holding a pattern's end is
//! live after the channel's last byte.
//!
//! Every node also records how many bytes a match may still read from it:
//! `min_rest`, the fewest bytes to any end below it, and `max_rest`, the
//! most (unbounded past a star). Insertions keep both up to date along the
//! pattern's path; removals recompute them bottom-up and stop at the first
//! node whose values did not change.
//!
//! # The lazy DFA
//!
//! A DFA state is a set of trie nodes: sorted, duplicate-free, star nodes
//! included (they stay in every later state). A search starts from the set
//! {root, root's star child}; the transition of a state on a byte is the
//! set of every child, reached through an edge accepting the byte, of its
//! nodes (with their star children), plus its star nodes. Transitions are
//! computed the first time a search needs them and cached in a table of 256
//! entries per state, so a warm search is one lookup per channel byte and
//! stops at the empty (dead) state. The patterns matching a channel are the
//! ends held by the final state's nodes; each state keeps the list of its
//! nodes that hold ends.
//!
//! The cache is per thread (publishers match concurrently under a read lock,
//! so the publish path writes nothing shared) and keyed by the trie's
//! process-unique id and its generation, which every insert and removal
//! bumps: a cache built for another trie or an older generation is cleared
//! before use, so it can never add or drop a match. A thread keeps the
//! caches of its [`CACHED_TRIES`] most recently searched tries, each holding
//! at most [`DFA_BUDGET`] bytes (states, their node sets, transition rows and
//! the index of states); when adding a state would pass the budget the cache
//! is cleared (the state being left is rebuilt) and the search goes on.
//!
//! # The fallback
//!
//! A search leaves the DFA and finishes by stepping node sets directly (the
//! NFA) when it has cleared the cache more than [`MAX_CLEARS_PER_SEARCH`]
//! times, or when building states has cost more than a constant plus
//! [`WASTE_PER_BYTE`] per byte read in nodes that the length filter below
//! would have dropped. The fallback steps the live nodes over the remaining
//! bytes, keeping only the nodes whose `min_rest ..= max_rest` holds the
//! number of bytes left. Each node has one parent, so a deduplicated live
//! set stays deduplicated from one byte to the next; only star nodes, which
//! are reached both from their parent and from their own loop, need a seen
//! set. The fallback thus costs O(channel length × live nodes) and never
//! more; and because every node of a star-free tail admits exactly one
//! remaining length, a star followed by a long literal keeps O(1) nodes of
//! its chain live (`*` + 32,000 × `a` against 32,000 × `a` is linear). The
//! bounds on the DFA's wasted work make a search never cost more than a
//! constant factor over the fallback.
//!
//! # Memory
//!
//! Nodes live in an arena; removals free their slots for reuse, and once
//! more than half the arena is free it is rebuilt (renumbered depth-first,
//! exact size), which costs O(1) amortized per freed node and gives the
//! memory back.
//!
//! Patterns that Redis's nesting limit makes unmatchable
//! ([`Glob::is_unmatchable`](crate::Glob::is_unmatchable)) are never inserted.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use crate::glob::{ByteSet, Token};

/// The hasher of the fallback's seen set.
type Hasher = foldhash::fast::RandomState;

type NodeId = u32;

/// "No such edge" for the single-child slots.
const NONE: NodeId = NodeId::MAX;
const ROOT: NodeId = 0;

/// Identifies a pattern to the caller (the registry uses its creation
/// sequence number, which also gives the delivery order).
pub(crate) type PatternKey = u64;

/// `max_rest` of a node with an end past a star: no bound.
const UNBOUNDED: u32 = u32::MAX;
/// The star-node flag, in the top bit of `Node::min_rest`.
const STAR_BIT: u32 = 1 << 31;
/// The largest `min_rest` stored; larger values saturate here, which only
/// makes the length filter keep more nodes.
const MIN_REST_CAP: u32 = STAR_BIT - 1;

/// The bytes of DFA cache one thread keeps for one trie.
pub(crate) const DFA_BUDGET: usize = 1 << 20;
/// The number of tries whose DFA cache one thread keeps (the most recently
/// searched ones).
pub(crate) const CACHED_TRIES: usize = 4;
/// Cache clears one search tolerates before it finishes on the fallback.
const MAX_CLEARS_PER_SEARCH: u32 = 2;
/// DFA construction work (in nodes the length filter would have dropped)
/// that a search tolerates before finishing on the fallback: this constant
/// plus [`WASTE_PER_BYTE`] per channel byte read.
const WASTE_SLACK: usize = 4_096;
/// See [`WASTE_SLACK`].
const WASTE_PER_BYTE: usize = 16;
/// Index the arena is never compacted below (a small trie is not worth it).
const COMPACT_MIN_FREE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    // Edge lists and ends are exact-size boxed slices: a trie has several
    // nodes per pattern and edits are rare next to matches, so memory wins
    // over amortized growth.
    /// Literal-byte edges, sorted by byte.
    bytes: Box<[(u8, NodeId)]>,
    /// Class edges and pattern ends, which most nodes do not have.
    rare: Option<Box<Rare>>,
    /// The `?` edge, or `NONE`.
    any: NodeId,
    /// The star-group edge, or `NONE`.
    star: NodeId,
    /// Low 31 bits: the fewest bytes a match must still read from this node
    /// to reach an end (saturating). Top bit: this is a star node.
    min_rest: u32,
    /// The most bytes a match may still read from this node, or
    /// `UNBOUNDED` when a star lies on a path to an end (or this is one).
    max_rest: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// `[...]` edges, one per distinct byte set.
    classes: Box<[(ByteSet, NodeId)]>,
    /// The patterns that end here.
    ends: Box<[PatternKey]>,
}

impl Node {
    /// A node with no edges and no ends (which no length admits).
    fn new(star: bool) -> Node {
        Node {
            bytes: Box::default(),
            rare: None,
            any: NONE,
            star: NONE,
            min_rest: MIN_REST_CAP | if star { STAR_BIT } else { 0 },
            max_rest: 0,
        }
    }

    fn is_star(&self) -> bool {
        self.min_rest & STAR_BIT != 0
    }

    fn min_rest(&self) -> u32 {
        self.min_rest & MIN_REST_CAP
    }

    fn set_rest(&mut self, min: u32, max: u32) {
        self.min_rest = (self.min_rest & STAR_BIT) | min.min(MIN_REST_CAP);
        self.max_rest = max;
    }

    /// Whether, by length alone, a match can still end at or below this
    /// node when `rest` channel bytes remain to be read.
    #[inline]
    fn admits(&self, rest: usize) -> bool {
        self.min_rest() as usize <= rest
            && (self.max_rest == UNBOUNDED || rest <= self.max_rest as usize)
    }

    fn classes(&self) -> &[(ByteSet, NodeId)] {
        self.rare.as_ref().map_or(&[], |rare| &rare.classes)
    }

    fn ends(&self) -> &[PatternKey] {
        self.rare.as_ref().map_or(&[], |rare| &rare.ends)
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Drops the `rare` box once it holds nothing.
    fn tidy(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|rare| rare.classes.is_empty() && rare.ends.is_empty())
        {
            self.rare = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.rare.is_none() && self.any == NONE && self.star == NONE
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
                .classes()
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
                let classes = &mut self.rare_mut().classes;
                let at = classes.len();
                insert_at(classes, at, (**set, child));
            }
        }
    }

    fn remove_child(&mut self, token: &Token) {
        match token {
            Token::Byte(byte) => retain(&mut self.bytes, |edge| edge.0 != *byte),
            Token::Any => self.any = NONE,
            Token::Star => self.star = NONE,
            Token::Class(set) => {
                if let Some(rare) = &mut self.rare {
                    retain(&mut rare.classes, |edge| edge.0 != **set);
                }
                self.tidy();
            }
        }
    }

    /// The children through edges that consume a byte.
    fn consuming_children(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.bytes
            .iter()
            .map(|edge| edge.1)
            .chain(self.classes().iter().map(|edge| edge.1))
            .chain((self.any != NONE).then_some(self.any))
    }

    /// Calls `reach` with every child whose edge accepts `byte`.
    #[inline]
    fn for_each_step(&self, byte: u8, mut reach: impl FnMut(NodeId)) {
        if let Ok(at) = self.bytes.binary_search_by_key(&byte, |edge| edge.0) {
            reach(self.bytes[at].1);
        }
        if self.any != NONE {
            reach(self.any);
        }
        for (set, child) in self.classes() {
            if set.contains(byte) {
                reach(*child);
            }
        }
    }

    /// Rewrites every child id through `map`.
    fn renumber(&mut self, map: impl Fn(NodeId) -> NodeId) {
        for edge in &mut self.bytes {
            edge.1 = map(edge.1);
        }
        if let Some(rare) = &mut self.rare {
            for edge in &mut rare.classes {
                edge.1 = map(edge.1);
            }
        }
        if self.any != NONE {
            self.any = map(self.any);
        }
        if self.star != NONE {
            self.star = map(self.star);
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

/// `length + 1`, where `UNBOUNDED` stays unbounded (and so does overflow).
fn plus_one(length: u32) -> u32 {
    length.saturating_add(1)
}

/// How many edges of the trie test each literal byte and each distinct
/// class set: what the DFA's byte classes are computed from. (`?` edges and
/// star loops accept every byte and split nothing.)
#[derive(Debug, Clone, Default)]
struct Alphabet {
    /// Edges per literal byte: 256 counts, allocated with the first one.
    bytes: Vec<u32>,
    /// Edges per distinct class set.
    classes: HashMap<ByteSet, u32, Hasher>,
}

/// Beyond this many distinct class sets, every byte is a class of its own
/// (computing the classes would cost more than it saves).
const MAX_CLASS_SETS: usize = 64;

impl Alphabet {
    fn add(&mut self, token: &Token) {
        match token {
            Token::Byte(byte) => {
                if self.bytes.is_empty() {
                    self.bytes = vec![0; 256];
                }
                self.bytes[usize::from(*byte)] += 1;
            }
            Token::Class(set) => *self.classes.entry(**set).or_insert(0) += 1,
            Token::Any | Token::Star => {}
        }
    }

    fn remove(&mut self, token: &Token) {
        match token {
            Token::Byte(byte) => self.bytes[usize::from(*byte)] -= 1,
            Token::Class(set) => {
                let count = self.classes.get_mut(set).expect("a counted class");
                *count -= 1;
                if *count == 0 {
                    self.classes.remove(set);
                }
            }
            Token::Any | Token::Star => {}
        }
    }

    /// The class of every byte and the number of classes: two bytes share
    /// a class when no literal edge is either of them and every class set
    /// holds both or neither.
    fn byte_classes(&self) -> ([u8; 256], usize) {
        let mut classes = [0; 256];
        if self.classes.len() > MAX_CLASS_SETS {
            for (byte, class) in (0..=u8::MAX).zip(&mut classes) {
                *class = byte;
            }
            return (classes, 256);
        }
        let sets: SmallVec<[&ByteSet; 8]> = self.classes.keys().collect();
        let mut seen: SmallVec<[(u16, u64); 32]> = SmallVec::new();
        for (byte, class) in (0..=u8::MAX).zip(&mut classes) {
            let literal = if self.bytes.get(usize::from(byte)).is_some_and(|n| *n > 0) {
                u16::from(byte)
            } else {
                256
            };
            let members = sets
                .iter()
                .enumerate()
                .filter(|(_, set)| set.contains(byte))
                .fold(0u64, |bits, (at, _)| bits | 1 << at);
            let signature = (literal, members);
            *class = if let Some(at) = seen.iter().position(|seen| *seen == signature) {
                at as u8
            } else {
                seen.push(signature);
                (seen.len() - 1) as u8
            };
        }
        (classes, seen.len())
    }
}

/// The source of process-unique trie ids (the key of the per-thread caches).
static NEXT_TRIE_ID: AtomicU64 = AtomicU64::new(0);

/// The compiled trie of every matchable live pattern.
#[derive(Debug)]
pub(crate) struct PatternTrie {
    /// Node arena; `ROOT` is always at index 0.
    nodes: Vec<Node>,
    /// Freed arena slots, reused before the arena grows.
    free: Vec<NodeId>,
    /// Unique in the process: no two tries share a cache.
    id: u64,
    /// Bumped by every edit: a cache built before it is stale.
    generation: u64,
    /// The bytes and byte sets the edges test, for the DFA's byte classes.
    alphabet: Alphabet,
}

impl Clone for PatternTrie {
    /// A copy with an identity of its own, so that the two never share a
    /// cache once either is edited.
    fn clone(&self) -> Self {
        PatternTrie {
            nodes: self.nodes.clone(),
            free: self.free.clone(),
            id: NEXT_TRIE_ID.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            alphabet: self.alphabet.clone(),
        }
    }
}

impl Drop for PatternTrie {
    /// Frees this thread's cache for the trie (other threads' caches go when
    /// they search other tries or exit).
    fn drop(&mut self) {
        let id = self.id;
        let _ = CACHES.try_with(|caches| {
            if let Ok(mut caches) = caches.try_borrow_mut() {
                caches.dfas.retain(|dfa| dfa.trie != id);
            }
        });
    }
}

impl PatternTrie {
    pub(crate) fn new() -> Self {
        PatternTrie {
            nodes: vec![Node::new(false)],
            free: Vec::new(),
            id: NEXT_TRIE_ID.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            alphabet: Alphabet::default(),
        }
    }

    /// The number of nodes in use (root included).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn alloc(&mut self, star: bool) -> NodeId {
        if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = Node::new(star);
            id
        } else {
            let id = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 trie nodes");
            assert!(id != NONE, "fewer than 2^32 - 1 trie nodes");
            self.nodes.push(Node::new(star));
            id
        }
    }

    /// Adds pattern `key` with compiled `tokens`.
    pub(crate) fn insert(&mut self, tokens: &[Token], key: PatternKey) {
        self.generation = self.generation.wrapping_add(1);
        let mut path: SmallVec<[NodeId; 32]> = SmallVec::with_capacity(tokens.len() + 1);
        path.push(ROOT);
        let mut at = ROOT;
        for token in tokens {
            at = if let Some(child) = self.nodes[at as usize].child(token) {
                child
            } else {
                let child = self.alloc(matches!(token, Token::Star));
                self.nodes[at as usize].set_child(token, child);
                self.alphabet.add(token);
                child
            };
            path.push(at);
        }
        let ends = &mut self.nodes[at as usize].rare_mut().ends;
        let len = ends.len();
        insert_at(ends, len, key);
        // Each node of the path can now reach this end after reading the
        // consuming tokens left after it; past a star, after any number.
        let mut rest: u32 = 0;
        let mut bounded = true;
        for (depth, &at) in path.iter().enumerate().rev() {
            let node = &mut self.nodes[at as usize];
            bounded &= !node.is_star();
            let min = node.min_rest().min(rest);
            let max = if bounded && node.max_rest != UNBOUNDED {
                node.max_rest.max(rest)
            } else {
                UNBOUNDED
            };
            node.set_rest(min, max);
            if depth > 0 && !matches!(tokens[depth - 1], Token::Star) {
                rest = plus_one(rest);
            }
        }
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
        self.generation = self.generation.wrapping_add(1);
        let end = &mut self.nodes[*path.last().unwrap() as usize];
        if let Some(rare) = &mut end.rare {
            retain(&mut rare.ends, |k| *k != key);
        }
        end.tidy();
        // Prune the nodes left with nothing, from the end of the path up.
        let mut deepest = tokens.len();
        for (depth, token) in tokens.iter().enumerate().rev() {
            let node = path[depth + 1];
            if !self.nodes[node as usize].is_empty() {
                break;
            }
            self.nodes[path[depth] as usize].remove_child(token);
            self.alphabet.remove(token);
            self.nodes[node as usize] = Node::new(false);
            self.free.push(node);
            deepest = depth;
        }
        if self.node_count() == 1 && self.nodes[ROOT as usize].ends().is_empty() {
            // Empty again: give the arena's memory back.
            self.nodes = vec![Node::new(false)];
            self.free = Vec::new();
            self.alphabet = Alphabet::default();
            return;
        }
        // The lengths of the surviving path, bottom-up, until one is unchanged.
        for &at in path[..=deepest].iter().rev() {
            if !self.recompute_rest(at) {
                break;
            }
        }
        if self.free.len() > COMPACT_MIN_FREE && self.free.len() * 2 > self.nodes.len() {
            self.compact();
        }
    }

    /// Recomputes `min_rest` and `max_rest` of `at` from its ends and its
    /// children's; returns whether they changed.
    fn recompute_rest(&mut self, at: NodeId) -> bool {
        let node = &self.nodes[at as usize];
        let (mut min, mut max) = if node.ends().is_empty() {
            (MIN_REST_CAP, 0)
        } else {
            (0, 0)
        };
        if node.is_star() {
            max = UNBOUNDED;
        }
        for child in node.consuming_children() {
            let child = &self.nodes[child as usize];
            min = min.min(plus_one(child.min_rest()));
            max = max.max(plus_one(child.max_rest));
        }
        if node.star != NONE {
            min = min.min(self.nodes[node.star as usize].min_rest());
            max = UNBOUNDED;
        }
        let node = &mut self.nodes[at as usize];
        let old = (node.min_rest(), node.max_rest);
        node.set_rest(min, max);
        old != (node.min_rest(), node.max_rest)
    }

    /// Rebuilds the arena with only the live nodes, numbered depth-first
    /// (a chain of nodes ends up contiguous), in an exact-size allocation.
    fn compact(&mut self) {
        let mut old = std::mem::take(&mut self.nodes);
        let mut new_id = vec![NONE; old.len()];
        let mut order: Vec<NodeId> = Vec::with_capacity(old.len() - self.free.len());
        let mut stack = vec![ROOT];
        while let Some(at) = stack.pop() {
            new_id[at as usize] = order.len() as NodeId;
            order.push(at);
            let node = &old[at as usize];
            stack.extend(node.star_child());
            stack.extend(
                node.consuming_children()
                    .collect::<SmallVec<[NodeId; 8]>>()
                    .into_iter()
                    .rev(),
            );
        }
        let mut nodes = Vec::with_capacity(order.len());
        for &at in &order {
            let mut node = std::mem::replace(&mut old[at as usize], Node::new(false));
            node.renumber(|child| new_id[child as usize]);
            nodes.push(node);
        }
        self.nodes = nodes;
        self.free = Vec::new();
    }

    /// Appends to `out` the key of every pattern that matches `channel`.
    pub(crate) fn matches_into(&self, channel: &[u8], out: &mut SmallVec<[PatternKey; 8]>) {
        let root = &self.nodes[ROOT as usize];
        if channel.is_empty() {
            // Redis expands no star over the empty channel: only `""` matches.
            out.extend_from_slice(root.ends());
            return;
        }
        if self.node_count() == 1 {
            // No edges: nothing matches a non-empty channel.
            return;
        }
        CACHES.with(|caches| {
            let caches = &mut *caches.borrow_mut();
            let Caches {
                dfas,
                scratch,
                budget,
                counters,
            } = caches;
            let dfa = Dfa::for_trie(dfas, self);
            match self.dfa_search(dfa, scratch, counters, *budget, channel) {
                Outcome::Dead => {}
                Outcome::Matched(state) => {
                    for at in dfa.accepting(state) {
                        out.extend_from_slice(self.nodes[*at as usize].ends());
                    }
                }
                Outcome::Fallback(at) => {
                    counters.fallbacks += 1;
                    self.nfa_search(scratch, counters, channel, at, out);
                }
            }
        });
    }

    /// The set a search starts from: the root and its star child.
    fn start_set(&self, out: &mut Vec<NodeId>) {
        out.clear();
        out.push(ROOT);
        let star = self.nodes[ROOT as usize].star;
        if star != NONE {
            out.push(star);
        }
    }

    /// The DFA transition of `set` on `byte`, into `out` (sorted, unique).
    ///
    /// A star node whose funnel (see [`PatternTrie::funnel`]) is in the set
    /// is left out: the funnel reaches every end it could reach.
    fn step_set(
        &self,
        set: &[NodeId],
        byte: u8,
        out: &mut Vec<NodeId>,
        all: &mut Vec<NodeId>,
        funnels: &mut HashMap<NodeId, NodeId, Hasher>,
    ) {
        all.clear();
        for &at in set {
            let node = &self.nodes[at as usize];
            if node.is_star() {
                all.push(at);
            }
            node.for_each_step(byte, |child| {
                all.push(child);
                let star = self.nodes[child as usize].star;
                if star != NONE {
                    all.push(star);
                }
            });
        }
        all.sort_unstable();
        all.dedup();
        out.clear();
        out.extend(all.iter().copied().filter(|&at| {
            if !self.nodes[at as usize].is_star() {
                return true;
            }
            let funnel = *funnels.entry(at).or_insert_with(|| self.funnel(at));
            funnel == NONE || all.binary_search(&funnel).is_err()
        }));
    }

    /// The *funnel* of star node `star`: the first star node below it when
    /// the nodes from `star` down to that one form a chain (one edge each)
    /// that holds no end, or `NONE`. Every end below `star` is then below
    /// its funnel, so once the funnel is live (a star stays live and takes
    /// any bytes), `star` can reach nothing more: it can be dropped. This is
    /// what keeps `*a*a*a…` to two live nodes. Chains below different stars
    /// are disjoint, so computing the funnel of every star once costs
    /// O(trie size) at most.
    fn funnel(&self, star: NodeId) -> NodeId {
        let mut at = star;
        loop {
            let node = &self.nodes[at as usize];
            if !node.ends().is_empty() {
                return NONE;
            }
            if at != star && node.is_star() {
                return at;
            }
            let mut edges = node.consuming_children().chain(node.star_child());
            match (edges.next(), edges.next()) {
                (Some(only), None) => at = only,
                _ => return NONE,
            }
        }
    }

    /// The byte index from which star node `star` must be stepped when it
    /// has no star below it: its children only admit the last `tail` bytes
    /// of the channel (`tail` the most its star-free subtree can read), so
    /// stepping it earlier can only reach nodes the length filter drops.
    /// `0` (step it at once) when a star lies below.
    fn wake_at(&self, star: NodeId, len: usize) -> usize {
        let node = &self.nodes[star as usize];
        if node.star != NONE {
            return 0;
        }
        let mut tail = 0;
        for child in node.consuming_children() {
            let max = plus_one(self.nodes[child as usize].max_rest);
            if max == UNBOUNDED {
                return 0;
            }
            tail = tail.max(max as usize);
        }
        len.saturating_sub(tail)
    }

    /// Runs the DFA over `channel`, computing and caching the transitions it
    /// lacks, until the channel ends, the dead state, or a reason to
    /// fall back (then `scratch.next` holds the live set before
    /// `channel[at..]`).
    fn dfa_search(
        &self,
        dfa: &mut Dfa,
        scratch: &mut Scratch,
        counters: &mut Counters,
        budget: usize,
        channel: &[u8],
    ) -> Outcome {
        let mut state = dfa.start_state(self, scratch, budget);
        let mut at = 0;
        let mut lookups = 0;
        let mut waste = 0;
        let mut clears = 0;
        let outcome = loop {
            // Warm: one table lookup per byte.
            let mut dead = false;
            while let Some(&byte) = channel.get(at) {
                let next = dfa.table[state as usize * dfa.stride + dfa.class_of(byte)];
                if next == UNKNOWN {
                    break;
                }
                state = next;
                at += 1;
                lookups += 1;
                if state == DEAD {
                    dead = true;
                    break;
                }
            }
            if dead {
                break Outcome::Dead;
            }
            let Some(&byte) = channel.get(at) else {
                break Outcome::Matched(state);
            };
            // Cold: compute the transition and cache it.
            let from = dfa.states[state as usize];
            self.step_set(
                &dfa.sets[from.set as usize..][..from.set_len as usize],
                byte,
                &mut scratch.next,
                &mut scratch.step,
                &mut dfa.funnels,
            );
            at += 1;
            counters.computed += 1;
            counters.build_work += (dfa.set(state).len() + scratch.next.len()) as u64;
            let rest = channel.len() - at;
            waste += scratch
                .next
                .iter()
                .filter(|at| !self.nodes[**at as usize].admits(rest))
                .count();
            if waste > WASTE_SLACK + WASTE_PER_BYTE * at {
                break Outcome::Fallback(at);
            }
            let (next, cleared) = dfa.transition(self, state, byte, scratch, budget);
            if cleared {
                counters.clears += 1;
                clears += 1;
                if clears > MAX_CLEARS_PER_SEARCH {
                    break Outcome::Fallback(at);
                }
            }
            state = next;
            if state == DEAD {
                break Outcome::Dead;
            }
        };
        counters.lookups += lookups;
        outcome
    }

    /// The fallback: steps the live set in `scratch.next` (the state before
    /// `channel[at..]`) over the rest of the channel, keeping only the nodes
    /// whose length bounds admit the bytes left, and appends the ends live
    /// at the end to `out`.
    ///
    /// Star nodes are kept apart: each is stepped on every byte until its
    /// funnel is live (then it is dropped), or, with no star below it,
    /// parked until the last bytes its subtree can read (see
    /// [`PatternTrie::wake_at`]).
    fn nfa_search(
        &self,
        scratch: &mut Scratch,
        counters: &mut Counters,
        channel: &[u8],
        at: usize,
        out: &mut SmallVec<[PatternKey; 8]>,
    ) {
        let Scratch {
            next: start,
            live,
            step,
            stars,
            parked,
            star_seen,
            ..
        } = scratch;
        live.clear();
        stars.clear();
        parked.clear();
        star_seen.clear();
        let len = channel.len();
        let rest = len - at;
        for &node in start.iter() {
            if self.nodes[node as usize].admits(rest) {
                if self.nodes[node as usize].is_star() {
                    star_seen.insert(node);
                    self.add_star(node, at, len, stars, parked);
                } else {
                    live.push(node);
                }
            }
        }
        let mut work = 0;
        for (index, &byte) in channel.iter().enumerate().skip(at) {
            while let Some(&Reverse((wake, star, funnel))) = parked.peek() {
                if wake > index {
                    break;
                }
                parked.pop();
                stars.push((star, funnel));
            }
            if live.is_empty() && stars.is_empty() {
                if parked.is_empty() {
                    break;
                }
                continue;
            }
            let rest = len - index - 1;
            step.clear();
            work += live.len() + stars.len();
            for &node in live.iter() {
                self.nfa_step(
                    node,
                    byte,
                    rest,
                    step,
                    &mut (stars, parked, star_seen, index),
                );
            }
            // Stars reached on this byte start looping on the next one: step
            // only those live before it; keep those still close enough to an
            // end and not made useless by their funnel.
            let active = stars.len();
            let mut kept = 0;
            for slot in 0..active {
                let (star, funnel) = stars[slot];
                if funnel != NONE && star_seen.contains(&funnel) {
                    continue;
                }
                self.nfa_step(
                    star,
                    byte,
                    rest,
                    step,
                    &mut (stars, parked, star_seen, index),
                );
                if self.nodes[star as usize].admits(rest) {
                    stars[kept] = (star, funnel);
                    kept += 1;
                }
            }
            stars.drain(kept..active);
            std::mem::swap(live, step);
        }
        counters.nfa_bytes += (len - at) as u64;
        counters.nfa_work += work as u64;
        let parked = parked.iter().map(|Reverse((_, star, _))| star);
        for node in live
            .iter()
            .chain(stars.iter().map(|(star, _)| star))
            .chain(parked)
        {
            out.extend_from_slice(self.nodes[*node as usize].ends());
        }
    }

    /// Files star node `star`, live from byte `index` on, among the stepped
    /// stars or the parked ones.
    fn add_star(
        &self,
        star: NodeId,
        index: usize,
        len: usize,
        stars: &mut Vec<(NodeId, NodeId)>,
        parked: &mut BinaryHeap<Reverse<(usize, NodeId, NodeId)>>,
    ) {
        let wake = self.wake_at(star, len);
        if wake > index {
            parked.push(Reverse((wake, star, NONE)));
        } else {
            stars.push((star, self.funnel(star)));
        }
    }

    /// Steps live node `at` over byte `index` in the fallback: every child
    /// whose edge accepts it, and that can still reach an end with `rest`
    /// bytes left, becomes live in `next` (its star child among the stars).
    #[inline]
    #[allow(clippy::type_complexity)]
    fn nfa_step(
        &self,
        at: NodeId,
        byte: u8,
        rest: usize,
        next: &mut Vec<NodeId>,
        (stars, parked, star_seen, index): &mut (
            &mut Vec<(NodeId, NodeId)>,
            &mut BinaryHeap<Reverse<(usize, NodeId, NodeId)>>,
            &mut HashSet<NodeId, Hasher>,
            usize,
        ),
    ) {
        self.nodes[at as usize].for_each_step(byte, |child| {
            let node = &self.nodes[child as usize];
            if !node.admits(rest) {
                // Nor does anything below it.
                return;
            }
            next.push(child);
            if node.star != NONE
                && self.nodes[node.star as usize].admits(rest)
                && star_seen.insert(node.star)
            {
                self.add_star(node.star, *index + 1, rest + *index + 1, stars, parked);
            }
        });
    }

    /// A description of the trie independent of node numbering, for tests
    /// that compare an edited trie with a freshly built one.
    #[cfg(test)]
    fn canonical(&self) -> String {
        use std::fmt::Write;

        fn walk(trie: &PatternTrie, at: NodeId, out: &mut String) {
            let node = &trie.nodes[at as usize];
            let mut ends = node.ends().to_vec();
            ends.sort_unstable();
            let _ = write!(
                out,
                "{ends:?}[{}..{}{}](",
                node.min_rest(),
                node.max_rest,
                if node.is_star() { "*" } else { "" }
            );
            for (byte, child) in &node.bytes {
                let _ = write!(out, "b{byte}:");
                walk(trie, *child, out);
            }
            let mut classes: Vec<_> = node
                .classes()
                .iter()
                .map(|(s, c)| (s.words(), *c))
                .collect();
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

impl Node {
    fn star_child(&self) -> Option<NodeId> {
        (self.star != NONE).then_some(self.star)
    }
}

// ---- the per-thread DFA cache ------------------------------------------------

type StateId = u32;

/// The empty set: no pattern can match any more. Always state 0.
const DEAD: StateId = 0;
/// A transition not computed yet (and an empty index slot).
const UNKNOWN: StateId = StateId::MAX;
/// The bytes one entry of a cache's funnel map takes (key, value, control
/// byte, rounded up).
const FUNNEL_ENTRY_BYTES: usize = 12;

/// Where a DFA search ended.
enum Outcome {
    /// The channel was read to the end; this state holds the matches.
    Matched(StateId),
    /// The dead state: nothing matches.
    Dead,
    /// The search goes on in the fallback from `channel[at..]`.
    Fallback(usize),
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The hash of the node set.
    hash: u64,
    /// The node set: `Dfa::sets[set..set + set_len]`.
    set: u32,
    set_len: u32,
    /// The nodes of the set that hold ends: `Dfa::accepting[..]`.
    accepting: u32,
    accepting_len: u32,
}

/// One thread's lazily built DFA for one generation of one trie.
struct Dfa {
    trie: u64,
    generation: u64,
    /// The start state, or `UNKNOWN` until built.
    start: StateId,
    states: Vec<State>,
    /// Every state's node set, back to back.
    sets: Vec<NodeId>,
    /// Every state's nodes with ends, back to back.
    accepting: Vec<NodeId>,
    /// `stride` transitions per state, one per byte class.
    table: Vec<StateId>,
    /// The byte class of each byte: bytes that every edge of the trie
    /// treats alike share a class, and so a transition.
    classes: [u8; 256],
    /// The number of byte classes.
    stride: usize,
    /// Open-addressed index of the states by their sets (a power of two
    /// long, at most half full).
    index: Vec<StateId>,
    hasher: foldhash::fast::FixedState,
    /// The funnels of the star nodes met so far.
    funnels: HashMap<NodeId, NodeId, Hasher>,
}

impl Dfa {
    fn new(trie: &PatternTrie) -> Dfa {
        let mut dfa = Dfa {
            trie: trie.id,
            generation: trie.generation,
            classes: [0; 256],
            stride: 1,
            start: UNKNOWN,
            states: Vec::new(),
            sets: Vec::new(),
            accepting: Vec::new(),
            table: Vec::new(),
            index: Vec::new(),
            hasher: foldhash::fast::FixedState::default(),
            funnels: HashMap::default(),
        };
        dfa.reset(trie);
        dfa
    }

    /// Clears the cache and takes the byte classes of `trie`'s current
    /// generation.
    fn reset(&mut self, trie: &PatternTrie) {
        self.generation = trie.generation;
        (self.classes, self.stride) = trie.alphabet.byte_classes();
        self.clear();
    }

    #[inline]
    fn class_of(&self, byte: u8) -> usize {
        usize::from(self.classes[usize::from(byte)])
    }

    /// The cache of trie `id` at `generation` in this thread's `dfas`, made
    /// the most recently used; cleared if built for an older generation.
    fn for_trie<'a>(dfas: &'a mut Vec<Dfa>, trie: &PatternTrie) -> &'a mut Dfa {
        match dfas.iter().position(|dfa| dfa.trie == trie.id) {
            Some(0) => {}
            Some(at) => {
                let dfa = dfas.remove(at);
                dfas.insert(0, dfa);
            }
            None => {
                dfas.truncate(CACHED_TRIES - 1);
                dfas.insert(0, Dfa::new(trie));
            }
        }
        let dfa = &mut dfas[0];
        if dfa.generation != trie.generation {
            dfa.reset(trie);
        }
        dfa
    }

    /// Forgets every state but the dead one (keeping the allocations, which
    /// the budget bounds).
    fn clear(&mut self) {
        self.states.clear();
        self.sets.clear();
        self.accepting.clear();
        self.table.clear();
        self.index.clear();
        self.index.resize(16, UNKNOWN);
        self.funnels.clear();
        self.start = UNKNOWN;
        let dead = self.add(&[], &[]);
        debug_assert_eq!(dead, DEAD);
        let stride = self.stride;
        self.table[..stride].fill(DEAD);
    }

    fn set(&self, state: StateId) -> &[NodeId] {
        let state = &self.states[state as usize];
        &self.sets[state.set as usize..][..state.set_len as usize]
    }

    fn accepting(&self, state: StateId) -> &[NodeId] {
        let state = &self.states[state as usize];
        &self.accepting[state.accepting as usize..][..state.accepting_len as usize]
    }

    /// The bytes held once one more state of `set_len` nodes is added (each
    /// vector counted at its capacity, grown as `Vec` grows).
    fn bytes_with(&self, set_len: usize) -> usize {
        fn grown<T>(list: &Vec<T>, more: usize) -> usize {
            let needed = list.len() + more;
            let capacity = if needed <= list.capacity() {
                list.capacity()
            } else {
                needed.max(list.capacity() * 2)
            };
            capacity * std::mem::size_of::<T>()
        }
        let index = if (self.states.len() + 1) * 2 > self.index.len() {
            self.index.len() * 2
        } else {
            self.index.len()
        };
        grown(&self.states, 1)
            + grown(&self.sets, set_len)
            + grown(&self.accepting, set_len)
            + grown(&self.table, self.stride)
            + index.max(self.index.capacity()) * std::mem::size_of::<StateId>()
            + self.funnels.capacity() * FUNNEL_ENTRY_BYTES
    }

    /// The bytes this cache holds.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<State>()
            + (self.sets.capacity()
                + self.accepting.capacity()
                + self.table.capacity()
                + self.index.capacity())
                * std::mem::size_of::<StateId>()
            + self.funnels.capacity() * FUNNEL_ENTRY_BYTES
    }

    /// The state for `set`, if cached.
    fn find(&self, set: &[NodeId], hash: u64) -> Result<StateId, usize> {
        let mask = self.index.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let state = self.index[slot];
            if state == UNKNOWN {
                return Err(slot);
            }
            if self.states[state as usize].hash == hash && self.set(state) == set {
                return Ok(state);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The state for `set`, added (with unknown transitions) if missing;
    /// ignores the budget.
    fn add(&mut self, nodes: &[Node], set: &[NodeId]) -> StateId {
        let hash = self.hasher.hash_one(set);
        let slot = match self.find(set, hash) {
            Ok(state) => return state,
            Err(slot) => slot,
        };
        let id = self.states.len() as StateId;
        let accepting = self.accepting.len();
        self.accepting.extend(
            set.iter()
                .filter(|at| !nodes[**at as usize].ends().is_empty()),
        );
        self.states.push(State {
            hash,
            set: self.sets.len() as u32,
            set_len: set.len() as u32,
            accepting: accepting as u32,
            accepting_len: (self.accepting.len() - accepting) as u32,
        });
        self.sets.extend_from_slice(set);
        self.table.resize(self.table.len() + self.stride, UNKNOWN);
        self.index[slot] = id;
        if self.states.len() * 2 > self.index.len() {
            self.grow_index();
        }
        id
    }

    fn grow_index(&mut self) {
        let size = self.index.len() * 2;
        self.index.clear();
        self.index.resize(size, UNKNOWN);
        let mask = size - 1;
        for (id, state) in self.states.iter().enumerate() {
            let mut slot = state.hash as usize & mask;
            while self.index[slot] != UNKNOWN {
                slot = (slot + 1) & mask;
            }
            self.index[slot] = id as StateId;
        }
    }

    /// The start state, built if needed.
    fn start_state(&mut self, trie: &PatternTrie, scratch: &mut Scratch, budget: usize) -> StateId {
        if self.start == UNKNOWN {
            trie.start_set(&mut scratch.next);
            if self.states.len() > 1 && self.bytes_with(scratch.next.len()) > budget {
                self.clear();
            }
            self.start = self.add(&trie.nodes, &scratch.next);
        }
        self.start
    }

    /// Caches `from`'s transition on `byte` to the set in `scratch.next`;
    /// returns the target state, and whether the cache had to be cleared to
    /// make room (then `from` was rebuilt under a new id).
    fn transition(
        &mut self,
        trie: &PatternTrie,
        from: StateId,
        byte: u8,
        scratch: &mut Scratch,
        budget: usize,
    ) -> (StateId, bool) {
        let hash = self.hasher.hash_one(&scratch.next[..]);
        if let Ok(to) = self.find(&scratch.next, hash) {
            let slot = from as usize * self.stride + self.class_of(byte);
            self.table[slot] = to;
            return (to, false);
        }
        let mut from = from;
        let mut cleared = false;
        // Room for both states in case `from` has to be rebuilt.
        if self.states.len() > 1
            && self.bytes_with(scratch.next.len() + self.set(from).len()) > budget
        {
            scratch.from.clear();
            scratch.from.extend_from_slice(self.set(from));
            self.clear();
            from = self.add(&trie.nodes, &scratch.from);
            cleared = true;
        }
        let to = self.add(&trie.nodes, &scratch.next);
        let slot = from as usize * self.stride + self.class_of(byte);
        self.table[slot] = to;
        (to, cleared)
    }
}

/// Per-thread buffers of the searches, so that a warm publish allocates
/// nothing.
#[derive(Default)]
struct Scratch {
    /// A state's set, kept across a cache clear.
    from: Vec<NodeId>,
    /// A transition's target set; the fallback's starting set.
    next: Vec<NodeId>,
    /// The fallback's live non-star nodes, and the next byte's.
    live: Vec<NodeId>,
    step: Vec<NodeId>,
    /// The fallback's stepped star nodes (which stay live once reached),
    /// with their funnels.
    stars: Vec<(NodeId, NodeId)>,
    /// The fallback's parked star nodes, by the byte index they wake at.
    parked: BinaryHeap<Reverse<(usize, NodeId, NodeId)>>,
    star_seen: HashSet<NodeId, Hasher>,
}

/// What this thread's searches did, for tests that bound the work per byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
struct Counters {
    /// Channel bytes crossed by one cached DFA transition.
    lookups: u64,
    /// DFA transitions computed.
    computed: u64,
    /// Trie nodes read and written computing them (source plus target set).
    build_work: u64,
    /// Channel bytes read by the fallback.
    nfa_bytes: u64,
    /// Live nodes the fallback stepped, summed over its bytes.
    nfa_work: u64,
    /// Cache clears (budget reached).
    clears: u64,
    /// Searches finished on the fallback.
    fallbacks: u64,
}

/// One thread's DFA caches and buffers.
struct Caches {
    /// Most recently used first; at most `CACHED_TRIES`.
    dfas: Vec<Dfa>,
    scratch: Scratch,
    /// Bytes per cache (`DFA_BUDGET`; tests lower it).
    budget: usize,
    counters: Counters,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            dfas: Vec::new(),
            scratch: Scratch::default(),
            budget: DFA_BUDGET,
            counters: Counters::default(),
        }
    }
}

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::new(Caches::default());
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
        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
        fn bytes(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
            let len = self.next() % (max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
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

    fn brute_force(globs: &[(PatternKey, Glob)], channel: &[u8]) -> Vec<PatternKey> {
        let mut keys: Vec<PatternKey> = globs
            .iter()
            .filter(|(_, glob)| glob.is_match(channel))
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// This thread's counters, reset.
    fn take_counters() -> Counters {
        CACHES.with(|caches| std::mem::take(&mut caches.borrow_mut().counters))
    }

    /// Sets this thread's cache budget (the tests run on threads of their own).
    fn set_budget(bytes: usize) {
        CACHES.with(|caches| caches.borrow_mut().budget = bytes);
    }

    fn cache_bytes(trie: &PatternTrie) -> usize {
        CACHES.with(|caches| {
            caches
                .borrow()
                .dfas
                .iter()
                .filter(|dfa| dfa.trie == trie.id)
                .map(Dfa::bytes)
                .sum()
        })
    }

    /// Every node's length bounds, recomputed from scratch bottom-up, equal
    /// the maintained ones.
    fn assert_rest_is_exact(trie: &PatternTrie) {
        fn check(trie: &PatternTrie, at: NodeId) -> (u32, u32) {
            let node = &trie.nodes[at as usize];
            let (mut min, mut max) = if node.ends().is_empty() {
                (MIN_REST_CAP, 0)
            } else {
                (0, 0)
            };
            if node.is_star() {
                max = UNBOUNDED;
            }
            for child in node.consuming_children() {
                let (child_min, child_max) = check(trie, child);
                min = min.min(plus_one(child_min));
                max = max.max(plus_one(child_max));
            }
            if let Some(star) = node.star_child() {
                min = min.min(check(trie, star).0);
                max = UNBOUNDED;
            }
            assert_eq!((node.min_rest(), node.max_rest), (min, max), "node {at}");
            (min, max)
        }
        check(trie, ROOT);
    }

    #[test]
    fn trie_agrees_with_the_single_pattern_matcher() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..20 {
            let globs: Vec<(PatternKey, Glob)> = (0..200)
                .map(|key| (key, Glob::new(rng.bytes(PATTERN_BYTES, 7))))
                .collect();
            let mut trie = PatternTrie::new();
            for (key, glob) in &globs {
                if !glob.is_unmatchable() {
                    trie.insert(glob.tokens(), *key);
                }
            }
            assert_rest_is_exact(&trie);
            for _ in 0..200 {
                let channel = rng.bytes(CHANNEL_BYTES, 8);
                // Twice: once building the DFA's states, once from the cache.
                for _ in 0..2 {
                    assert_eq!(
                        trie_matches(&trie, &channel),
                        brute_force(&globs, &channel),
                        "round {round}, channel {channel:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_channels_agree_with_the_single_pattern_matcher() {
        let mut rng = Rng(0xfeed_beef_0bad_cafe);
        for round in 0..10 {
            let globs: Vec<(PatternKey, Glob)> = (0..100)
                .map(|key| (key, Glob::new(rng.bytes(b"*?[]^-abc", 12))))
                .collect();
            let mut trie = PatternTrie::new();
            for (key, glob) in &globs {
                trie.insert(glob.tokens(), *key);
            }
            for _ in 0..100 {
                let channel = rng.bytes(b"abc]", 60);
                assert_eq!(
                    trie_matches(&trie, &channel),
                    brute_force(&globs, &channel),
                    "round {round}, channel {channel:?}"
                );
            }
        }
    }

    #[test]
    fn edits_between_matches_never_leave_a_stale_cache() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut trie = PatternTrie::new();
        let mut live: Vec<(PatternKey, Glob)> = Vec::new();
        let channels: Vec<Vec<u8>> = (0..40).map(|_| rng.bytes(CHANNEL_BYTES, 6)).collect();
        for key in 0..2_000 {
            if live.is_empty() || rng.next() % 5 < 3 {
                let glob = Glob::new(rng.bytes(PATTERN_BYTES, 5));
                trie.insert(glob.tokens(), key);
                live.push((key, glob));
            } else {
                let (key, glob) = live.swap_remove(rng.below(live.len()));
                trie.remove(glob.tokens(), key);
            }
            // A few channels, some seen before (their states are cached from
            // the previous generation).
            for _ in 0..3 {
                let channel = &channels[rng.below(channels.len())];
                assert_eq!(
                    trie_matches(&trie, channel),
                    brute_force(&live, channel),
                    "after edit {key}, channel {channel:?}"
                );
            }
            if key % 250 == 0 {
                let mut fresh = PatternTrie::new();
                for (key, glob) in &live {
                    fresh.insert(glob.tokens(), *key);
                }
                for channel in &channels {
                    assert_eq!(trie_matches(&trie, channel), trie_matches(&fresh, channel));
                }
                assert_rest_is_exact(&trie);
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
                let at = rng.below(live.len());
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
                assert_rest_is_exact(&trie);
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
    fn the_arena_is_compacted_once_mostly_free() {
        let globs: Vec<Glob> = (0..20_000)
            .map(|n| Glob::new(format!("user:{n}:*.x[yz]")))
            .collect();
        let mut trie = PatternTrie::new();
        for (key, glob) in globs.iter().enumerate() {
            trie.insert(glob.tokens(), key as PatternKey);
        }
        let full = trie.nodes.capacity();
        // Remove all but the last one: the arena shrinks as it empties.
        for (key, glob) in globs.iter().enumerate().take(globs.len() - 1) {
            trie.remove(glob.tokens(), key as PatternKey);
        }
        let kept = globs.len() - 1;
        let mut fresh = PatternTrie::new();
        fresh.insert(globs[kept].tokens(), kept as PatternKey);
        assert_eq!(trie.canonical(), fresh.canonical());
        assert!(
            trie.nodes.capacity() <= 4 * COMPACT_MIN_FREE
                && trie.free.capacity() <= 4 * COMPACT_MIN_FREE,
            "{} slots and {} free entries kept of {full}",
            trie.nodes.capacity(),
            trie.free.capacity()
        );
        assert_eq!(
            trie_matches(&trie, b"user:19999:a.xz"),
            [kept as PatternKey]
        );
    }

    #[test]
    fn the_empty_pattern_survives_the_removal_of_the_others() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("").tokens(), 1);
        trie.insert(Glob::new("a").tokens(), 2);
        trie.remove(Glob::new("a").tokens(), 2);
        assert_eq!(trie_matches(&trie, b""), [1]);
        assert!(trie_matches(&trie, b"a").is_empty());
    }

    #[test]
    fn the_empty_channel_matches_only_the_empty_pattern() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("*").tokens(), 1);
        trie.insert(Glob::new("").tokens(), 2);
        assert_eq!(trie_matches(&trie, b""), [2]);
        assert_eq!(trie_matches(&trie, b"x"), [1]);
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

    #[test]
    fn several_tries_on_one_thread_keep_apart() {
        let tries: Vec<PatternTrie> = (0..CACHED_TRIES as u64 + 2)
            .map(|n| {
                let mut trie = PatternTrie::new();
                trie.insert(Glob::new(format!("*{n}")).tokens(), n);
                trie.insert(Glob::new("x*").tokens(), 100 + n);
                trie
            })
            .collect();
        for round in 0..3 {
            for (n, trie) in tries.iter().enumerate() {
                let n = n as PatternKey;
                assert_eq!(
                    trie_matches(trie, format!("x{n}").as_bytes()),
                    [n, 100 + n],
                    "round {round}"
                );
                assert_eq!(trie_matches(trie, b"y"), [] as [PatternKey; 0]);
            }
        }
        // A clone has its own identity: editing it leaves the original's
        // cache (and answers) alone.
        let mut clone = tries[0].clone();
        assert_eq!(trie_matches(&clone, b"x0"), [0, 100]);
        clone.remove(Glob::new("*0").tokens(), 0);
        assert_eq!(trie_matches(&clone, b"x0"), [100]);
        assert_eq!(trie_matches(&tries[0], b"x0"), [0, 100]);
    }

    #[test]
    fn a_tiny_cache_budget_clears_and_stays_correct() {
        set_budget(512);
        let mut rng = Rng(0xc1ea_f00d_1234_5678);
        let globs: Vec<(PatternKey, Glob)> = (0..300)
            .map(|key| (key, Glob::new(rng.bytes(b"*?[]^-abc", 8))))
            .collect();
        let mut trie = PatternTrie::new();
        for (key, glob) in &globs {
            trie.insert(glob.tokens(), *key);
        }
        take_counters();
        for _ in 0..300 {
            let channel = rng.bytes(b"abc]", 80);
            assert_eq!(trie_matches(&trie, &channel), brute_force(&globs, &channel));
            assert!(cache_bytes(&trie) <= 4 * 1024, "{}", cache_bytes(&trie));
        }
        let counters = take_counters();
        assert!(counters.clears > 0, "{counters:?}");
        assert!(counters.fallbacks > 0, "{counters:?}");
        set_budget(DFA_BUDGET);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let mut rng = Rng(0xb0d9_e7b0_d9e7_0001);
        let globs: Vec<(PatternKey, Glob)> = (0..2_000)
            .map(|key| (key, Glob::new(rng.bytes(b"*?[]^-abcdefgh", 10))))
            .collect();
        let mut trie = PatternTrie::new();
        for (key, glob) in &globs {
            trie.insert(glob.tokens(), *key);
        }
        for _ in 0..2_000 {
            let channel = rng.bytes(b"abcdefgh", 64);
            trie_matches(&trie, &channel);
            assert!(cache_bytes(&trie) <= DFA_BUDGET);
        }
    }

    /// `*` + k × `a` against k × `a`: the live set of a node-set NFA holds the
    /// whole chain read so far (quadratic); here the work per byte is bounded
    /// by a constant, cold and warm, whatever k.
    #[test]
    fn a_star_then_a_long_literal_costs_a_constant_per_byte() {
        for k in [1_000, 8_000, 32_000] {
            let mut trie = PatternTrie::new();
            trie.insert(Glob::new("*".to_owned() + &"a".repeat(k)).tokens(), 7);
            trie.insert(Glob::new("*".to_owned() + &"a".repeat(k) + "b").tokens(), 8);
            let channel = "a".repeat(k);
            take_counters();
            for _ in 0..3 {
                assert_eq!(trie_matches(&trie, channel.as_bytes()), [7]);
            }
            let counters = take_counters();
            let work = counters.lookups + counters.build_work + counters.nfa_work;
            eprintln!("k = {k}, three searches: {counters:?}");
            assert!(
                work <= 3 * 64 * k as u64,
                "k = {k}: {counters:?}, {} per byte",
                work / (3 * k as u64)
            );
            // And with the fallback from the first byte on (no cache room).
            set_budget(0);
            take_counters();
            assert_eq!(trie_matches(&trie, channel.as_bytes()), [7]);
            let counters = take_counters();
            assert_eq!(counters.fallbacks, 1);
            assert!(
                counters.nfa_work + counters.build_work <= 8 * k as u64,
                "k = {k}: {counters:?}"
            );
            set_budget(DFA_BUDGET);
        }
    }

    /// `*a` × 1,000 against 5,000 `a`s: once the star after an `a` is live,
    /// the stars before it are dropped (their funnel is live), so the DFA's
    /// states and the fallback's live set stay small.
    #[test]
    fn star_chains_keep_a_bounded_live_set() {
        let mut trie = PatternTrie::new();
        trie.insert(Glob::new("*a".repeat(1_000)).tokens(), 1);
        trie.insert(Glob::new("*a".repeat(1_000) + "*").tokens(), 2);
        let channel = "a".repeat(5_000);
        take_counters();
        assert_eq!(trie_matches(&trie, channel.as_bytes()), [1, 2]);
        let cold = take_counters();
        assert_eq!(trie_matches(&trie, channel.as_bytes()), [1, 2]);
        let warm = take_counters();
        eprintln!("cold {cold:?}\nwarm {warm:?}");
        assert!(cold.build_work + cold.nfa_work <= 16 * 5_000, "{cold:?}");
        assert_eq!(warm.lookups, 5_000, "{warm:?}");
        // A copy has a cache of its own, empty: with no room, the fallback.
        let trie = trie.clone();
        set_budget(0);
        assert_eq!(trie_matches(&trie, channel.as_bytes()), [1, 2]);
        let fallback = take_counters();
        set_budget(DFA_BUDGET);
        assert_eq!(fallback.fallbacks, 1);
        assert!(fallback.nfa_work <= 4 * 5_000, "{fallback:?}");
    }

    /// A megabyte channel: once the states are built, one lookup per byte;
    /// and the first search, building them, costs a bounded amount per byte.
    #[test]
    fn a_megabyte_channel_costs_one_lookup_per_byte_once_warm() {
        let mut rng = Rng(0x0a11_0c47_e000_0001);
        let globs: Vec<(PatternKey, Glob)> = (0..500)
            .map(|key| (key, Glob::new(rng.bytes(b"*?[]^-abcd.", 9))))
            .collect();
        let mut trie = PatternTrie::new();
        for (key, glob) in &globs {
            trie.insert(glob.tokens(), *key);
        }
        let channel = rng.bytes(b"abcd.", 1 << 20);
        let len = channel.len() as u64;
        take_counters();
        let cold = trie_matches(&trie, &channel);
        let counters = take_counters();
        let work = counters.lookups + counters.build_work + counters.nfa_work;
        assert!(
            work <= len * trie.node_count() as u64,
            "{counters:?}: beyond O(channel × nodes)"
        );
        let warm = trie_matches(&trie, &channel);
        let counters = take_counters();
        assert_eq!(cold, warm);
        assert_eq!(warm, brute_force(&globs, &channel));
        assert_eq!(counters.lookups, len, "{counters:?}");
        assert_eq!(counters.computed + counters.nfa_bytes, 0, "{counters:?}");
    }

    /// The fallback on random pattern sets: never more than one step per
    /// live node per byte, each node at most once.
    #[test]
    fn the_fallback_agrees_and_is_bounded() {
        set_budget(0);
        let mut rng = Rng(0xfa11_bac4_0000_0001);
        for _ in 0..20 {
            let globs: Vec<(PatternKey, Glob)> = (0..100)
                .map(|key| (key, Glob::new(rng.bytes(PATTERN_BYTES, 8))))
                .collect();
            let mut trie = PatternTrie::new();
            for (key, glob) in &globs {
                if !glob.is_unmatchable() {
                    trie.insert(glob.tokens(), *key);
                }
            }
            for _ in 0..50 {
                let channel = rng.bytes(CHANNEL_BYTES, 30);
                take_counters();
                assert_eq!(trie_matches(&trie, &channel), brute_force(&globs, &channel));
                let counters = take_counters();
                assert!(counters.nfa_work <= counters.nfa_bytes * trie.node_count() as u64);
            }
        }
        set_budget(DFA_BUDGET);
    }

    #[test]
    fn byte_classes_agree_with_few_and_many_class_sets() {
        let mut rng = Rng(0x0c1a_55e5_0000_0001);
        for sets in [3_u8, 100] {
            let globs: Vec<(PatternKey, Glob)> = (0..sets)
                .map(|n| {
                    let pattern = [b'*', b'[', n, n.wrapping_add(1), n ^ 0x80, b']', b'x'];
                    (PatternKey::from(n), Glob::new(pattern.to_vec()))
                })
                .chain([(1_000, Glob::new("*?x")), (1_001, Glob::new("*\x01x"))])
                .collect();
            let mut trie = PatternTrie::new();
            for (key, glob) in &globs {
                trie.insert(glob.tokens(), *key);
            }
            let all: Vec<u8> = (0..=u8::MAX).chain(*b"xxxxxxxx").collect();
            for _ in 0..2_000 {
                let channel = rng.bytes(&all, 6);
                assert_eq!(trie_matches(&trie, &channel), brute_force(&globs, &channel));
            }
        }
    }

    #[test]
    fn the_trie_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PatternTrie>();
    }
}
