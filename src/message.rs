//! `Message`: everything a subscriber can receive, typed after Redis's push replies.

use std::fmt;

use crate::Name;

/// One item from a [`Subscriber`]'s stream: a delivered message or the
/// confirmation of a (un)subscribe call.
///
/// The variants mirror the replies a Redis connection in subscribe mode
/// receives, one for one (`message`, `pmessage`, `smessage`, `subscribe`, …).
/// [`Message::kind`] gives that Redis word.
///
/// Confirmations carry the subscriber's running count, as in Redis:
/// channels + patterns for the channel and pattern families, shard channels
/// only for the shard family. An unsubscribe confirmation has `None` for a
/// name when the subscriber held nothing in that namespace (Redis replies
/// with a nil name).
///
/// The payload type `P` is whatever the [`Broker`] was created with, by
/// default [`bytes::Bytes`]; it is cloned once per delivery, so a fan-out
/// to N subscribers never copies the payload bytes.
///
/// [`Subscriber`]: crate::Subscriber
/// [`Broker`]: crate::Broker
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<P = bytes::Bytes> {
    /// `message`: a publish to a channel this subscriber holds.
    Message {
        /// The channel the message was published to.
        channel: Name,
        /// The published payload.
        payload: P,
    },
    /// `pmessage`: a publish to a channel matching a pattern this subscriber holds.
    PMessage {
        /// The pattern that matched (as it was subscribed).
        pattern: Name,
        /// The channel the message was published to.
        channel: Name,
        /// The published payload.
        payload: P,
    },
    /// `smessage`: a shard publish ([`Broker::spublish`](crate::Broker::spublish)).
    SMessage {
        /// The shard channel the message was published to.
        channel: Name,
        /// The published payload.
        payload: P,
    },
    /// `subscribe`: confirms one channel of a `subscribe` call.
    Subscribe {
        /// The channel named in the call.
        channel: Name,
        /// Channels + patterns held after this confirmation.
        count: usize,
    },
    /// `unsubscribe`: confirms one channel of an `unsubscribe` call.
    Unsubscribe {
        /// The channel, or `None` when an unsubscribe-all found none held.
        channel: Option<Name>,
        /// Channels + patterns still held.
        count: usize,
    },
    /// `psubscribe`: confirms one pattern of a `psubscribe` call.
    PSubscribe {
        /// The pattern named in the call.
        pattern: Name,
        /// Channels + patterns held after this confirmation.
        count: usize,
    },
    /// `punsubscribe`: confirms one pattern of a `punsubscribe` call.
    PUnsubscribe {
        /// The pattern, or `None` when a punsubscribe-all found none held.
        pattern: Option<Name>,
        /// Channels + patterns still held.
        count: usize,
    },
    /// `ssubscribe`: confirms one shard channel of an `ssubscribe` call.
    SSubscribe {
        /// The shard channel named in the call.
        channel: Name,
        /// Shard channels held after this confirmation.
        count: usize,
    },
    /// `sunsubscribe`: confirms one shard channel of an `sunsubscribe` call.
    SUnsubscribe {
        /// The shard channel, or `None` when an sunsubscribe-all found none held.
        channel: Option<Name>,
        /// Shard channels still held.
        count: usize,
    },
    /// Deliveries this subscriber lost to its [overflow
    /// policy](crate::Overflow), reported in the stream at the place where
    /// they are missing. Only bounded subscribers receive it; Redis has no
    /// counterpart (it drops silently).
    Lagged {
        /// How many deliveries are missing at this point of the stream.
        missed: u64,
    },
    /// A message published *before* this subscriber joined, kept by the
    /// broker's retention and queued right after the confirmation of a
    /// `*subscribe_with_history` call (beyond Redis: see the crate docs,
    /// "Late joiners"). It is a delivery like `message`, `pmessage` and
    /// `smessage`: it counts against a bounded subscriber's capacity and in
    /// its counters.
    Retained {
        /// The subscription that asked for it: the channel, the pattern or
        /// the shard channel named in the call.
        source: Source,
        /// The channel it was published to.
        channel: Name,
        /// The published payload.
        payload: P,
    },
}

