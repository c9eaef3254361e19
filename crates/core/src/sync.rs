//! Lock helpers shared by every crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poisoning. For the engine's locks, each held for a push, a pop or a
/// single assignment: a thread that panicked elsewhere cannot have left the data half-written,
/// so the rest of the server keeps using it instead of panicking in turn.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
