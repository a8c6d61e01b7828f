//! `Glob`: one Redis glob pattern, compiled once, matched byte for byte.
//!
//! The rules are those of Redis's `stringmatchlen` (case-sensitive), restated
//! in the docs of [`Glob`]. A pattern is compiled into a flat list of
//! single-byte tokens and collapsed star groups; matching walks that list
//! with one backtracking point (the latest star), which is equivalent to
//! Redis's recursive matcher but runs in O(pattern × channel) time at worst.

use std::fmt;

use crate::Name;

/// The most star groups Redis lets a match recurse through.
///
/// Redis gives up (answers "no match") when a match nests deeper than this
/// many `*` expansions. Every non-final star group costs one level on every
/// path through the pattern, so a pattern with more non-final star groups
/// than this can never match anything. See [`Glob::is_unmatchable`].
pub(crate) const MAX_STAR_NESTING: usize = 1000;

/// A set of bytes: the compiled form of `?`, `[...]` and literal bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) const EMPTY: ByteSet = ByteSet([0; 4]);

    pub(crate) fn insert(&mut self, byte: u8) {
        self.0[usize::from(byte >> 6)] |= 1 << (byte & 63);
    }

    pub(crate) fn contains(&self, byte: u8) -> bool {
        self.0[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }

    /// The raw bits, for comparing tries in tests.
    #[cfg(test)]
    pub(crate) fn words(self) -> [u64; 4] {
        self.0
    }

    pub(crate) fn complement(self) -> ByteSet {
        let [a, b, c, d] = self.0;
        ByteSet([!a, !b, !c, !d])
    }

    /// Every byte that, read as a *signed* char (as Redis does on x86),
    /// lies between `from` and `to` inclusive, in either order.
    fn insert_signed_range(&mut self, from: u8, to: u8) {
        // Reinterpreting the byte as i8 is the point: 0x80..=0xFF sort below 0x00.
        #[allow(clippy::cast_possible_wrap)]
        let (mut low, mut high) = (from as i8, to as i8);
        if low > high {
            std::mem::swap(&mut low, &mut high);
        }
        for byte in 0..=u8::MAX {
            #[allow(clippy::cast_possible_wrap)]
            let signed = byte as i8;
            if (low..=high).contains(&signed) {
                self.insert(byte);
            }
        }
    }
}

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count: u32 = self.0.iter().map(|word| word.count_ones()).sum();
        write!(f, "ByteSet({count} bytes)")
    }
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Token {
    /// A literal byte (plain or `\`-escaped).
    Byte(u8),
    /// `?`: any one byte.
    Any,
    /// `[...]` / `[^...]`, negation already applied. Boxed: classes are rare
    /// and 32 bytes, literals are common and 2.
    Class(Box<ByteSet>),
    /// A run of one or more `*`.
    Star,
}

impl Token {
    fn matches(&self, byte: u8) -> bool {
        match self {
            Token::Byte(expected) => *expected == byte,
            Token::Any => true,
            Token::Class(set) => set.contains(byte),
            Token::Star => false,
        }
    }
}

