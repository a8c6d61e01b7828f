//! `Name`: the binary-safe, cheaply cloned name of a channel or a pattern.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The name of a channel, shard channel or pattern.
///
/// Names are arbitrary bytes, exactly as in Redis: the empty name and names
/// holding NUL or non-UTF-8 bytes are all valid. The broker clones a name
/// into every delivered [`Message`], so cloning is cheap: a name of up to
/// 22 bytes is stored inline and cloned by copying 24 bytes (no shared
/// counter for the publishing and receiving threads to fight over), a
/// longer one shares one reference-counted allocation.
///
/// Build one from a `&str`, `String`, `&[u8]` or `Vec<u8>` with `From`/`Into`;
/// every API that takes names accepts anything `Into<Name>`.
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
/// ```
///
/// [`Message`]: crate::Message
#[derive(Clone)]
pub struct Name(Repr);

/// The longest name stored inline: what fits beside the length byte in the
/// 24 bytes an enum of a fat `Arc` needs anyway.
const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl Name {
    fn inline(bytes: &[u8]) -> Option<Name> {
        let mut buffer = [0; INLINE];
        buffer.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Name(Repr::Inline {
            len: bytes.len() as u8,
            bytes: buffer,
        }))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
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

/// Byte-wise order, as `[u8]`.
impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
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
    fn from(bytes: &[u8]) -> Self {
        Name::inline(bytes).unwrap_or_else(|| Name(Repr::Shared(Arc::from(bytes))))
    }
}

impl<const N: usize> From<&[u8; N]> for Name {
    fn from(bytes: &[u8; N]) -> Self {
        Name::from(&bytes[..])
    }
}

impl From<Vec<u8>> for Name {
    fn from(bytes: Vec<u8>) -> Self {
        Name::inline(&bytes).unwrap_or_else(|| Name(Repr::Shared(Arc::from(bytes))))
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

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<[u8]> for Name {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for Name {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

/// Shows the name as text; bytes that are not printable ASCII are escaped
/// as `\xNN` (so a binary name always prints on one line).
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.as_str() {
            if !text.chars().any(char::is_control) {
                return f.write_str(text);
            }
        }
        for &byte in self.as_bytes() {
            if byte.is_ascii_graphic() || byte == b' ' {
                fmt::Write::write_char(f, char::from(byte))?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_inline_and_long_ones_shared() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        let short = Name::from("x".repeat(INLINE));
        let long = Name::from("x".repeat(INLINE + 1));
        assert!(matches!(short.0, Repr::Inline { .. }));
        assert!(matches!(long.0, Repr::Shared(_)));
        assert_eq!(short.len(), INLINE);
        assert_eq!(long.clone(), long);
        assert!(short < long);
        assert_eq!(Name::from(Vec::new()), Name::from(""));
    }
}
