//! Shard channels on Redis Cluster: the hash slot of a channel, the map of
//! slots to the masters that own them, and reading that map from a node.
//!
//! A plain (non-cluster) server is a cluster of one node owning every
//! slot: `SSUBSCRIBE` and `SPUBLISH` work there too, so the same code
//! serves both, and which one the server is comes from its answer to
//! `CLUSTER SLOTS`.

use std::time::Instant;

use super::resp::{self, Conn, Frame, ReadError, Target};
use super::{ConnectError, Shared};

/// Hash slots in a Redis Cluster.
pub(super) const SLOTS: usize = 16_384;
/// A slot no master serves.
const NOBODY: u16 = u16::MAX;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection): the
/// checksum Redis Cluster hashes keys and shard channels with.
pub(super) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// The hash slot of a key or shard channel, as `CLUSTER KEYSLOT` answers:
/// only the part between the first `{` and the first `}` after it is
/// hashed when that part is not empty (a hash tag), else the whole name.
pub(super) fn key_slot(name: &[u8]) -> u16 {
    let hashed = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &name[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(name);
    crc16(hashed) % SLOTS as u16
}

/// Which master owns each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SlotMap {
    /// The masters, `host:port`.
    nodes: Vec<String>,
    /// Per slot, the index of its master in `nodes`, or [`NOBODY`].
    owners: Box<[u16]>,
    /// Whether the server said it is a cluster node.
    clustered: bool,
}

