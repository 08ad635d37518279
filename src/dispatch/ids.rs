//! Deterministic task ids: UUIDv5 over (cluster id, schedule incarnation, scheduled instant).
//!
//! Invariant: every node, and every retry, derives the same id for the same occurrence, and a
//! change to any of the three gives another id; this is what lets Redis-side markers deduplicate
//! pushes. Pure: no clock, no randomness, no state.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// UUIDv5 over (cluster id, schedule incarnation, scheduled instant in milliseconds).
pub fn occurrence_task_id(
    cluster_id: Uuid,
    incarnation: Uuid,
    scheduled_at: DateTime<Utc>,
) -> Uuid {
    let mut name = [0u8; 24];
    name[..16].copy_from_slice(incarnation.as_bytes());
    name[16..].copy_from_slice(&scheduled_at.timestamp_millis().to_be_bytes());
    Uuid::new_v5(&cluster_id, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_id_and_any_change_changes_it() {
        let cluster = Uuid::from_u128(1);
        let incarnation = Uuid::from_u128(2);
        let t = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let id = occurrence_task_id(cluster, incarnation, t);
        assert_eq!(id, occurrence_task_id(cluster, incarnation, t));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, occurrence_task_id(Uuid::from_u128(3), incarnation, t));
        assert_ne!(id, occurrence_task_id(cluster, Uuid::from_u128(3), t));
        assert_ne!(
            id,
            occurrence_task_id(cluster, incarnation, t + chrono::Duration::milliseconds(1))
        );
    }
}
