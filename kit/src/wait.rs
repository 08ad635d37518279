//! Waiting for a condition by polling it with a deadline, never by a fixed sleep.
//!
//! Invariant: a check is polled every 20 ms until it yields a value or the deadline passes;
//! the first check runs at once. Owns only the loop: it must not interpret what it waits for.

use std::time::{Duration, Instant};

use crate::KitError;

/// Polls `check` every 20 ms until it returns `Some`, or fails with `KitError::Timeout` naming
/// `what` after `timeout`.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, KitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(KitError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`poll`] for tests and benchmarks: panics with "timed out after … waiting for `what`".
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    match poll(what, timeout, check) {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}
