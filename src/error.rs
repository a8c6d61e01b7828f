//! The public error types, one per operation.

use thiserror::Error;

/// Why [`Subscriber::recv`](crate::Subscriber::recv) returned no message:
/// nothing can ever arrive again, and everything queued has been received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum RecvError {
    /// Every [`Broker`](crate::Broker) handle is gone.
    #[error("the broker is gone and every queued message has been received")]
    Disconnected,
    /// The subscriber overflowed its queue under
    /// [`Overflow::Disconnect`](crate::Overflow::Disconnect) and was
    /// unsubscribed from everything.
    #[error("disconnected for overflowing its queue (Overflow::Disconnect); every message queued before has been received")]
    Overflowed,
}

/// Why [`Subscriber::try_recv`](crate::Subscriber::try_recv) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TryRecvError {
    /// Nothing is queued right now.
    #[error("no message is queued")]
    Empty,
    /// Every broker handle is gone and the queue is drained.
    #[error("the broker is gone and every queued message has been received")]
    Disconnected,
    /// Disconnected for overflow, and the queue is drained.
    #[error("disconnected for overflowing its queue (Overflow::Disconnect); every message queued before has been received")]
    Overflowed,
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
    /// Disconnected for overflow, and the queue is drained.
    #[error("disconnected for overflowing its queue (Overflow::Disconnect); every message queued before has been received")]
    Overflowed,
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
    /// The subscriber was disconnected for overflowing its queue
    /// ([`Overflow::Disconnect`](crate::Overflow::Disconnect)); create a new one.
    #[error("this subscriber was disconnected for overflowing its queue: create a new one")]
    Overflowed,
}

/// Why an `unsubscribe`, `punsubscribe` or `sunsubscribe` call did nothing:
/// the subscriptions are already gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum UnsubscribeError {
    /// The call named no channel or pattern. Redis's argument-less form
    /// ("all") is `unsubscribe_all` and friends, so that an empty computed
    /// list never releases everything by accident.
    #[error("unsubscribe needs at least one name; use unsubscribe_all() to release everything")]
    NoNames,
    /// Every [`Broker`](crate::Broker) handle is gone, and with it every
    /// subscription.
    #[error("the broker is gone: its subscriptions went with it")]
    BrokerClosed,
    /// The subscriber was disconnected for overflowing its queue, which
    /// removed every subscription.
    #[error("this subscriber was disconnected for overflowing its queue: it holds nothing")]
    Overflowed,
}

impl From<RecvError> for TryRecvError {
    fn from(error: RecvError) -> Self {
        match error {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Overflowed => TryRecvError::Overflowed,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(error: RecvError) -> Self {
        match error {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Overflowed => RecvTimeoutError::Overflowed,
        }
    }
}

impl From<UnsubscribeError> for SubscribeError {
    fn from(error: UnsubscribeError) -> Self {
        match error {
            UnsubscribeError::BrokerClosed => SubscribeError::BrokerClosed,
            UnsubscribeError::Overflowed => SubscribeError::Overflowed,
            UnsubscribeError::NoNames => SubscribeError::NoNames,
        }
    }
}
