//! The hasher every internal map uses, and the rule that gives a map's (or a
//! list's) memory back once it is mostly empty.

use std::collections::{HashMap, HashSet};

/// The fast, randomly seeded hasher of every internal map.
pub(crate) type Hasher = foldhash::fast::RandomState;
pub(crate) type FastMap<K, V> = HashMap<K, V, Hasher>;
pub(crate) type FastSet<K> = HashSet<K, Hasher>;

/// Gives a map's memory back once it is mostly empty, so a burst of names
/// does not pin its peak capacity for the broker's lifetime. Halving only at
/// a quarter full keeps the cost amortized O(1) per removal. An empty map
/// keeps nothing: a broker has many lock stripes, each with its own map,
/// and a name that came and went must not leave a table behind in each.
pub(crate) fn shrink_when_sparse<T: Sparse>(map: &mut T) {
    if map.len() == 0 {
        if map.capacity() != 0 {
            map.shrink_to(0);
        }
    } else if map.capacity() > 16 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// The maps and sets `shrink_when_sparse` serves.
pub(crate) trait Sparse {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, capacity: usize);
}

impl<K: std::hash::Hash + Eq, V> Sparse for FastMap<K, V> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn capacity(&self) -> usize {
        HashMap::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        HashMap::shrink_to(self, capacity);
    }
}

impl<T> Sparse for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        Vec::shrink_to(self, capacity);
    }
}

impl<K: std::hash::Hash + Eq> Sparse for FastSet<K> {
    fn len(&self) -> usize {
        HashSet::len(self)
    }
    fn capacity(&self) -> usize {
        HashSet::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        HashSet::shrink_to(self, capacity);
    }
}
