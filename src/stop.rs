//! `Stopper`: a stop signal that receive loops wait on next to a subscriber.

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

/// A stop signal for receive loops, shared by cloning: any clone's
/// [`stop`](Stopper::stop) stops every loop that watches any clone.
///
/// It stops [`Dispatcher::run_until`](crate::Dispatcher::run_until) and
/// [`DispatcherThread`](crate::DispatcherThread)s, and plain loops through
/// [`signal`](Stopper::signal), a crossbeam receiver that becomes ready
/// (disconnected) once stopped and stays so: wait on it in `select!` next
/// to [`Subscriber::ready`](crate::Subscriber::ready). Waiting costs nothing
/// while running (no timeout, no polling), and stopping works even when the
/// loop's thread holds a [`Broker`](crate::Broker) clone, which would keep
/// its subscriber from ever seeing the broker go.
///
/// ```
/// use std::thread;
/// use channelcast::crossbeam_channel::select;
/// use channelcast::{Broker, Stopper, TryRecvError};
///
/// let broker = Broker::new();
/// let sub = broker.subscriber();
/// sub.subscribe(["jobs"])?;
/// let stopper = Stopper::new();
///
/// let worker = {
///     let (stopper, broker) = (stopper.clone(), broker.clone()); // a clone: no disconnection to end on
///     thread::spawn(move || {
///         let mut done = 0;
///         loop {
///             select! {
///                 recv(stopper.signal()) -> _ => return done, // stopped
///                 recv(sub.ready()) -> _ => loop {
///                     match sub.try_recv() {
///                         Ok(msg) if msg.is_delivery() => {
///                             done += 1;
///                             broker.publish("done", "ok");
///                         }
///                         Ok(_) => {} // the confirmation
///                         Err(TryRecvError::Empty) => break,
///                         Err(_) => return done, // disconnected or evicted
///                     }
///                 },
///             }
///         }
///     })
/// };
/// let done = broker.subscriber();
/// done.subscribe(["done"])?;
/// done.recv()?;
/// broker.publish("jobs", "one");
/// done.recv()?; // the worker handled it
/// stopper.stop();
/// assert_eq!(worker.join().unwrap(), 1);
/// assert!(stopper.is_stopped());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Stopper {
    /// Dropped by `stop`: the receivers then see a disconnection, which is
    /// ready forever for every clone at once (a message would wake only
    /// one). Shared so that any clone can stop all of them.
    trigger: Arc<Mutex<Option<Sender<()>>>>,
    signal: Receiver<()>,
}

impl Stopper {
    /// A signal that is not stopped yet.
    pub fn new() -> Self {
        let (trigger, signal) = crossbeam_channel::bounded(0);
        Stopper {
            trigger: Arc::new(Mutex::new(Some(trigger))),
            signal,
        }
    }

    /// Stops every loop that watches this signal or a clone of it. Loops
    /// end after the message they are handling now; items still queued stay
    /// in their subscribers. Stopping twice is harmless.
    pub fn stop(&self) {
        self.trigger.lock().take();
    }

    /// Whether [`stop`](Stopper::stop) was called on this signal or a clone.
    pub fn is_stopped(&self) -> bool {
        matches!(self.signal.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// A receiver for `select!`: it never delivers a value, and is ready
    /// (with a "disconnected" error) from the moment the signal is stopped.
    pub fn signal(&self) -> &Receiver<()> {
        &self.signal
    }
}

impl Default for Stopper {
    fn default() -> Self {
        Stopper::new()
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}
