//! A value shared by the tests of one test binary (a cluster, a Redis), made on first use and
//! dropped when the binary exits, so that its processes do not outlive it.
//!
//! Invariant: the value is made at most once, and dropped at most once, at exit (`atexit`):
//! a drop that panics there is caught, since unwinding out of an exit handler aborts. Must not
//! be used for anything a test needs dropped earlier.

use std::sync::{Mutex, MutexGuard, Once, OnceLock};

/// What runs at exit, in registration order.
type Cleanup = Box<dyn FnOnce() + Send>;
static AT_EXIT: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());
static REGISTER: Once = Once::new();

extern "C" fn run_cleanups() {
    let cleanups = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for cleanup in cleanups {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(cleanup));
    }
}

/// A value made on first use and dropped at exit.
pub struct Shared<T> {
    cell: OnceLock<Mutex<Option<T>>>,
}

impl<T: Send + 'static> Shared<T> {
    pub const fn new() -> Self {
        Shared {
            cell: OnceLock::new(),
        }
    }

    /// The value, made by `init` if this is the first use. `None` once dropped at exit.
    pub fn get_or_init(&'static self, init: impl FnOnce() -> T) -> MutexGuard<'static, Option<T>> {
        let cell = self.cell.get_or_init(|| {
            let value = init();
            REGISTER.call_once(|| {
                // SAFETY: registers a plain `extern "C"` function with the C library, once.
                unsafe {
                    libc::atexit(run_cleanups);
                }
            });
            AT_EXIT
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Box::new(move || self.drop_value()));
            Mutex::new(Some(value))
        });
        cell.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_value(&'static self) {
        if let Some(cell) = self.cell.get() {
            let value = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(value);
        }
    }
}

impl<T: Send + 'static> Default for Shared<T> {
    fn default() -> Self {
        Self::new()
    }
}
