//! `Dispatcher`: a table of callbacks keyed by where a message came from,
//! and the loops that run it (until stopped, or in a thread of its own).

use std::fmt;
use std::thread::{self, JoinHandle};

use crossbeam_channel::select;

use crate::fast_hash::FastMap;
use crate::{Message, Name, Source, Stopper, SubscribeError, Subscriber, TryRecvError};

type Handler<'a, P> = Box<dyn FnMut(&Message<P>) + Send + 'a>;
type LagHandler<'a> = Box<dyn FnMut(u64) + Send + 'a>;

/// A table of handlers, one per channel, pattern or shard channel, run from a
/// subscriber's worker loop.
///
/// Every delivery names its source (the channel of a `message`, the
/// *pattern* of a `pmessage`, the shard channel of an `smessage`), so the
/// handler is found with one hash lookup, however many are registered: the
/// callback table Redis's documentation suggests, without the string
/// parsing. Confirmations are not dispatched; lag reports of a bounded
/// subscriber go to [`on_lagged`](Dispatcher::on_lagged) (or, without one,
/// to [`on_unhandled`](Dispatcher::on_unhandled)), so a loss is never
/// silent.
///
/// Run the table with [`run`](Dispatcher::run) (until the broker is gone),
/// [`run_until`](Dispatcher::run_until) (until a [`Stopper`] says stop, too)
/// or [`spawn`](Dispatcher::spawn) (in a thread of its own, with `stop` and
/// `join`: redis-py's `run_in_thread`). Each returns a [`RunReport`]: why
/// the loop ended and how many messages a handler ran for.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use channelcast::{Broker, Dispatcher, Ended, RunReport};
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
/// let report = dispatcher.run(&sub);
/// assert_eq!(report, RunReport { ended: Ended::Disconnected, handled: 3 });
/// assert_eq!(orders.load(Ordering::Relaxed), 1);
/// assert_eq!(alerts.load(Ordering::Relaxed), 2);
/// ```
pub struct Dispatcher<'a, P = bytes::Bytes> {
    channels: FastMap<Name, Handler<'a, P>>,
    patterns: FastMap<Name, Handler<'a, P>>,
    shards: FastMap<Name, Handler<'a, P>>,
    /// Runs for deliveries no handler claims (and lag reports when there
    /// is no `lagged` handler).
    unhandled: Option<Handler<'a, P>>,
    lagged: Option<LagHandler<'a>>,
}

