//! The supervisor: a task that panics or stops while its term goes on is restarted and
//! reported; one that ends with its term is not.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Supervises a task whose first run fails as `fail` does and whose second runs until
/// leadership ends; returns how often it started and what readiness said meanwhile.
async fn supervised_after(fail: fn()) -> (usize, Option<String>) {
    let health = crate::dispatch::health::DispatchHealth::default();
    health.dispatching(7);
    let starts = Arc::new(AtomicUsize::new(0));
    let leading = Arc::new(AtomicBool::new(true));
    let task = {
        let (starts, leading) = (starts.clone(), leading.clone());
        move || {
            let (starts, leading) = (starts.clone(), leading.clone());
            async move {
                if starts.fetch_add(1, Ordering::SeqCst) == 0 {
                    fail();
                    return;
                }
                while leading.load(Ordering::SeqCst) {
                    tokio::time::sleep(StdDuration::from_millis(5)).await;
                }
            }
        }
    };
    let probe = {
        let (health, starts, leading) = (health.clone(), starts.clone(), leading.clone());
        async move {
            while starts.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            let reported = health.not_dispatching_because(7);
            leading.store(false, Ordering::SeqCst);
            reported
        }
    };
    let still_leading = {
        let leading = leading.clone();
        move || leading.load(Ordering::SeqCst)
    };
    let (_, reported) = tokio::join!(supervise(still_leading, &health, "planner", task), probe);
    (starts.load(Ordering::SeqCst), reported)
}

#[tokio::test]
async fn a_task_that_panics_while_leading_is_restarted_and_reported() {
    let (starts, reported) = supervised_after(|| panic!("planner bug")).await;
    assert_eq!(starts, 2, "started, then restarted once");
    let reported = reported.expect("reported while restarting");
    assert!(
        reported.contains("planner") && reported.contains("panicked: planner bug"),
        "{reported}"
    );
}

#[tokio::test]
async fn a_task_that_stops_while_leading_is_restarted_and_reported() {
    let (starts, reported) = supervised_after(|| {}).await;
    assert_eq!(starts, 2, "started, then restarted once");
    assert!(reported.expect("reported").contains("stopped by itself"));
}

#[tokio::test]
async fn a_task_ending_with_its_term_is_not_restarted() {
    let health = crate::dispatch::health::DispatchHealth::default();
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    supervise(
        || false,
        &health,
        "pusher",
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        },
    )
    .await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    health.dispatching(1);
    assert_eq!(health.not_dispatching_because(1), None);
}