/// A compiled Redis glob pattern.
///
/// Every byte string is a valid pattern (Redis has no syntax errors:
/// malformed brackets have a defined meaning), so compiling never fails.
/// Matching is case-sensitive and byte-exact with Redis 7's `stringmatchlen`.
///
/// # Syntax
///
/// | pattern | meaning |
/// |---|---|
/// | `*` | any run of bytes, also none; a run `**` is one `*` |
/// | `?` | exactly one byte (a 2-byte UTF-8 character needs `??`) |
/// | `[abc]` | one byte from the set |
/// | `[^abc]` | one byte not in the set (`!` is an ordinary member: `[!a]` is `!` or `a`) |
/// | `[a-z]` | one byte in the range; reversed ranges are swapped (`[z-a]` = `[a-z]`) |
/// | `\x` | the byte `x` literally, inside or outside brackets |
/// | anything else | itself |
///
/// The edge cases, all as in Redis:
///
/// - The empty channel matches only the empty pattern: `*` does not match `""`.
/// - A trailing `\` is a literal backslash: `a\` matches `a\`.
/// - Inside brackets: `]` right after `[` (or `[^`) closes the class, so `[]` is
///   an empty class that matches nothing and `[]a]` is an empty class followed
///   by `a]`. The third byte of a range is taken raw, even `]` or `\`
///   (`[a-]` is the range `]`..`a`, and the class then runs to the end of the
///   pattern). A class left open at the end of the pattern simply ends there:
///   `hell[o` matches `hello`; `[` alone matches nothing; `[^` matches any one
///   byte.
/// - Ranges compare bytes as *signed* chars, as Redis does on x86: bytes
///   `0x80..=0xFF` sort below `0x00`, so `[a-\xff]` holds `\x01` but not `b`.
/// - Redis stops a match that nests through more than 1000 `*` expansions and
///   answers "no match". Each star group that is not the last thing in the
///   pattern is one level on every path, so a pattern with more than 1000
///   such groups matches nothing: `*a` × 1000 matches `a` × 1000,
///   `*a` × 1001 matches nothing ([`Glob::is_unmatchable`]).
///
/// Matching never takes exponential time: the cost is at most
/// proportional to pattern length × channel length.
///
/// ```
/// use channelcast::Glob;
///
/// let glob = Glob::new("news.*");
/// assert!(glob.is_match("news.art"));
/// assert!(glob.is_match("news."));
/// assert!(!glob.is_match("news"));
///
/// assert!(Glob::new("h?llo").is_match("hello"));
/// assert!(Glob::new("h[^e]llo").is_match("hallo"));
/// assert!(!Glob::new("h[^e]llo").is_match("hello"));
/// assert!(Glob::new("h[a-b]llo").is_match("hbllo"));
/// assert!(Glob::new(r"a\*").is_match("a*"));
/// assert!(!Glob::new("*").is_match(""));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    source: Name,
    tokens: Box<[Token]>,
    /// True when Redis's nesting limit rules out every match (see above).
    unmatchable: bool,
}

impl Glob {
    /// Compiles `pattern`. Never fails: see [the syntax](Glob#syntax).
    pub fn new(pattern: impl Into<Name>) -> Glob {
        let source = pattern.into();
        let tokens = compile(source.as_bytes());
        let non_final_stars = tokens
            .iter()
            .enumerate()
            .filter(|(index, token)| **token == Token::Star && index + 1 < tokens.len())
            .count();
        Glob {
            unmatchable: non_final_stars > MAX_STAR_NESTING,
            tokens: tokens.into_boxed_slice(),
            source,
        }
    }

    /// The pattern as it was written.
    pub fn as_name(&self) -> &Name {
        &self.source
    }

    /// Whether `channel` matches this pattern.
    pub fn is_match(&self, channel: impl AsRef<[u8]>) -> bool {
        !self.unmatchable && match_tokens(&self.tokens, channel.as_ref())
    }

    /// Whether Redis's nesting limit makes this pattern match nothing at all
    /// (more than 1000 star groups followed by something). Such a pattern can
    /// still be subscribed to; it just never delivers.
    ///
    /// ```
    /// use channelcast::Glob;
    ///
    /// assert!(!Glob::new("*a".repeat(1000)).is_unmatchable());
    /// assert!(Glob::new("*a".repeat(1001)).is_unmatchable());
    /// assert!(!Glob::new("*a".repeat(1000) + "*").is_unmatchable());
    /// ```
    pub fn is_unmatchable(&self) -> bool {
        self.unmatchable
    }

    /// The compiled tokens, for the pattern trie.
    pub(crate) fn tokens(&self) -> &[Token] {
        &self.tokens
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.source).finish()
    }
}

/// Whether `channel` matches `pattern`, with Redis's rules: a shorthand for
/// `Glob::new(pattern).is_match(channel)`.
///
/// ```
/// assert!(channelcast::glob_match("user:*:login", "user:42:login"));
/// assert!(!channelcast::glob_match("user:*:login", "user:42:logout"));
/// ```
pub fn glob_match(pattern: impl AsRef<[u8]>, channel: impl AsRef<[u8]>) -> bool {
    glob_match_bytes(pattern.as_ref(), channel.as_ref())
}

