//! `Members`: the queue-fed subscribers of one name, and what few names need
//! beside them, in 16 bytes.
//!
//! Most channels and patterns have one subscriber and nothing else; a name's
//! entry in the channel maps is paid once per subscription, so the list
//! keeps one member inline and boxes a vector only for two or more members,
//! or when the name needs its rarer parts (`X`: a count of blocking
//! subscribers, a channel log). A `SmallVec` with one inline slot takes 24
//! bytes, and a separate `Option<Box<X>>` 8 more.

use crate::fast_hash::shrink_when_sparse;

/// The rarer parts kept beside a list: `Default` is "nothing", and a list
/// whose parts are unused goes back inline.
pub(crate) trait Rare: Default {
    /// Whether these parts hold nothing (they are then dropped).
    fn is_unused(&self) -> bool;
}

/// A small list: empty, one member inline, or boxed with the rarer parts
/// (two or more members, or any number with parts in use).
#[derive(Debug, Default)]
pub(crate) enum Members<T, X> {
    #[default]
    None,
    One(T),
    Boxed(Box<Boxed<T, X>>),
}

/// The boxed form: the members and the rarer parts.
#[derive(Debug)]
pub(crate) struct Boxed<T, X> {
    list: Vec<T>,
    rare: X,
}

impl<T, X: Rare> Members<T, X> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Members::None => &[],
            Members::One(member) => std::slice::from_ref(member),
            Members::Boxed(boxed) => &boxed.list,
        }
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The rarer parts, when the list is boxed (they may then be unused,
    /// when it is boxed for its two or more members).
    pub(crate) fn rare(&self) -> Option<&X> {
        match self {
            Members::Boxed(boxed) => Some(&boxed.rare),
            _ => None,
        }
    }

    /// The rarer parts, when any are kept (boxed).
    pub(crate) fn rare_mut(&mut self) -> Option<&mut X> {
        match self {
            Members::Boxed(boxed) => Some(&mut boxed.rare),
            _ => None,
        }
    }

    /// The rarer parts, boxed first if they were not kept. Call
    /// [`tidy`](Members::tidy) after a change that may leave them unused.
    pub(crate) fn rare_or_default(&mut self) -> &mut X {
        if !matches!(self, Members::Boxed(_)) {
            let list = match std::mem::take(self) {
                Members::None => Vec::new(),
                Members::One(member) => vec![member],
                Members::Boxed(_) => unreachable!("matched above"),
            };
            *self = Members::Boxed(Box::new(Boxed {
                list,
                rare: X::default(),
            }));
        }
        match self {
            Members::Boxed(boxed) => &mut boxed.rare,
            _ => unreachable!("boxed above"),
        }
    }

    /// Goes back inline when the rarer parts are unused and at most one
    /// member is left.
    pub(crate) fn tidy(&mut self) {
        let Members::Boxed(boxed) = self else {
            return;
        };
        if !boxed.rare.is_unused() || boxed.list.len() > 1 {
            shrink_when_sparse(&mut boxed.list);
            return;
        }
        *self = match boxed.list.pop() {
            Some(member) => Members::One(member),
            None => Members::None,
        };
    }

    pub(crate) fn push(&mut self, member: T) {
        match self {
            Members::None => *self = Members::One(member),
            Members::One(_) => {
                let Members::One(first) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                *self = Members::Boxed(Box::new(Boxed {
                    list: vec![first, member],
                    rare: X::default(),
                }));
            }
            Members::Boxed(boxed) => boxed.list.push(member),
        }
    }

    /// Removes the member at `at` (the last one takes its place).
    ///
    /// # Panics
    ///
    /// If `at` is out of bounds.
    pub(crate) fn swap_remove(&mut self, at: usize) -> T {
        match self {
            Members::None => panic!("swap_remove on an empty list"),
            Members::One(_) => {
                assert_eq!(at, 0, "swap_remove out of bounds");
                let Members::One(member) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                member
            }
            Members::Boxed(boxed) => {
                let removed = boxed.list.swap_remove(at);
                self.tidy();
                removed
            }
        }
    }
}

impl<T: Clone, X: Rare> Members<T, X> {
    /// A copy of the members, with the rarer parts `rare` makes of these.
    pub(crate) fn clone_with(&self, rare: impl FnOnce(Option<&X>) -> X) -> Self {
        let mut copy = match self {
            Members::None => Members::None,
            Members::One(member) => Members::One(member.clone()),
            Members::Boxed(boxed) => Members::Boxed(Box::new(Boxed {
                list: boxed.list.clone(),
                rare: X::default(),
            })),
        };
        let made = rare(self.rare());
        if !made.is_unused() {
            *copy.rare_or_default() = made;
        }
        copy.tidy();
        copy
    }
}

impl<'a, T, X: Rare> IntoIterator for &'a Members<T, X> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Count(u32);

    impl Rare for Count {
        fn is_unused(&self) -> bool {
            self.0 == 0
        }
    }

    #[test]
    fn behaves_as_a_list_with_swap_remove_and_rare_parts() {
        let mut members: Members<u32, Count> = Members::default();
        let mut model: Vec<u32> = Vec::new();
        let mut rare = 0u32;
        let mut seed = 7u32;
        for step in 0..20_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            match seed % 7 {
                0 if !model.is_empty() => {
                    let at = (seed as usize / 7) % model.len();
                    assert_eq!(members.swap_remove(at), model.swap_remove(at));
                }
                1 => {
                    members.rare_or_default().0 += 1;
                    rare += 1;
                }
                2 if rare > 0 => {
                    members.rare_mut().expect("kept while in use").0 -= 1;
                    rare -= 1;
                    members.tidy();
                }
                _ if model.len() < 8 => {
                    members.push(step);
                    model.push(step);
                }
                _ => {}
            }
            assert_eq!(members.as_slice(), &model[..]);
            assert_eq!(members.len(), model.len());
            assert_eq!(members.is_empty(), model.is_empty());
            assert_eq!(members.rare().map_or(0, |count| count.0), rare);
            assert_eq!(
                matches!(members, Members::Boxed(_)),
                model.len() > 1 || rare > 0,
                "boxed only when needed"
            );
            let copy = members.clone_with(|_| Count(0));
            assert_eq!(copy.as_slice(), &model[..]);
            assert_eq!(matches!(copy, Members::Boxed(_)), model.len() > 1);
        }
        assert_eq!(
            std::mem::size_of::<Members<std::sync::Arc<u8>, Count>>(),
            16
        );
    }
}