impl SlotMap {
    /// A plain server: it owns every slot.
    pub(super) fn single(addr: String) -> Self {
        SlotMap {
            nodes: vec![addr],
            owners: vec![0; SLOTS].into_boxed_slice(),
            clustered: false,
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.clustered
    }

    /// The master serving `slot`, `host:port`.
    pub(super) fn owner(&self, slot: u16) -> Option<&str> {
        let index = *self.owners.get(usize::from(slot))?;
        self.nodes.get(usize::from(index)).map(String::as_str)
    }

    /// The master serving the shard channel `channel`.
    pub(super) fn owner_of(&self, channel: &[u8]) -> Option<&str> {
        self.owner(key_slot(channel))
    }

    /// Every master, `host:port`.
    pub(super) fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Records a `-MOVED slot addr` answer: `addr` serves `slot` now.
    pub(super) fn moved(&mut self, slot: u16, addr: &str) {
        if usize::from(slot) >= SLOTS {
            return;
        }
        let index = node_index(&mut self.nodes, addr);
        self.owners[usize::from(slot)] = index as u16;
    }

    /// Reads a `CLUSTER SLOTS` reply; `asked` is the address of the node
    /// that answered (for entries that leave the host empty).
    fn from_cluster_slots(reply: &Frame, asked: &Target) -> Option<Self> {
        let Frame::Array(Some(ranges)) = reply else {
            return None;
        };
        let mut map = SlotMap {
            nodes: Vec::new(),
            owners: vec![NOBODY; SLOTS].into_boxed_slice(),
            clustered: true,
        };
        for range in ranges {
            let Frame::Array(Some(fields)) = range else {
                return None;
            };
            let (Some(Frame::Int(start)), Some(Frame::Int(end)), Some(Frame::Array(Some(master)))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = master.first().and_then(Frame::bulk)?;
            let Some(Frame::Int(port)) = master.get(1) else {
                return None;
            };
            let host = match std::str::from_utf8(host).ok()? {
                "" | "?" => asked.host.as_str(),
                host => host,
            };
            let index = node_index(&mut map.nodes, &format!("{host}:{port}"));
            let start = usize::try_from(*start).ok()?;
            let end = usize::try_from(*end).ok()?;
            if start > end || end >= SLOTS {
                return None;
            }
            for owner in &mut map.owners[start..=end] {
                *owner = index as u16;
            }
        }
        Some(map)
    }
}

/// The index of `addr` in `nodes`, added if missing.
fn node_index(nodes: &mut Vec<String>, addr: &str) -> usize {
    nodes.iter().position(|n| n == addr).unwrap_or_else(|| {
        nodes.push(addr.to_owned());
        nodes.len() - 1
    })
}

/// Where to connect for the node at `addr` (`host:port`): the seed's
/// credentials, another address.
pub(super) fn node_target(seed: &Target, addr: &str) -> Target {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .unwrap_or((seed.host.as_str(), seed.port));
    Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        ..seed.clone()
    }
}

/// Asks the node at the other end of `conn` for the slot map.
pub(super) fn ask_on(
    shared: &Shared,
    conn: &mut Conn,
    target: &Target,
) -> Result<SlotMap, ConnectError> {
    let addr = conn.addr().to_owned();
    let mut command = Vec::new();
    resp::encode(&mut command, &[b"CLUSTER", b"SLOTS"]);
    conn.write(&command).1.map_err(|error| ConnectError::Io {
        addr: addr.clone(),
        detail: error.to_string(),
    })?;
    let deadline = Instant::now() + shared.config.reply_timeout;
    match conn.read_until(deadline) {
        Ok(Frame::Error(text)) if text.windows(15).any(|w| w == b"cluster support") => {
            Ok(SlotMap::single(addr))
        }
        Ok(Frame::Error(text)) => Err(ConnectError::Rejected {
            addr,
            reply: String::from_utf8_lossy(&text).into_owned(),
        }),
        Ok(reply) => SlotMap::from_cluster_slots(&reply, target).ok_or(ConnectError::NotRedis {
            addr,
            got: "an unreadable CLUSTER SLOTS reply".to_owned(),
        }),
        Err(ReadError::Timeout) => Err(ConnectError::NoAnswer {
            addr,
            waited: shared.config.reply_timeout,
        }),
        Err(error) => Err(ConnectError::Io {
            addr,
            detail: error.to_string(),
        }),
    }
}

/// Reads the slot map: on `kept` (the connection that answered last
/// time) if it still answers, else from the first node that does, the
/// masters of the current map first, then the seeds; `kept` is then that
/// node's connection.
pub(super) fn fetch(
    shared: &Shared,
    kept: &mut Option<(Conn, Target)>,
) -> Result<SlotMap, ConnectError> {
    if let Some((conn, target)) = kept.as_mut() {
        if let Ok(map) = ask_on(shared, conn, target) {
            return Ok(map);
        }
        *kept = None;
    }
    let current = shared.slot_map();
    let mut tried: Vec<String> = Vec::new();
    let mut last = None;
    let candidates = current
        .nodes()
        .iter()
        .map(|addr| node_target(&shared.target, addr))
        .chain(shared.seeds.iter().cloned());
    for target in candidates {
        let addr = target.addr();
        if tried.contains(&addr) {
            continue;
        }
        tried.push(addr);
        let asked = Conn::open(&target, shared.timeouts).and_then(|mut conn| {
            let map = ask_on(shared, &mut conn, &target)?;
            Ok((map, conn))
        });
        match asked {
            Ok((map, conn)) => {
                *kept = Some((conn, target));
                return Ok(map);
            }
            Err(error) => last = Some(error),
        }
        if shared.stopped() {
            break;
        }
    }
    Err(last.unwrap_or(ConnectError::UnknownHost {
        host: shared.target.host.clone(),
        detail: "no node to ask for the slot map".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_xmodem_check_value_and_redis_slots() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        // `CLUSTER KEYSLOT` answers of Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"bar"), 5_061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // Empty tag: the whole name; only the first `{` and the first `}`
        // after it count.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16_384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16_384);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"no}open{"), crc16(b"no}open{") % 16_384);
    }

    #[test]
    fn cluster_slots_replies_are_read() {
        let int = |n| Frame::Int(n);
        let bulk = |s: &str| Frame::Bulk(Some(bytes::Bytes::copy_from_slice(s.as_bytes())));
        let node = |host: &str, port| Frame::Array(Some(vec![bulk(host), int(port), bulk("id")]));
        let reply = Frame::Array(Some(vec![
            Frame::Array(Some(vec![int(0), int(5460), node("10.0.0.1", 7000)])),
            Frame::Array(Some(vec![
                int(5461),
                int(16_383),
                node("", 7001),
                node("10.0.0.3", 7003),
            ])),
        ]));
        let asked = Target {
            host: "seed".to_owned(),
            port: 1,
            username: None,
            password: None,
            db: 0,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let map = SlotMap::from_cluster_slots(&reply, &asked).unwrap();
        assert!(map.is_cluster());
        assert_eq!(map.owner(0), Some("10.0.0.1:7000"));
        assert_eq!(map.owner(5460), Some("10.0.0.1:7000"));
        assert_eq!(map.owner(5461), Some("seed:7001"));
        assert_eq!(map.owner(16_383), Some("seed:7001"));
        let mut moved = map.clone();
        moved.moved(1, "10.0.0.9:7009");
        assert_eq!(moved.owner(1), Some("10.0.0.9:7009"));
        assert_eq!(moved.nodes().len(), 3);
        let partial = Frame::Array(Some(vec![Frame::Array(Some(vec![
            int(0),
            int(9),
            node("h", 1),
        ]))]));
        let map = SlotMap::from_cluster_slots(&partial, &asked).unwrap();
        assert_eq!(map.owner(10), None);
        let t = node_target(&asked, "[::1]:7002");
        assert_eq!((t.host.as_str(), t.port), ("::1", 7002));
    }
}
