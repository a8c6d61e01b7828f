//! The verified glob table, shared by the matcher tests and the differential
//! tests against redis-server.

/// One row of the glob table: pattern, channels it matches, channels it
/// does not match.
pub(crate) type TableRow = (
    &'static [u8],
    &'static [&'static [u8]],
    &'static [&'static [u8]],
);

/// The verified table from `shared/redis-semantics.md`:
/// (pattern, matches, does not match).
pub(crate) const GLOB_TABLE: &[TableRow] = &[
    (b"[", &[], &[b"[", b"a", b"", b"]"]),
    (b"a[", &[], &[b"a", b"a[", b"ab"]),
    (b"\\", &[b"\\"], &[b""]),
    (b"a\\", &[b"a\\"], &[b"a", b"a\\\\"]),
    (b"[^a]", &[b"b", b"^"], &[b"a", b"", b"ab"]),
    (
        b"[a-]",
        &[b"a", b"]", b"^", b"_", b"`"],
        &[b"-", b"b", b"\\", b"["],
    ),
    (b"[z-a]", &[b"a", b"m", b"z"], &[b"A", b"-"]),
    (b"*\\*", &[b"*", b"a*", b"**", b"a\\*"], &[b"a", b"*a"]),
    (b"[]", &[], &[b"]", b"", b"a", b"[]"]),
    (b"[]a]", &[], &[b"]", b"a", b"]a]", b"a]"]),
    (b"[^]", &[b"a", b"]", b"^"], &[b"ab"]),
    (b"[^]a]", &[b"xa]", b"]a]"], &[b"a]", b"xa"]),
    (b"[^", &[b"a", b"^", b"["], &[b"ab"]),
    (b"[\\]]", &[b"]"], &[b"\\", b"\\]"]),
    (b"[a-z", &[b"m"], &[b"[a-z", b"A"]),
    (b"[a-c-e]", &[b"a", b"b", b"c", b"e", b"-"], &[b"d"]),
    (b"[!a]", &[b"!", b"a"], &[b"b"]),
    (b"[[]]", &[b"[]"], &[b"[", b"]"]),
    (
        b"[A-z]",
        &[b"[", b"\\", b"]", b"^", b"_", b"`", b"Q", b"q"],
        &[b"{", b"@"],
    ),
    (
        b"abc[c-\\e]e",
        &[b"abcce", b"abc\\e", b"abcae", b"abc]e", b"abcee"],
        &[b"abcde"],
    ),
    (b"hell[o", &[b"hello"], &[b"hell[o"]),
    (b"a*?", &[b"ab"], &[b"a"]),
    (b"a?b", &[b"a\0b"], &[b"ab"]),
    (b"*[", &[], &[b"[", b"a["]),
    (b"news.*", &[b"news.", b"news.art"], &[b"news"]),
    (
        b"[\x80-\xff]",
        &[b"\xe9", b"\x80", b"\xff"],
        &[b"b", b"\x7f"],
    ),
    (b"[a-\xff]", &[b"\x01"], &[b"\xe9", b"b", b"\x7f"]),
];
