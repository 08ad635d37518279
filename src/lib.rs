//! belfry: a highly available periodic task scheduler that dispatches Celery tasks.
//!
//! The library holds every part of the `belfry` binary so that integration tests and
//! benchmarks drive the same code the server runs.

pub mod api;
pub mod celery;
pub mod cli;
pub mod config;
pub mod connections;
pub mod dispatch;
pub mod formats;
pub mod heap;
pub mod node;

pub mod raft;
pub mod schedule;
pub mod schedules_file;
pub mod state;
pub mod telemetry;