/// Where a delivered message came from: the key a callback table is
/// indexed by (see [`Dispatcher`](crate::Dispatcher)).
///
/// A `message` comes from its channel, a `pmessage` from its *pattern*
/// (not the concrete channel), an `smessage` from its shard channel; the
/// three namespaces never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Subscribed with [`Subscriber::subscribe`](crate::Subscriber::subscribe).
    Channel(Name),
    /// Subscribed with [`Subscriber::psubscribe`](crate::Subscriber::psubscribe).
    Pattern(Name),
    /// Subscribed with [`Subscriber::ssubscribe`](crate::Subscriber::ssubscribe).
    Shard(Name),
}

impl<P> Message<P> {
    /// The Redis word for this item: `"message"`, `"pmessage"`, `"smessage"`,
    /// `"subscribe"`, `"unsubscribe"`, `"psubscribe"`, `"punsubscribe"`,
    /// `"ssubscribe"`, `"sunsubscribe"`, `"lagged"` for a [`Message::Lagged`]
    /// loss report, or `"retained"` for a [`Message::Retained`] message.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Message { .. } => "message",
            Message::PMessage { .. } => "pmessage",
            Message::SMessage { .. } => "smessage",
            Message::Subscribe { .. } => "subscribe",
            Message::Unsubscribe { .. } => "unsubscribe",
            Message::PSubscribe { .. } => "psubscribe",
            Message::PUnsubscribe { .. } => "punsubscribe",
            Message::SSubscribe { .. } => "ssubscribe",
            Message::SUnsubscribe { .. } => "sunsubscribe",
            Message::Lagged { .. } => "lagged",
            Message::Retained { .. } => "retained",
        }
    }

    /// Whether this is a published message (`message`, `pmessage`,
    /// `smessage`, or a [retained](Message::Retained) one) rather than a
    /// confirmation or a lag report.
    pub fn is_delivery(&self) -> bool {
        matches!(
            self,
            Message::Message { .. }
                | Message::PMessage { .. }
                | Message::SMessage { .. }
                | Message::Retained { .. }
        )
    }

    /// Whether this is a [`Message::Retained`] message: published before
    /// the subscriber joined, rather than live.
    pub fn is_retained(&self) -> bool {
        matches!(self, Message::Retained { .. })
    }

    /// The channel a delivery was published to, or a confirmation's channel;
    /// `None` for pattern confirmations and for unsubscribe-all replies that
    /// found nothing.
    pub fn channel(&self) -> Option<&Name> {
        match self {
            Message::Message { channel, .. }
            | Message::PMessage { channel, .. }
            | Message::SMessage { channel, .. }
            | Message::Retained { channel, .. }
            | Message::Subscribe { channel, .. }
            | Message::SSubscribe { channel, .. } => Some(channel),
            Message::Unsubscribe { channel, .. } | Message::SUnsubscribe { channel, .. } => {
                channel.as_ref()
            }
            Message::PSubscribe { .. } | Message::PUnsubscribe { .. } | Message::Lagged { .. } => {
                None
            }
        }
    }

    /// The pattern of a `pmessage`, of a pattern confirmation, or of a
    /// retained message asked for through a pattern.
    pub fn pattern(&self) -> Option<&Name> {
        match self {
            Message::PMessage { pattern, .. }
            | Message::PSubscribe { pattern, .. }
            | Message::Retained {
                source: Source::Pattern(pattern),
                ..
            } => Some(pattern),
            Message::PUnsubscribe { pattern, .. } => pattern.as_ref(),
            _ => None,
        }
    }

    /// The payload of a delivery; `None` for confirmations.
    pub fn payload(&self) -> Option<&P> {
        match self {
            Message::Message { payload, .. }
            | Message::PMessage { payload, .. }
            | Message::SMessage { payload, .. }
            | Message::Retained { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Takes the payload out of a delivery; `None` for confirmations.
    pub fn into_payload(self) -> Option<P> {
        match self {
            Message::Message { payload, .. }
            | Message::PMessage { payload, .. }
            | Message::SMessage { payload, .. }
            | Message::Retained { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// The running count of a confirmation; `None` for deliveries.
    pub fn count(&self) -> Option<usize> {
        match self {
            Message::Subscribe { count, .. }
            | Message::Unsubscribe { count, .. }
            | Message::PSubscribe { count, .. }
            | Message::PUnsubscribe { count, .. }
            | Message::SSubscribe { count, .. }
            | Message::SUnsubscribe { count, .. } => Some(*count),
            _ => None,
        }
    }

    /// The subscription a delivery arrived through: its channel, its pattern
    /// or its shard channel (for a retained message, the subscription that
    /// asked for it). `None` for confirmations.
    ///
    /// ```
    /// use channelcast::{Broker, Source};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.psubscribe(["news.*"]).unwrap();
    /// sub.recv().unwrap(); // the psubscribe confirmation
    /// broker.publish("news.art", "hi");
    /// let msg = sub.recv().unwrap();
    /// assert_eq!(msg.source(), Some(Source::Pattern("news.*".into())));
    /// ```
    pub fn source(&self) -> Option<Source> {
        match self {
            Message::Message { channel, .. } => Some(Source::Channel(channel.clone())),
            Message::PMessage { pattern, .. } => Some(Source::Pattern(pattern.clone())),
            Message::SMessage { channel, .. } => Some(Source::Shard(channel.clone())),
            Message::Retained { source, .. } => Some(source.clone()),
            _ => None,
        }
    }
}

impl<P: AsRef<[u8]>> Message<P> {
    /// The payload of a delivery as bytes; `None` for confirmations.
    pub fn payload_bytes(&self) -> Option<&[u8]> {
        self.payload().map(AsRef::as_ref)
    }

    /// The payload of a delivery as UTF-8 text; `None` for confirmations and
    /// for payloads that are not valid UTF-8.
    ///
    /// ```
    /// use channelcast::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// sub.subscribe(["c"]).unwrap();
    /// broker.publish("c", "héllo");
    /// assert_eq!(sub.recv().unwrap().payload_str(), None); // the confirmation
    /// assert_eq!(sub.recv().unwrap().payload_str(), Some("héllo"));
    /// ```
    pub fn payload_str(&self) -> Option<&str> {
        self.payload_bytes()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }
}

/// One line, after the Redis word ([`Message::kind`]): the channel (and
/// pattern) of a delivery then its payload, the name and running count of a
/// confirmation, the number of missed deliveries of a lag report. Payloads
/// and names print as text when they are printable UTF-8, with other bytes
/// escaped as `\xNN`.
///
/// ```
/// use channelcast::Broker;
///
/// let broker = Broker::new();
/// let sub = broker.subscriber();
/// sub.subscribe(["news.art"]).unwrap();
/// sub.psubscribe(["news.*"]).unwrap();
/// broker.publish("news.art", "Monet");
/// broker.publish_copy("news.art", b"\x00\xff");
/// let lines: Vec<String> = sub.try_iter().map(|msg| msg.to_string()).collect();
/// assert_eq!(lines, [
///     "subscribe news.art (1)",
///     "psubscribe news.* (2)",
///     "message news.art: Monet",
///     "pmessage news.* news.art: Monet",
///     "message news.art: \\x00\\xff",
///     "pmessage news.* news.art: \\x00\\xff",
/// ]);
/// ```
impl<P: AsRef<[u8]>> fmt::Display for Message<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Message::Message { channel, payload } | Message::SMessage { channel, payload } => {
                write!(f, "{kind} {channel}: {}", Printable(payload.as_ref()))
            }
            Message::PMessage {
                pattern,
                channel,
                payload,
            }
            | Message::Retained {
                source: Source::Pattern(pattern),
                channel,
                payload,
            } => write!(
                f,
                "{kind} {pattern} {channel}: {}",
                Printable(payload.as_ref())
            ),
            Message::Retained {
                channel, payload, ..
            } => write!(f, "{kind} {channel}: {}", Printable(payload.as_ref())),
            Message::Subscribe { channel, count } | Message::SSubscribe { channel, count } => {
                write!(f, "{kind} {channel} ({count})")
            }
            Message::PSubscribe { pattern, count } => write!(f, "{kind} {pattern} ({count})"),
            Message::Unsubscribe {
                channel: name,
                count,
            }
            | Message::SUnsubscribe {
                channel: name,
                count,
            }
            | Message::PUnsubscribe {
                pattern: name,
                count,
            } => match name {
                Some(name) => write!(f, "{kind} {name} ({count})"),
                None => write!(f, "{kind} (nothing held) ({count})"),
            },
            Message::Lagged { missed } => write!(f, "{kind}: {missed} missed"),
        }
    }
}

/// Bytes shown as text, with anything that is not printable escaped, as
/// [`Name`]'s `Display` does.
struct Printable<'a>(&'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::name::write_printable(f, self.0)
    }
}
