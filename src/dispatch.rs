//! `Dispatcher`: a table of callbacks keyed by where a message came from.

use std::fmt;

use crate::fast_hash::FastMap;
use crate::{Message, Name, SubscribeError, Subscriber};

type Handler<'a, P> = Box<dyn FnMut(&Message<P>) + Send + 'a>;

/// A table of handlers, one per channel, pattern or shard channel, run from a
/// subscriber's worker loop.
///
/// Every delivery names its source (the channel of a `message`, the
/// *pattern* of a `pmessage`, the shard channel of an `smessage`), so the
/// handler is found with one hash lookup, however many are registered: the
/// callback table Redis's documentation suggests, without the string
/// parsing. Confirmations are not dispatched.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use channelcast::{Broker, Dispatcher};
///
/// let broker = Broker::new();
/// let sub = broker.subscriber();
/// let (orders, alerts) = (AtomicUsize::new(0), AtomicUsize::new(0));
///
/// let mut dispatcher = Dispatcher::new();
/// dispatcher
///     .on_channel("orders", |_| { orders.fetch_add(1, Ordering::Relaxed); })
///     .on_pattern("alert.*", |msg| {
///         assert!(msg.channel().unwrap().starts_with(b"alert."));
///         alerts.fetch_add(1, Ordering::Relaxed);
///     });
/// dispatcher.subscribe(&sub).unwrap();
///
/// broker.publish("orders", "o1");
/// broker.publish("alert.disk", "full");
/// broker.publish("alert.cpu", "hot");
/// drop(broker); // lets `run` end once the queue is drained
///
/// assert_eq!(dispatcher.run(&sub), 3);
/// assert_eq!(orders.load(Ordering::Relaxed), 1);
/// assert_eq!(alerts.load(Ordering::Relaxed), 2);
/// ```
pub struct Dispatcher<'a, P = bytes::Bytes> {
    channels: FastMap<Name, Handler<'a, P>>,
    patterns: FastMap<Name, Handler<'a, P>>,
    shards: FastMap<Name, Handler<'a, P>>,
    /// Runs for deliveries no handler claims.
    unhandled: Option<Handler<'a, P>>,
}

impl<'a, P: Clone + Send + 'static> Dispatcher<'a, P> {
    /// An empty table.
    pub fn new() -> Self {
        Dispatcher {
            channels: FastMap::default(),
            patterns: FastMap::default(),
            shards: FastMap::default(),
            unhandled: None,
        }
    }

    /// Runs `handler` for every `message` on `channel` (replacing any
    /// handler it had).
    pub fn on_channel(
        &mut self,
        channel: impl Into<Name>,
        handler: impl FnMut(&Message<P>) + Send + 'a,
    ) -> &mut Self {
        self.channels.insert(channel.into(), Box::new(handler));
        self
    }

    /// Runs `handler` for every `pmessage` delivered through `pattern`.
    pub fn on_pattern(
        &mut self,
        pattern: impl Into<Name>,
        handler: impl FnMut(&Message<P>) + Send + 'a,
    ) -> &mut Self {
        self.patterns.insert(pattern.into(), Box::new(handler));
        self
    }

    /// Runs `handler` for every `smessage` on shard channel `channel`.
    pub fn on_shard(
        &mut self,
        channel: impl Into<Name>,
        handler: impl FnMut(&Message<P>) + Send + 'a,
    ) -> &mut Self {
        self.shards.insert(channel.into(), Box::new(handler));
        self
    }

    /// Runs `handler` for every delivery that no other handler claims (for
    /// example a channel subscribed to outside this table). Confirmations
    /// are never dispatched.
    pub fn on_unhandled(&mut self, handler: impl FnMut(&Message<P>) + Send + 'a) -> &mut Self {
        self.unhandled = Some(Box::new(handler));
        self
    }

    /// Subscribes `subscriber` to every registered channel, pattern and
    /// shard channel. The confirmations land in its stream as usual (and are
    /// skipped by [`dispatch`](Dispatcher::dispatch)).
    ///
    /// # Errors
    ///
    /// [`SubscribeError::BrokerClosed`] when the broker is gone.
    pub fn subscribe(&self, subscriber: &Subscriber<P>) -> Result<(), SubscribeError> {
        if !self.channels.is_empty() {
            subscriber.subscribe(self.channels.keys())?;
        }
        if !self.patterns.is_empty() {
            subscriber.psubscribe(self.patterns.keys())?;
        }
        if !self.shards.is_empty() {
            subscriber.ssubscribe(self.shards.keys())?;
        }
        Ok(())
    }

    /// Runs the handler registered for `message`'s source; returns whether
    /// one ran. A delivery with no handler of its own goes to the
    /// [`on_unhandled`](Dispatcher::on_unhandled) handler, if any, and
    /// returns `false`; confirmations return `false`.
    pub fn dispatch(&mut self, message: &Message<P>) -> bool {
        let (table, key) = match message {
            Message::Message { channel, .. } => (&mut self.channels, channel),
            Message::PMessage { pattern, .. } => (&mut self.patterns, pattern),
            Message::SMessage { channel, .. } => (&mut self.shards, channel),
            _ => return false,
        };
        if let Some(handler) = table.get_mut(key.as_bytes()) {
            handler(message);
            true
        } else {
            if let Some(fallback) = &mut self.unhandled {
                fallback(message);
            }
            false
        }
    }

    /// Receives from `subscriber` and dispatches until the broker is gone and
    /// the queue is drained; returns the number of messages a handler ran for.
    pub fn run(&mut self, subscriber: &Subscriber<P>) -> usize {
        subscriber
            .iter()
            .filter(|message| self.dispatch(message))
            .count()
    }
}

impl<P: Clone + Send + 'static> Default for Dispatcher<'_, P> {
    fn default() -> Self {
        Dispatcher::new()
    }
}

impl<P> fmt::Debug for Dispatcher<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("patterns", &self.patterns.keys().collect::<Vec<_>>())
            .field("shards", &self.shards.keys().collect::<Vec<_>>())
            .field("unhandled", &self.unhandled.is_some())
            .finish()
    }
}
