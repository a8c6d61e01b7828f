//! `Name`: the binary-safe, cheaply cloned name of a channel or a pattern.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The name of a channel, shard channel or pattern.
///
/// Names are arbitrary bytes, exactly as in Redis: the empty name and names
/// holding NUL or non-UTF-8 bytes are all valid. A `Name` is reference
/// counted, so the broker clones it into every delivered [`Message`] for the
/// price of one atomic increment, never a copy of the bytes.
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
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name(Arc<[u8]>);

impl Name {
    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as UTF-8 text, or `None` when its bytes are not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The length of the name in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty name (valid, as in Redis).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Names up to this long are remembered per thread by [`Name::recent`].
const RECENT_MAX_LEN: usize = 256;

thread_local! {
    /// The last channel name [`Name::recent`] built on this thread.
    static RECENT: std::cell::RefCell<Option<Name>> = const { std::cell::RefCell::new(None) };
}

impl Name {
    /// A `Name` for `bytes`, reusing the one this thread built last time
    /// when the bytes are the same: a publisher that publishes on the same
    /// channel again (with pattern subscribers but no exact ones) gets its
    /// name for a reference-count increment instead of an allocation. Long
    /// names are not remembered, so a thread keeps at most a small name.
    pub(crate) fn recent(bytes: &[u8]) -> Name {
        if bytes.len() > RECENT_MAX_LEN {
            return Name::from(bytes);
        }
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
        &self.0
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        &self.0
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
        &self.0
    }
}

impl From<&[u8]> for Name {
    fn from(bytes: &[u8]) -> Self {
        Name(Arc::from(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for Name {
    fn from(bytes: &[u8; N]) -> Self {
        Name(Arc::from(&bytes[..]))
    }
}

impl From<Vec<u8>> for Name {
    fn from(bytes: Vec<u8>) -> Self {
        Name(Arc::from(bytes))
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Name(Arc::from(text.as_bytes()))
    }
}

impl From<String> for Name {
    fn from(text: String) -> Self {
        Name(Arc::from(text.into_bytes()))
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
