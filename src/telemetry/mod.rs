//! Prometheus metrics and the HTTP endpoint that serves them, with `/healthz` and `/readyz`.
//!
//! Owns the metric names, their descriptions and buckets, and the sampling of Raft and state
//! gauges. It must never change what it observes: recording is fire-and-forget, and with no
//! recorder installed (metrics off) every `metrics::` call elsewhere is a no-op. Series carry
//! no per-schedule labels, so a million schedules never mean a million series.

mod api_layer;
mod http;
pub mod names;
mod recorder;
mod sampler;

pub use api_layer::ApiMetricsLayer;
pub use http::{not_ready_because, serve, serve_faulted, Readiness};
pub use recorder::{install, TelemetryError};
pub use sampler::sample_forever;
