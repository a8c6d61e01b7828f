//! `Name`: the binary-safe, cheaply cloned name of a channel or a pattern.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The name of a channel, shard channel or pattern.
///
/// Names are arbitrary bytes, exactly as in Redis: the empty name and names
/// holding NUL or non-UTF-8 bytes are all valid. A name of up to
/// 22 bytes (most channel names) is stored inline, so the broker copies it
/// into every delivered [`Message`] without touching shared memory; a longer
/// one is reference counted, and a copy costs one atomic increment, never a
/// copy of the bytes.
///
/// Build one from a `&str`, `String`, `&[u8]` or `Vec<u8>` with `From`/`Into`;
/// every API that takes names accepts anything `Into<Name>`. A name compares
/// equal to text and bytes with the same bytes, on either side of `==`.
///
/// ```
/// use channelcast::Name;
///
/// let name = Name::from("news.sport");
/// assert_eq!(name.as_str(), Some("news.sport"));
/// assert_eq!(name, "news.sport");
/// assert_eq!(name.to_string(), "news.sport");
///
/// let raw = Name::from(&b"\xff\x00"[..]);
/// assert_eq!(raw.as_str(), None);
/// assert_eq!(raw.as_bytes(), b"\xff\x00");
/// assert_eq!(raw.to_string(), "\\xff\\x00");
///
/// assert!("news.sport" == name && name == String::from("news.sport"));
/// assert!(name == b"news.sport" && b"news.sport"[..] == name);
/// ```
///
/// # Maps keyed by `Name`
///
/// A `Name` hashes and compares exactly like its bytes and implements
/// `Borrow<[u8]>`, so a `HashMap<Name, V>` (or `BTreeMap`) is searched with a
/// borrowed `&[u8]`, without building a `Name`; for text, pass
/// `key.as_bytes()`. (`Borrow<str>` is not offered: `str` and `[u8]` hash
/// differently, and a name need not be UTF-8.)
///
/// ```
/// use std::collections::HashMap;
/// use channelcast::Name;
///
/// let mut handlers: HashMap<Name, &str> = HashMap::new();
/// handlers.insert("orders".into(), "the orders handler");
/// assert_eq!(handlers.get("orders".as_bytes()), Some(&"the orders handler"));
/// assert_eq!(handlers.get(&b"orders"[..]), Some(&"the orders handler"));
///
/// // Or from a received message's channel:
/// let channel = Name::from("orders");
/// assert!(handlers.contains_key(channel.as_bytes()));
/// ```
///
/// [`Message`]: crate::Message
pub struct Name(Repr);

/// Names up to this long are stored inline (the enum is then as large as a
/// `String`: 24 bytes).
const INLINE: usize = 22;

enum Repr {
    Inline(Inline),
    Shared(Arc<[u8]>),
}

/// An inline name: its length, then its bytes (the rest is zero). `Copy`
/// and word-aligned, and the length's unused values hold the enum's tag, so
/// copying a name is a copy of three words.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline {
    len: InlineLen,
    bytes: [u8; INLINE],
}

/// The length of an inline name: an enum so that the values above
/// [`INLINE`] are free for [`Repr`]'s tag.
#[derive(Clone, Copy)]
#[repr(u8)]
enum InlineLen {
    L0 = 0,
    L1 = 1,
    L2 = 2,
    L3 = 3,
    L4 = 4,
    L5 = 5,
    L6 = 6,
    L7 = 7,
    L8 = 8,
    L9 = 9,
    L10 = 10,
    L11 = 11,
    L12 = 12,
    L13 = 13,
    L14 = 14,
    L15 = 15,
    L16 = 16,
    L17 = 17,
    L18 = 18,
    L19 = 19,
    L20 = 20,
    L21 = 21,
    L22 = 22,
}

impl Inline {
    /// This name as a whole [`Name`], made out of line on purpose. Inlined,
    /// the compiler copies the length (already loaded to tell the variants
    /// apart) apart from the bytes, and the first seven bytes as two
    /// overlapping 4-byte moves; the message then built from the name reads
    /// those back as whole words, which the processor cannot forward from
    /// the narrower stores, and stalls. Returning the `Inline` alone from
    /// the call still left one such copy in the caller (1 subscriber, one
    /// thread: 74 → 70 ns per message inlined against that, then 63 → 59
    /// with the whole name returned).
    #[inline(never)]
    fn whole_name(&self) -> Name {
        Name(Repr::Inline(*self))
    }
}

impl InlineLen {
    const ALL: [InlineLen; INLINE + 1] = {
        #[allow(clippy::enum_glob_use)] // the 23 lengths, in order
        use InlineLen::*;
        [
            L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18,
            L19, L20, L21, L22,
        ]
    };
}

