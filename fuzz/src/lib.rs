//! belfry-fuzz: seeded fuzzing of every parser and decoder of belfry that takes outside bytes,
//! on the stable toolchain (no libFuzzer): inputs are generated deterministically from a seed,
//! by random bytes and structure-aware mutation of seed corpora, and each runs under
//! `catch_unwind`. See README.md.
//!
//! Owns input generation, the targets and the runner. It must not change what it tests: the
//! targets call belfry's public functions as the node does.

pub mod codec;
pub mod defs;
pub mod json;
pub mod known;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;
