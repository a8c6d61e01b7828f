//! The counters a broker and a subscriber report.

/// Counters of a whole broker, from [`Broker::stats`](crate::Broker::stats).
/// Each is a running total since the broker was created, read without
/// stopping publishers (a publish in progress may be partly counted).
///
/// Once every publish has returned, `delivered + dropped` is the sum of
/// what `publish` and `spublish` returned plus `replayed` (0 unless
/// retained messages were asked for), and `delivered` and `dropped` are
/// the sums of every subscriber's deliveries and losses (see
/// [`SubscriberStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BrokerStats {
    /// `publish` and `spublish` calls.
    pub published: u64,
    /// Deliveries queued for subscribers and not pushed out again by
    /// [`Overflow::DropOldest`](crate::Overflow::DropOldest).
    pub delivered: u64,
    /// Deliveries lost to bounded subscribers' overflow policies: never
    /// queued (`DropNewest`, `BlockFor` after its wait, every delivery a
    /// `Disconnect` subscriber missed once it overflowed) or pushed out of
    /// a queue (`DropOldest`).
    pub dropped: u64,
    /// Subscribers evicted by [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    pub disconnected: u64,
    /// Messages retained now for late joiners, all channels together (see
    /// [`Broker::retain_last`](crate::Broker::retain_last)).
    pub retained: u64,
    /// Payload bytes retained now, once a byte cap is set with
    /// [`Broker::limit_retained_bytes`](crate::Broker::limit_retained_bytes)
    /// (0 before).
    pub retained_bytes: u64,
    /// Channels and shard channels retaining at least one message now.
    pub retained_channels: u64,
    /// Retained messages dropped to stay within
    /// [`Broker::limit_retained`](crate::Broker::limit_retained) or
    /// [`Broker::limit_retained_bytes`](crate::Broker::limit_retained_bytes)
    /// (not those a channel's own count replaces).
    pub retained_evicted: u64,
    /// Retained messages offered to late joiners
    /// ([`Message::Retained`](crate::Message::Retained)), queued or dropped
    /// by their bound; they are also counted in `delivered` or `dropped`.
    pub replayed: u64,
}

/// Counters of one subscriber, from [`Subscriber::stats`](crate::Subscriber::stats).
///
/// "Deliveries" are published messages (`message`, `pmessage`,
/// `smessage`); confirmations and [`Message::Lagged`](crate::Message::Lagged)
/// reports are never counted as deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Items waiting in the queue now: deliveries, confirmations and lag
    /// reports.
    pub queued: usize,
    /// Deliveries taken out of the queue so far (by any receive method).
    pub received: u64,
    /// Deliveries this subscriber lost to its overflow policy (always 0 when
    /// unbounded); each is reported in its stream as part of a
    /// [`Message::Lagged`](crate::Message::Lagged).
    pub dropped: u64,
}