/// [`glob_match`] with plain byte slices: not generic, so it can be passed
/// where a `fn(&[u8], &[u8]) -> bool` is expected.
///
/// ```
/// use channelcast::glob_match_bytes;
///
/// fn count_matches(matcher: fn(&[u8], &[u8]) -> bool, pattern: &[u8], channels: &[&[u8]]) -> usize {
///     channels.iter().filter(|channel| matcher(pattern, channel)).count()
/// }
///
/// let channels: [&[u8]; 3] = [b"news.art", b"news.sport", b"weather"];
/// assert_eq!(count_matches(glob_match_bytes, b"news.*", &channels), 2);
/// assert!(glob_match_bytes(b"h?llo", b"hallo"));
/// ```
pub fn glob_match_bytes(pattern: &[u8], channel: &[u8]) -> bool {
    Glob::new(pattern).is_match(channel)
}

/// Turns pattern bytes into tokens, following Redis's reading of each byte.
fn compile(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut at = 0;
    while at < pattern.len() {
        let byte = pattern[at];
        at += 1;
        let token = match byte {
            b'*' => {
                while pattern.get(at) == Some(&b'*') {
                    at += 1;
                }
                Token::Star
            }
            b'?' => Token::Any,
            b'[' => {
                let (set, next) = compile_class(pattern, at);
                at = next;
                Token::Class(Box::new(set))
            }
            b'\\' if at < pattern.len() => {
                at += 1;
                Token::Byte(pattern[at - 1])
            }
            // A trailing `\` falls through to here: a literal backslash.
            _ => Token::Byte(byte),
        };
        tokens.push(token);
    }
    tokens
}

/// Compiles the class whose body starts at `at` (just past the `[`);
/// returns the set and the index just past the class.
fn compile_class(pattern: &[u8], mut at: usize) -> (ByteSet, usize) {
    let negated = pattern.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }
    let mut set = ByteSet::EMPTY;
    // Each member, in Redis's priority order; the end of the pattern ends
    // an unterminated class silently.
    while let Some(&byte) = pattern.get(at) {
        let left = pattern.len() - at;
        if byte == b'\\' && left >= 2 {
            set.insert(pattern[at + 1]);
            at += 2;
        } else if byte == b']' {
            at += 1;
            break;
        } else if left >= 3 && pattern[at + 1] == b'-' {
            set.insert_signed_range(byte, pattern[at + 2]);
            at += 3;
        } else {
            set.insert(byte);
            at += 1;
        }
    }
    (if negated { set.complement() } else { set }, at)
}

/// Glob matching with a single backtracking point.
///
/// Every token but `Star` consumes exactly one byte, so when the tokens after
/// the latest star fail, only that star needs to take one more byte: giving
/// an earlier star more bytes would only start the same tail later, which
/// cannot help. This is why the cost stays O(tokens × channel).
fn match_tokens(tokens: &[Token], channel: &[u8]) -> bool {
    if channel.is_empty() {
        // Redis never expands stars over an empty channel: only `""` matches it.
        return tokens.is_empty();
    }
    let (mut token, mut byte) = (0, 0);
    // (token after the latest star, channel index that star's tail starts at)
    let mut retry: Option<(usize, usize)> = None;
    while byte < channel.len() {
        match tokens.get(token) {
            Some(Token::Star) => {
                if token + 1 == tokens.len() {
                    return true;
                }
                token += 1;
                retry = Some((token, byte));
            }
            Some(step) if step.matches(channel[byte]) => {
                token += 1;
                byte += 1;
            }
            _ => match retry {
                Some((after_star, start)) => {
                    token = after_star;
                    byte = start + 1;
                    retry = Some((after_star, start + 1));
                }
                None => return false,
            },
        }
    }
    // The channel is used up: only stars may remain.
    tokens[token..].iter().all(|step| *step == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_collapse_into_one_token() {
        assert_eq!(compile(b"a**b").len(), 3);
    }

    #[test]
    fn signed_ranges_put_high_bytes_below_zero() {
        let mut set = ByteSet::EMPTY;
        set.insert_signed_range(b'a', 0xff);
        assert!(set.contains(0x01) && set.contains(0x00) && set.contains(0xff));
        assert!(!set.contains(b'b') && !set.contains(0x7f) && !set.contains(0xe9));
    }
}
