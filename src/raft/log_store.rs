//! Placeholder replaced by the redb-backed log store.
