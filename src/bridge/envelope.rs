//! The envelope a bridge wraps around each payload it publishes to Redis.
//!
//! ```text
//! marker   8 bytes  b"\0ccast\x02\0"
//! origin  16 bytes  random per bridge
//! seq      8 bytes  little endian, per (origin, channel), from 1
//! len      8 bytes  little endian, the payload's length
//! check    8 bytes  little endian, `check(marker .. len)`
//! payload  len bytes
//! ```
//!
//! A payload is read as an envelope only when all of it holds: the
//! marker, a check that matches the 40 bytes before it, and a length equal
//! to what follows. Anything else, including a foreign payload that merely
//! starts with the marker, is delivered byte for byte as it was sent.

/// Marks an enveloped payload (version 2 of the layout).
pub(super) const MARKER: &[u8; 8] = b"\x00ccast\x02\x00";
pub(super) const ORIGIN_LEN: usize = 16;
/// Bytes before the payload.
pub(super) const HEADER_LEN: usize = 8 + ORIGIN_LEN + 8 + 8 + 8;

/// A bridge's random identity.
pub(super) type Origin = [u8; ORIGIN_LEN];

/// Writes the header for a payload of `len` bytes.
pub(super) fn header(origin: &Origin, seq: u64, len: usize) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MARKER);
    out[8..24].copy_from_slice(origin);
    out[24..32].copy_from_slice(&seq.to_le_bytes());
    out[32..40].copy_from_slice(&(len as u64).to_le_bytes());
    let sum = check(&out[..40]);
    out[40..].copy_from_slice(&sum.to_le_bytes());
    out
}

/// What an enveloped payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) origin: Origin,
    pub(super) seq: u64,
}

/// Splits a received payload into its stamp and the payload proper;
/// `None` for a payload that is not a well-formed envelope.
pub(super) fn open(payload: &[u8]) -> Option<(Stamp, std::ops::Range<usize>)> {
    if payload.len() < HEADER_LEN || &payload[..8] != MARKER {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    if word(40) != check(&payload[..40]) || word(32) != (payload.len() - HEADER_LEN) as u64 {
        return None;
    }
    let mut origin = [0; ORIGIN_LEN];
    origin.copy_from_slice(&payload[8..24]);
    Some((
        Stamp {
            origin,
            seq: word(24),
        },
        HEADER_LEN..payload.len(),
    ))
}

/// A fixed 64-bit mix of the header (the same in every build: the check
/// must agree across processes and versions).
fn check(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0x6a09_e667_f3bc_c908;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K);
        h ^= h >> 29;
    }
    h ^ (h >> 32)
}

/// A random origin id: hashes of the time, the process and fresh randomly
/// seeded hashers.
pub(super) fn new_origin() -> Origin {
    use std::hash::{BuildHasher, Hasher};
    let mut origin = [0; ORIGIN_LEN];
    for chunk in origin.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_lookalikes_do_not_open() {
        let origin = new_origin();
        let mut wrapped = header(&origin, 7, 5).to_vec();
        wrapped.extend_from_slice(b"hello");
        let (stamp, body) = open(&wrapped).unwrap();
        assert_eq!((stamp.origin, stamp.seq), (origin, 7));
        assert_eq!(&wrapped[body], b"hello");
        // A foreign payload starting with the marker is not an envelope.
        let mut foreign = MARKER.to_vec();
        foreign.extend_from_slice(&[0xAB; 60]);
        assert!(open(&foreign).is_none());
        // Neither is a truncated or extended envelope, nor one with a flipped bit.
        assert!(open(&wrapped[..wrapped.len() - 1]).is_none());
        let mut longer = wrapped.clone();
        longer.push(b'!');
        assert!(open(&longer).is_none());
        for bit in 0..HEADER_LEN * 8 {
            let mut flipped = wrapped.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&flipped).is_none(), "bit {bit}");
        }
    }
}
