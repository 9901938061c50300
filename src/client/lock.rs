//! The one way the client's tasks take a `std::sync::Mutex`.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the data if a holder ever panicked.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
