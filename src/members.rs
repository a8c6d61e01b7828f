//! `Members`: the queue-fed subscribers of one name, in 16 bytes.
//!
//! Most channels and patterns have one subscriber; a name's entry in the
//! channel maps is paid once per subscription, so the list keeps one member
//! inline and boxes a vector only for two or more (a `SmallVec` with one
//! inline slot takes 24 bytes).

use crate::fast_hash::shrink_when_sparse;

/// A small list: empty, one member inline, or a boxed vector of two or more.
#[derive(Clone, Debug, Default)]
pub(crate) enum Members<T> {
    #[default]
    None,
    One(T),
    #[allow(clippy::box_collection)] // one pointer where a `Vec` is three
    Many(Box<Vec<T>>),
}

impl<T> Members<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Members::None => &[],
            Members::One(member) => std::slice::from_ref(member),
            Members::Many(members) => members,
        }
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Members::None)
    }

    pub(crate) fn push(&mut self, member: T) {
        *self = match std::mem::take(self) {
            Members::None => Members::One(member),
            Members::One(first) => Members::Many(Box::new(vec![first, member])),
            Members::Many(mut members) => {
                members.push(member);
                Members::Many(members)
            }
        };
    }

    /// Removes the member at `at` (the last one takes its place).
    ///
    /// # Panics
    ///
    /// If `at` is out of bounds.
    pub(crate) fn swap_remove(&mut self, at: usize) -> T {
        match std::mem::take(self) {
            Members::None => panic!("swap_remove on an empty list"),
            Members::One(member) => {
                assert_eq!(at, 0, "swap_remove out of bounds");
                member
            }
            Members::Many(mut members) => {
                let removed = members.swap_remove(at);
                *self = if members.len() == 1 {
                    Members::One(members.pop().expect("one left"))
                } else {
                    shrink_when_sparse(&mut *members);
                    Members::Many(members)
                };
                removed
            }
        }
    }
}

impl<'a, T> IntoIterator for &'a Members<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_list_with_swap_remove() {
        let mut members: Members<u32> = Members::default();
        let mut model: Vec<u32> = Vec::new();
        let mut seed = 7u32;
        for step in 0..10_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if model.is_empty() || seed % 3 != 0 {
                members.push(step);
                model.push(step);
            } else {
                let at = (seed as usize / 3) % model.len();
                assert_eq!(members.swap_remove(at), model.swap_remove(at));
            }
            assert_eq!(members.as_slice(), &model[..]);
            assert_eq!(members.len(), model.len());
            assert_eq!(members.is_empty(), model.is_empty());
            assert_eq!(
                matches!(members, Members::One(_)),
                model.len() == 1,
                "one member is kept inline"
            );
        }
        assert_eq!(std::mem::size_of::<Members<std::sync::Arc<u8>>>(), 16);
    }
}
