//! Prometheus metrics and the HTTP endpoint that serves them, with `/healthz` and `/readyz`:
//! the metric names, their descriptions and buckets, and the sampling of Raft and state gauges.
//!
//! Invariant: it never changes what it observes: recording is fire-and-forget, with no recorder
//! installed (metrics off) every `metrics::` call elsewhere is a no-op, and series carry no
//! per-schedule labels, so a million schedules never mean a million series. It must not steer
//! the node.

mod api_layer;
mod http;
pub(crate) mod names;
mod recorder;
mod sampler;
pub(crate) mod window;

pub(crate) use api_layer::ApiMetricsLayer;
pub(crate) use http::{not_ready_because, serve, serve_faulted, Readiness};
pub(crate) use recorder::{install, TelemetryError};
pub(crate) use sampler::sample_forever;
