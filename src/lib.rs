//! belfry: a highly available periodic task scheduler that dispatches Celery tasks.
//!
//! The library holds every part of the `belfry` binary so that integration tests, benchmarks,
//! the fuzzer and the chaos harness drive the same code the server runs. What none of them
//! needs is `pub(crate)`; `unreachable_pub` keeps a `pub` from hiding in a private module.
//!
//! Invariant: each layer uses only those above it in the map below, so the pure core
//! (`schedule`, `celery`, `state`) never reaches I/O, Raft or the network.
//!
//! # A map of the crate
//!
//! From the time engine outwards (the metric names of `telemetry::names` and `heap`'s trimming
//! are used from anywhere; `config` names the settings of the layers it configures).
//!
//! - [`schedule`]: specs (interval, crontab, cron, once) and "the next occurrence after t" in a
//!   time zone. Pure.
//! - [`celery`]: the exact bytes of a Celery task message and the list it goes to. Pure.
//! - [`formats`]: the version of every persisted and inter-node format.
//! - [`state`]: the replicated state machine: schedules, run state, the outbox, and the
//!   deterministic apply of commands; `state::diff` turns a declared set into commands.
//! - [`raft`]: openraft's types, the durable log (redb), the peer transport and its
//!   authentication.
//! - [`dispatch`]: on the leader only: plan what is due, commit it, push it to Redis exactly
//!   once, acknowledge it; supervised, with readiness in `dispatch::health`.
//! - [`api`]: the gRPC API; `api::control` is the one door to Raft and the state for every
//!   request (forwarding to the leader, admission of writes, group commit, membership).
//! - [`schedules_file`]: the `[[schedule]]` TOML file and its reconciliation (through
//!   `api::control`).
//! - [`telemetry`], [`heap`]: metrics, health endpoints, memory.
//! - [`config`], [`connections`], [`node`]: a server's settings, its port's accept loop, and
//!   the wiring of one node.
//! - [`cli`]: the `belfry` command's subcommands.
//!
//! # One dispatch, hop by hop
//!
//! `dispatch::planner` finds an occurrence due → `dispatch::leader` commits a `Fire` through
//! `raft` → `state` applies it into the outbox on every node → the leader's pusher
//! (`dispatch::cursor` decides what is due, `dispatch::render` builds the message) pushes it with
//! `dispatch::sink`'s idempotent script → the acker commits an `Ack` → `state` records the run.

#![warn(unreachable_pub)]

pub mod api;
pub mod celery;
pub mod cli;
pub mod config;
pub(crate) mod connections;
pub(crate) mod console;
pub mod dispatch;
pub mod formats;
pub(crate) mod heap;
pub mod node;
pub mod raft;
pub mod schedule;
pub mod schedules_file;
pub mod state;
pub(crate) mod telemetry;