impl<'a, P: Clone + Send + Sync + 'static> Dispatcher<'a, P> {
    /// An empty table.
    pub fn new() -> Self {
        Dispatcher {
            channels: FastMap::default(),
            patterns: FastMap::default(),
            shards: FastMap::default(),
            unhandled: None,
            lagged: None,
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
    /// example a channel subscribed to outside this table), and for every
    /// [`Message::Lagged`] report when no [`on_lagged`](Dispatcher::on_lagged)
    /// handler is set. Confirmations are never dispatched.
    pub fn on_unhandled(&mut self, handler: impl FnMut(&Message<P>) + Send + 'a) -> &mut Self {
        self.unhandled = Some(Box::new(handler));
        self
    }

    /// Runs `handler` with the number of deliveries missed each time the
    /// subscriber's stream reports a loss ([`Message::Lagged`], from a
    /// bounded subscriber's [overflow policy](crate::Overflow)), at the
    /// place in the stream where they are missing: resynchronise there.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use channelcast::{Broker, Dispatcher, Overflow};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber_builder().capacity(3).overflow(Overflow::DropOldest).build();
    /// let missed = AtomicU64::new(0);
    /// let mut dispatcher = Dispatcher::new();
    /// dispatcher
    ///     .on_channel("ticks", |_| {})
    ///     .on_lagged(|n| { missed.fetch_add(n, Ordering::Relaxed); });
    /// dispatcher.subscribe(&sub)?;
    /// for i in 0..100 {
    ///     broker.publish("ticks", i.to_string()); // nobody reads yet
    /// }
    /// drop(broker);
    /// let report = dispatcher.run(&sub);
    /// assert_eq!(missed.load(Ordering::Relaxed), 97); // the newest 3 were kept
    /// assert_eq!(report.handled, 3 + 1); // 3 ticks and the lag report
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_lagged(&mut self, handler: impl FnMut(u64) + Send + 'a) -> &mut Self {
        self.lagged = Some(Box::new(handler));
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
    /// returns `false`. A [`Message::Lagged`] goes to
    /// [`on_lagged`](Dispatcher::on_lagged) (returning `true`), else to
    /// `on_unhandled` (returning `false`). Confirmations return `false`.
    pub fn dispatch(&mut self, message: &Message<P>) -> bool {
        let (table, key) = match message {
            Message::Message { channel, .. } => (&mut self.channels, channel),
            Message::PMessage { pattern, .. } => (&mut self.patterns, pattern),
            Message::SMessage { channel, .. } => (&mut self.shards, channel),
            // A late joiner's history goes to the handler of the name that
            // asked for it, like the live messages after it.
            Message::Retained { source, .. } => match source {
                Source::Channel(name) => (&mut self.channels, name),
                Source::Pattern(name) => (&mut self.patterns, name),
                Source::Shard(name) => (&mut self.shards, name),
            },
            Message::Lagged { missed } => {
                if let Some(lagged) = &mut self.lagged {
                    lagged(*missed);
                    return true;
                }
                if let Some(fallback) = &mut self.unhandled {
                    fallback(message);
                }
                return false;
            }
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

    /// Receives from `subscriber` and dispatches until the broker is gone
    /// (or the subscriber was evicted by
    /// [`Overflow::Disconnect`](crate::Overflow::Disconnect)) and the queue
    /// is drained.
    ///
    /// A handler that holds a [`Broker`](crate::Broker) clone keeps the
    /// broker alive, so this loop would never end: use
    /// [`run_until`](Dispatcher::run_until) or
    /// [`spawn`](Dispatcher::spawn), which a [`Stopper`] ends.
    pub fn run(&mut self, subscriber: &Subscriber<P>) -> RunReport {
        let mut handled = 0;
        loop {
            match subscriber.recv() {
                Ok(message) => handled += usize::from(self.dispatch(&message)),
                Err(end) => {
                    let ended = match end {
                        crate::RecvError::Overflowed => Ended::Overflowed,
                        crate::RecvError::Disconnected => Ended::Disconnected,
                    };
                    return RunReport { ended, handled };
                }
            }
        }
    }

    /// Like [`run`](Dispatcher::run), and also ends when `stopper` is
    /// stopped, after the handler running at that moment returns (items
    /// still queued stay in the subscriber). The loop sleeps in
    /// `select!` on the subscriber's [readiness](Subscriber::ready) and the
    /// stop signal: no polling, no timeout.
    ///
    /// ```
    /// use std::thread;
    /// use channelcast::{Broker, Dispatcher, Ended, Stopper};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// let stopper = Stopper::new();
    /// let echo = broker.clone(); // held by a handler: the broker never goes away
    /// let mut dispatcher = Dispatcher::new();
    /// dispatcher.on_channel("ping", move |_| { echo.publish("pong", "!"); });
    /// dispatcher.subscribe(&sub)?;
    ///
    /// let pongs = broker.subscriber();
    /// pongs.subscribe(["pong"])?;
    /// pongs.recv()?; // the confirmation
    /// let stop = stopper.clone();
    /// let loop_thread = thread::spawn(move || dispatcher.run_until(&sub, &stop));
    /// broker.publish("ping", "?");
    /// pongs.recv()?;
    /// stopper.stop();
    /// let report = loop_thread.join().unwrap();
    /// assert_eq!((report.ended, report.handled), (Ended::Stopped, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_until(&mut self, subscriber: &Subscriber<P>, stopper: &Stopper) -> RunReport {
        let mut handled = 0;
        let report = |ended, handled| RunReport { ended, handled };
        loop {
            // Drain what is queued, checking the signal between messages so
            // that a stop is prompt even under a flood.
            loop {
                if stopper.is_stopped() {
                    return report(Ended::Stopped, handled);
                }
                match subscriber.try_recv() {
                    Ok(message) => handled += usize::from(self.dispatch(&message)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return report(Ended::Disconnected, handled),
                    Err(TryRecvError::Overflowed) => return report(Ended::Overflowed, handled),
                }
            }
            // Sleep until something may be queued or the signal fires. The
            // readiness handle keeps a token for any push since it was last
            // waited on, so nothing queued after the drain is missed.
            select! {
                recv(stopper.signal()) -> _ => return report(Ended::Stopped, handled),
                recv(subscriber.ready()) -> _ => {}
            }
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Dispatcher<'static, P> {
    /// Runs this table on `subscriber` in a new thread (redis-py's
    /// `run_in_thread`), as [`run_until`](Dispatcher::run_until) does, and
    /// returns its handle: [`stop`](DispatcherThread::stop) it from anywhere
    /// and [`join`](DispatcherThread::join) it for the [`RunReport`].
    /// Subscribe first ([`subscribe`](Dispatcher::subscribe)).
    ///
    /// Dropping the handle stops the thread (without waiting for it), so a
    /// forgotten dispatcher whose handlers hold a `Broker` does not run
    /// forever.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use channelcast::{Broker, Dispatcher, Ended};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscriber();
    /// let (seen_tx, seen) = mpsc::channel();
    /// let mut dispatcher = Dispatcher::new();
    /// dispatcher.on_pattern("alert.*", move |msg| {
    ///     seen_tx.send(msg.channel().unwrap().to_string()).unwrap();
    /// });
    /// dispatcher.subscribe(&sub)?;
    /// let thread = dispatcher.spawn(sub);
    ///
    /// broker.publish("alert.disk", "full");
    /// assert_eq!(seen.recv()?, "alert.disk");
    /// thread.stop();
    /// let report = thread.join();
    /// assert_eq!((report.ended, report.handled), (Ended::Stopped, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When the operating system cannot create a thread.
    pub fn spawn(mut self, subscriber: Subscriber<P>) -> DispatcherThread {
        let stopper = Stopper::new();
        let stop = stopper.clone();
        let handle = thread::Builder::new()
            .name("channelcast-dispatcher".into())
            .spawn(move || self.run_until(&subscriber, &stop))
            .expect("failed to spawn the dispatcher thread");
        DispatcherThread {
            stopper,
            handle: Some(handle),
        }
    }
}

/// Why a dispatcher loop ended; see [`RunReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ended {
    /// A [`Stopper`] (or [`DispatcherThread::stop`]) stopped it.
    Stopped,
    /// Every [`Broker`](crate::Broker) handle is gone and the queue was
    /// drained.
    Disconnected,
    /// The subscriber was evicted by
    /// [`Overflow::Disconnect`](crate::Overflow::Disconnect); its queue was
    /// drained, the final [`Message::Lagged`] included.
    Overflowed,
}

/// What a dispatcher loop did: why it ended, and how many items a handler
/// ran for (deliveries with a handler of their own, and lag reports when an
/// [`on_lagged`](Dispatcher::on_lagged) handler is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunReport {
    /// Why the loop ended.
    pub ended: Ended,
    /// How many items a handler ran for.
    pub handled: usize,
}

/// A dispatcher running in a thread of its own, from [`Dispatcher::spawn`].
/// Dropping it stops the thread without waiting for it.
#[derive(Debug)]
#[must_use = "dropping a DispatcherThread stops it"]
pub struct DispatcherThread {
    stopper: Stopper,
    /// `None` once joined.
    handle: Option<JoinHandle<RunReport>>,
}

impl DispatcherThread {
    /// Asks the thread to stop after the handler it is running (if any);
    /// does not wait. Call [`join`](DispatcherThread::join) to wait.
    pub fn stop(&self) {
        self.stopper.stop();
    }

    /// A clone of the thread's stop signal, to stop it from elsewhere (or to
    /// stop other loops together with it).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Whether the loop has ended (stopped, disconnected or evicted).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// Waits for the thread to end (it ends by itself when the broker is
    /// gone or the subscriber evicted; otherwise [`stop`](DispatcherThread::stop)
    /// it first) and returns its report.
    ///
    /// # Panics
    ///
    /// Re-raises a panic of a handler on the calling thread.
    pub fn join(mut self) -> RunReport {
        let handle = self.handle.take().expect("joined only once");
        match handle.join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for DispatcherThread {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stopper.stop();
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Default for Dispatcher<'_, P> {
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
            .field("lagged", &self.lagged.is_some())
            .finish()
    }
}
