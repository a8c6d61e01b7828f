//! `Held`: the names one subscriber holds, in each of Redis's three
//! namespaces, and the confirmations that report changes to them.

use crate::fast_hash::FastSet;
use crate::{Message, Name};

/// The three namespaces a subscriber can hold names in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Channel,
    Pattern,
    Shard,
}

impl Family {
    /// The confirmation of subscribing to `name`, with the running count.
    pub(crate) fn subscribed<P>(self, name: Name, count: usize) -> Message<P> {
        match self {
            Family::Channel => Message::Subscribe {
                channel: name,
                count,
            },
            Family::Pattern => Message::PSubscribe {
                pattern: name,
                count,
            },
            Family::Shard => Message::SSubscribe {
                channel: name,
                count,
            },
        }
    }

    /// The confirmation of unsubscribing from `name` (`None`: an
    /// unsubscribe-all that found nothing), with the running count.
    pub(crate) fn unsubscribed<P>(self, name: Option<Name>, count: usize) -> Message<P> {
        match self {
            Family::Channel => Message::Unsubscribe {
                channel: name,
                count,
            },
            Family::Pattern => Message::PUnsubscribe {
                pattern: name,
                count,
            },
            Family::Shard => Message::SUnsubscribe {
                channel: name,
                count,
            },
        }
    }
}

/// A subscriber's names in each namespace.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) channels: FastSet<Name>,
    pub(crate) patterns: FastSet<Name>,
    pub(crate) shards: FastSet<Name>,
}

impl Held {
    pub(crate) fn set(&mut self, family: Family) -> &mut FastSet<Name> {
        match family {
            Family::Channel => &mut self.channels,
            Family::Pattern => &mut self.patterns,
            Family::Shard => &mut self.shards,
        }
    }

    /// The count Redis reports for `family`: channels + patterns share one
    /// count, shard channels have their own.
    pub(crate) fn count(&self, family: Family) -> usize {
        match family {
            Family::Channel | Family::Pattern => self.channels.len() + self.patterns.len(),
            Family::Shard => self.shards.len(),
        }
    }

    /// Every name held, in all three namespaces.
    pub(crate) fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shards.len()
    }

    /// Every name held in `family`, in byte order (the documented order of
    /// an unsubscribe-all).
    pub(crate) fn in_order(&mut self, family: Family) -> Vec<Name> {
        let mut names: Vec<Name> = self.set(family).iter().cloned().collect();
        names.sort_unstable();
        names
    }
}