impl Name {
    /// The name's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(inline) => &inline.bytes[..inline.len as usize],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The name as UTF-8 text, or `None` when its bytes are not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    /// The length of the name in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether this is the empty name (valid, as in Redis).
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Whether a name this long is stored inline (copying it touches no
    /// shared memory).
    pub(crate) fn fits_inline(len: usize) -> bool {
        len <= INLINE
    }
}

impl Clone for Name {
    /// Copies an inline name as a whole (three words), or takes one more
    /// reference to a shared one.
    #[inline]
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Inline(inline) => inline.whole_name(),
            Repr::Shared(bytes) => Name(Repr::Shared(Arc::clone(bytes))),
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order, as Redis sorts names.
impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Names up to this long are remembered per thread by [`Name::recent`].
const RECENT_MAX_LEN: usize = 256;

thread_local! {
    /// The last channel name [`Name::recent`] built on this thread.
    static RECENT: std::cell::RefCell<Option<Name>> = const { std::cell::RefCell::new(None) };
}

impl Name {
    /// A `Name` for `bytes`. Names of up to 22 bytes are inline (a copy);
    /// names of 23 to 256 bytes reuse the one this thread built last time
    /// when the bytes are the same, so a publisher that publishes on the
    /// same channel again (with pattern subscribers but no exact ones) gets
    /// its name for a reference-count increment instead of an allocation;
    /// longer names are not remembered, so a thread keeps at most a small
    /// one.
    #[inline]
    pub(crate) fn recent(bytes: &[u8]) -> Name {
        if Name::fits_inline(bytes.len()) || bytes.len() > RECENT_MAX_LEN {
            return Name::from(bytes);
        }
        Name::recent_shared(bytes)
    }

    #[inline(never)]
    fn recent_shared(bytes: &[u8]) -> Name {
        RECENT.with(|recent| {
            let mut recent = recent.borrow_mut();
            match &*recent {
                Some(name) if name.as_bytes() == bytes => name.clone(),
                _ => {
                    let name = Name::from(bytes);
                    *recent = Some(name.clone());
                    name
                }
            }
        })
    }
}

impl Deref for Name {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

// Hash exactly like `[u8]`, so maps keyed by `Name` can be searched with a
// borrowed `&[u8]` (no allocation on the publish path).
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for Name {
    #[inline]
    fn from(bytes: &[u8]) -> Self {
        if Name::fits_inline(bytes.len()) {
            let mut inline = Inline {
                len: InlineLen::ALL[bytes.len()],
                bytes: [0; INLINE],
            };
            inline.bytes[..bytes.len()].copy_from_slice(bytes);
            Name(Repr::Inline(inline))
        } else {
            Name(Repr::Shared(Arc::from(bytes)))
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Name {
    fn from(bytes: &[u8; N]) -> Self {
        Name::from(&bytes[..])
    }
}

impl From<Vec<u8>> for Name {
    fn from(bytes: Vec<u8>) -> Self {
        if Name::fits_inline(bytes.len()) {
            Name::from(&bytes[..])
        } else {
            Name(Repr::Shared(Arc::from(bytes)))
        }
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Name::from(text.as_bytes())
    }
}

impl From<String> for Name {
    fn from(text: String) -> Self {
        Name::from(text.into_bytes())
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Self {
        Name::from(text.as_str())
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Self {
        name.clone()
    }
}

impl From<bytes::Bytes> for Name {
    fn from(bytes: bytes::Bytes) -> Self {
        Name::from(&bytes[..])
    }
}

/// `name == "x"`, `"x" == name`, `name == String::from("x")`, `name ==
/// b"x"[..]` and so on: a name equals text or bytes with the same bytes.
macro_rules! eq_both_ways {
    ($($other:ty),* $(,)?) => {$(
        impl PartialEq<$other> for Name {
            fn eq(&self, other: &$other) -> bool {
                self.as_bytes() == AsRef::<[u8]>::as_ref(other)
            }
        }

        impl PartialEq<Name> for $other {
            fn eq(&self, other: &Name) -> bool {
                AsRef::<[u8]>::as_ref(self) == other.as_bytes()
            }
        }
    )*};
}

eq_both_ways!(str, &str, String, [u8], &[u8], Vec<u8>);

impl<const N: usize> PartialEq<[u8; N]> for Name {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_bytes() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Name {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_bytes() == *other
    }
}

/// Shows the name as text; bytes that are not printable ASCII are escaped
/// as `\xNN` (so a binary name always prints on one line).
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_printable(f, self.as_bytes())
    }
}

/// Writes `bytes` as text when they are UTF-8 without control characters,
/// otherwise byte by byte with everything but printable ASCII escaped.
pub(crate) fn write_printable(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.chars().any(char::is_control) {
            return f.write_str(text);
        }
    }
    for &byte in bytes {
        if byte.is_ascii_graphic() || byte == b' ' {
            fmt::Write::write_char(f, char::from(byte))?;
        } else {
            write!(f, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn inline_and_shared_names_behave_alike() {
        let hasher = std::collections::hash_map::RandomState::new();
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let names = [
                Name::from(&bytes[..]),
                Name::from(bytes.clone()),
                Name::recent(&bytes),
            ];
            for name in &names {
                assert_eq!(name.as_bytes(), &bytes[..]);
                assert_eq!(name.len(), len);
                assert_eq!(matches!(name.0, Repr::Inline(..)), len <= INLINE);
                assert_eq!(name, &names[0]);
                assert_eq!(hasher.hash_one(name), hasher.hash_one(&bytes[..]));
                assert_eq!(name.clone().as_bytes(), &bytes[..]);
            }
        }
        // Byte order across the two representations.
        let short = Name::from("b");
        let long = Name::from("a".repeat(40));
        assert!(long < short);
        assert_eq!(short.cmp(&long), std::cmp::Ordering::Greater);
        let (a, a_nul) = (Name::from("a"), Name::from("a\0"));
        assert!(a < a_nul);
        assert_eq!(std::mem::size_of::<Name>(), 24);
    }
}
