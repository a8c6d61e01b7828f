//! `Space`: the two channel namespaces of Redis Pub/Sub.

/// Which of the two channel namespaces a shard map serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// `SUBSCRIBE` / `PUBLISH`.
    Channel,
    /// `SSUBSCRIBE` / `SPUBLISH`.
    Shard,
}
