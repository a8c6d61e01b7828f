//! `Held`: the names one subscriber holds, in each of Redis's three
//! namespaces, and the confirmations that report changes to them.

use crate::fast_hash::{shrink_when_sparse, FastSet};
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

/// A subscriber's names in each namespace. The sets are made on the first
/// subscription and freed when the last name goes, so a subscriber that
/// holds nothing pays a pointer.
#[derive(Debug, Default)]
pub(crate) struct Held {
    sets: Option<Box<Sets>>,
}

/// The names themselves, one set per namespace.
#[derive(Debug, Default)]
pub(crate) struct Sets {
    pub(crate) channels: FastSet<Name>,
    pub(crate) patterns: FastSet<Name>,
    pub(crate) shards: FastSet<Name>,
}

impl Held {
    /// The set of `family`'s names (made if nothing was held).
    pub(crate) fn set(&mut self, family: Family) -> &mut FastSet<Name> {
        let sets = self.sets.get_or_insert_with(Box::default);
        match family {
            Family::Channel => &mut sets.channels,
            Family::Pattern => &mut sets.patterns,
            Family::Shard => &mut sets.shards,
        }
    }

    /// The count Redis reports for `family`: channels + patterns share one
    /// count, shard channels have their own.
    pub(crate) fn count(&self, family: Family) -> usize {
        self.sets.as_ref().map_or(0, |sets| match family {
            Family::Channel | Family::Pattern => sets.channels.len() + sets.patterns.len(),
            Family::Shard => sets.shards.len(),
        })
    }

    /// Every name held, in all three namespaces.
    pub(crate) fn total(&self) -> usize {
        self.sets.as_ref().map_or(0, |sets| {
            sets.channels.len() + sets.patterns.len() + sets.shards.len()
        })
    }

    /// Every name held in `family`, in byte order (the documented order of
    /// an unsubscribe-all).
    pub(crate) fn in_order(&mut self, family: Family) -> Vec<Name> {
        if self.sets.is_none() {
            return Vec::new();
        }
        let mut names: Vec<Name> = self.set(family).iter().cloned().collect();
        names.sort_unstable();
        names
    }

    /// After names were released: gives memory back (a mostly empty set
    /// shrinks; nothing held frees the sets).
    pub(crate) fn released(&mut self, family: Family) {
        if self.total() == 0 {
            self.sets = None;
        } else if self.sets.is_some() {
            shrink_when_sparse(self.set(family));
        }
    }

    /// Takes every name out (the subscriber is going away).
    pub(crate) fn take(&mut self) -> Sets {
        self.sets.take().map(|sets| *sets).unwrap_or_default()
    }
}
