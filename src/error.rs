//! The public error types, one per operation.

use thiserror::Error;

/// Why [`Subscriber::recv`](crate::Subscriber::recv) returned no message:
/// every [`Broker`](crate::Broker) handle is gone and the queue is drained,
/// so nothing can ever arrive again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("the broker is gone and every queued message has been received")]
pub struct RecvError;

/// Why [`Subscriber::try_recv`](crate::Subscriber::try_recv) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TryRecvError {
    /// Nothing is queued right now.
    #[error("no message is queued")]
    Empty,
    /// Every broker handle is gone and the queue is drained.
    #[error("the broker is gone and every queued message has been received")]
    Disconnected,
}

/// Why [`Subscriber::recv_timeout`](crate::Subscriber::recv_timeout) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    #[error("no message arrived before the timeout")]
    Timeout,
    /// Every broker handle is gone and the queue is drained.
    #[error("the broker is gone and every queued message has been received")]
    Disconnected,
}

/// Why a `subscribe`, `psubscribe` or `ssubscribe` call did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The call named no channel or pattern. Redis answers this with
    /// "wrong number of arguments"; pass at least one name.
    #[error("subscribe needs at least one name (Redis: wrong number of arguments)")]
    NoNames,
    /// Every [`Broker`](crate::Broker) handle is gone: there is nothing to
    /// subscribe to any more.
    #[error("the broker is gone: keep a Broker handle alive while subscribing")]
    BrokerClosed,
}

/// Why an `unsubscribe`, `punsubscribe` or `sunsubscribe` call did nothing:
/// every [`Broker`](crate::Broker) handle is gone, and with it every
/// subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("the broker is gone: its subscriptions went with it")]
pub struct BrokerClosed;

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        TryRecvError::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        RecvTimeoutError::Disconnected
    }
}

impl From<BrokerClosed> for SubscribeError {
    fn from(_: BrokerClosed) -> Self {
        SubscribeError::BrokerClosed
    }
}
