//! `WriteOnce`: a slot that one writer fills once and any number of
//! readers then read without locks: the slots of a channel log.
//!
//! `std::sync::OnceLock` does the same for any number of writers, so its
//! `set` takes two read-modify-write operations (claim, then complete) and
//! checks for threads blocked on the slot. A log's slot has one writer
//! (the log's writing end, under the channel's lock) and readers that never
//! wait on it, so here filling it is a plain write and a release store, and
//! reading it an acquire load: measured on a fan-out to 10 subscribers in
//! one thread, the `OnceLock` took about 4% of the time per delivery.
//!
//! The one `unsafe` operation is [`WriteOnce::write`]: its caller promises
//! that the slot is written once at most, by one thread. Everything else is
//! safe to call. The module's tests run under Miri in CI (`.ci/run`).

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;

use self::sync::{AtomicBool, UnsafeCell};

/// The cell and the flag: std's, or loom's for the model test
/// (`--cfg channelcast_loom`, which `.ci/run` uses where Miri cannot be
/// installed). Both give the cell's pointer only inside a closure, as loom
/// needs to see each access.
#[cfg(not(channelcast_loom))]
mod sync {
    pub(super) use std::sync::atomic::AtomicBool;

    #[derive(Debug)]
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        pub(super) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(channelcast_loom)]
mod sync {
    pub(super) use loom::cell::UnsafeCell;
    pub(super) use loom::sync::atomic::AtomicBool;
}

/// A slot written once, then read by any thread.
pub(crate) struct WriteOnce<T> {
    /// Set, with release ordering, once `value` is initialized; never
    /// cleared while the slot lives.
    ready: AtomicBool,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: a `WriteOnce<T>` owns its `T` (moved in by `write`, dropped with
// the slot, possibly on another thread: `T: Send`) and hands out `&T` to
// any thread through `get` (`T: Sync`). The cell's one write happens before
// any read of it: readers only read after seeing `ready` (acquire), which
// the writer sets (release) after the write, and the write happens once at
// most (the contract of `write`), so no thread reads while another writes.
unsafe impl<T: Send + Sync> Sync for WriteOnce<T> {}

impl<T> WriteOnce<T> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        WriteOnce {
            ready: AtomicBool::new(false),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Fills the slot; readers see the value from then on.
    ///
    /// # Safety
    ///
    /// The slot is written at most once in its life, and by one thread:
    /// no other call of `write` on this slot, before, after or at the same
    /// time. (A log writes slot `n` of a segment once, from its one writing
    /// end, and then moves on.)
    #[inline]
    pub(crate) unsafe fn write(&self, value: T) {
        debug_assert!(
            !self.ready.load(Ordering::Relaxed),
            "a write-once slot written twice"
        );
        // SAFETY: no reader touches `value` before `ready` is set (below,
        // after this write), and by the caller's promise no other writer
        // does, ever: this is the only access to the cell right now.
        self.value.with_mut(|cell| unsafe { (*cell).write(value) });
        self.ready.store(true, Ordering::Release);
    }

    /// The value, once written.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        if self.ready.load(Ordering::Acquire) {
            // SAFETY: `ready` is set only after the value was written
            // (release, paired with this acquire), and the value is never
            // written again nor dropped while `&self` lives: a shared
            // reference to it is valid for as long as `&self` is.
            Some(self.value.with(|cell| unsafe { (*cell).assume_init_ref() }))
        } else {
            None
        }
    }

    /// Whether the slot was written.
    #[inline]
    pub(crate) fn is_written(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl<T> Default for WriteOnce<T> {
    fn default() -> Self {
        WriteOnce::new()
    }
}

impl<T> Drop for WriteOnce<T> {
    fn drop(&mut self) {
        // `&mut self`: every other thread's access happened before this.
        if self.ready.load(Ordering::Acquire) {
            // SAFETY: `&mut self`: nobody else can read or write the slot,
            // and `ready` says the value was initialized; it is dropped
            // once, here, as the slot goes.
            self.value
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for WriteOnce<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(value) => f.debug_tuple("WriteOnce").field(value).finish(),
            None => f.write_str("WriteOnce(<empty>)"),
        }
    }
}

#[cfg(all(test, not(channelcast_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn empty_until_written_then_the_value() {
        let slot: WriteOnce<String> = WriteOnce::new();
        assert!(slot.get().is_none());
        assert!(!slot.is_written());
        // SAFETY: the only write of this slot.
        unsafe { slot.write("hello".to_owned()) };
        assert_eq!(slot.get().map(String::as_str), Some("hello"));
        assert!(slot.is_written());
        assert_eq!(format!("{slot:?}"), "WriteOnce(\"hello\")");
    }

