//! `SpinLock`: the lock of a stripe. One atomic operation to take it and a
//! plain store to release it (a parking mutex's release is a second atomic
//! operation, about 5 ns of a one-subscriber publish), and no thread starved
//! of it.
//!
//! A stripe is held only for bounded work, never while waiting, so a thread
//! that finds it taken spins, then yields, until it is free. A plain spin
//! lock is unfair, though: a thread that releases it and takes it again at
//! once (a loop over `Broker::stats`, say) keeps the lock's cache line and
//! wins nearly every time; when mailboxes had such a lock too, a loop over
//! `Subscriber::len` kept that subscriber's receiver waiting for seconds. So
//! a thread that has spun and yielded for a while without getting the lock
//! says so (`starving`), and from then on nobody else takes the lock
//! without first letting the starving threads have it.
//!
//! A mailbox keeps a parking mutex: its publisher and its receiver take it
//! from two threads, and there the spin lock made a one-subscriber stream
//! between two threads about 20% slower (in a throwaway driver of the
//! `one_to_one` loop), for 7% less in one thread.

use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;

/// A guard of a [`SpinLock`]; the lock is released when it is dropped.
pub(crate) type SpinGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

/// A spin lock that lets threads that have waited long go first.
pub(crate) struct SpinLock<T> {
    lock: spin::mutex::SpinMutex<T>,
    /// Threads that have waited for the lock through a whole backoff. While
    /// any does, other threads leave the lock to them (a hint: exclusion
    /// rests on `lock` alone).
    starving: AtomicU32,
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            lock: spin::mutex::SpinMutex::new(value),
            starving: AtomicU32::new(0),
        }
    }

    /// Takes the lock: one atomic operation when it is free and nobody is
    /// starving for it.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self.starving.load(Ordering::Relaxed) == 0 {
            if let Some(guard) = self.lock.try_lock() {
                return guard;
            }
        }
        self.lock_contended()
    }

    #[cold]
    fn lock_contended(&self) -> SpinGuard<'_, T> {
        // Politely: only while nobody starves for it.
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if self.starving.load(Ordering::Relaxed) == 0 {
                if let Some(guard) = self.lock.try_lock() {
                    return guard;
                }
            }
        }
        // Starving: the polite ones now leave it to this thread (and to
        // any other starving one).
        self.starving.fetch_add(1, Ordering::Relaxed);
        let backoff = Backoff::new();
        loop {
            if let Some(guard) = self.lock.try_lock() {
                self.starving.fetch_sub(1, Ordering::Relaxed);
                return guard;
            }
            backoff.snooze();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_counts_every_increment() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*lock.lock(), 200_000);
        assert_eq!(lock.starving.load(Ordering::Relaxed), 0);
    }
}