    #[test]
    fn drops_its_value_once_and_an_empty_slot_drops_nothing() {
        let value = Arc::new(5);
        {
            let slot = WriteOnce::new();
            // SAFETY: the only write of this slot.
            unsafe { slot.write(Arc::clone(&value)) };
            assert_eq!(Arc::strong_count(&value), 2);
        }
        assert_eq!(Arc::strong_count(&value), 1, "dropped with the slot");
        let empty: WriteOnce<Arc<u32>> = WriteOnce::new();
        assert_eq!(format!("{empty:?}"), "WriteOnce(<empty>)");
        drop(empty);
    }

    #[test]
    fn readers_on_other_threads_see_all_of_the_value_or_nothing() {
        // Under Miri this checks the release/acquire pairing: a reader that
        // sees the slot written must see the whole vector.
        let slots: Arc<Vec<WriteOnce<Vec<u64>>>> =
            Arc::new((0..8).map(|_| WriteOnce::new()).collect());
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let slots = Arc::clone(&slots);
                std::thread::spawn(move || {
                    let mut seen = 0;
                    for _ in 0..200 {
                        for (i, slot) in slots.iter().enumerate() {
                            if let Some(value) = slot.get() {
                                assert_eq!(value, &vec![i as u64; 4]);
                                seen += 1;
                            }
                        }
                        std::thread::yield_now();
                    }
                    seen
                })
            })
            .collect();
        for (i, slot) in slots.iter().enumerate() {
            // SAFETY: each slot is written once, by this thread only.
            unsafe { slot.write(vec![i as u64; 4]) };
        }
        for reader in readers {
            reader.join().expect("the reader saw whole values only");
        }
        assert!(slots.iter().all(WriteOnce::is_written));
    }

    #[test]
    fn the_last_holder_drops_the_value_on_its_thread() {
        let value = Arc::new(());
        let slot = Arc::new(WriteOnce::new());
        // SAFETY: the only write of this slot.
        unsafe { slot.write(Arc::clone(&value)) };
        let other = Arc::clone(&slot);
        std::thread::spawn(move || {
            assert!(other.get().is_some());
            drop(other);
        })
        .join()
        .expect("the reader thread");
        drop(slot);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}

/// The model test: every interleaving loom finds of one writer and a
/// reader (the slot shared through loom's `Arc`), checked for data races
/// and for a reader that sees a written slot without its whole value.
#[cfg(all(test, channelcast_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn a_reader_sees_the_whole_value_or_nothing() {
        loom::model(|| {
            let slot = Arc::new(WriteOnce::new());
            let reader = {
                let slot = Arc::clone(&slot);
                loom::thread::spawn(move || slot.get().map(|value: &Vec<u32>| value.clone()))
            };
            // SAFETY: the only write of this slot.
            unsafe { slot.write(vec![1, 2, 3]) };
            let seen = reader.join().expect("the reader");
            assert!(seen.is_none() || seen == Some(vec![1, 2, 3]));
            assert_eq!(slot.get(), Some(&vec![1, 2, 3]));
        });
    }

    #[test]
    fn the_value_is_dropped_once_by_the_last_holder() {
        loom::model(|| {
            let value = Arc::new(7u8);
            let slot = Arc::new(WriteOnce::new());
            // SAFETY: the only write of this slot.
            unsafe { slot.write(Arc::clone(&value)) };
            let other = Arc::clone(&slot);
            let reader = loom::thread::spawn(move || {
                assert_eq!(other.get().map(|v| **v), Some(7));
            });
            drop(slot);
            reader.join().expect("the reader");
            assert_eq!(Arc::strong_count(&value), 1);
        });
    }
}
