//! A tower layer around the gRPC server that counts and times `belfry.v1` API calls by method
//! and status code.
//!
//! Invariant: the call and its response pass through unchanged; peer, health and reflection
//! calls are not counted, and an unknown method is counted as `unknown`, so no request can mint
//! a new series. It must not look at messages.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{counter, histogram};
use tower::{Layer, Service};

use super::names::{API_REQUESTS, API_REQUEST_DURATION};

const API_PREFIX: &str = "/belfry.v1.";

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ApiMetricsLayer;

impl<S> Layer<S> for ApiMetricsLayer {
    type Service = ApiMetrics<S>;

    fn layer(&self, inner: S) -> ApiMetrics<S> {
        ApiMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ApiMetrics<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for ApiMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix(API_PREFIX)
            .map(str::to_string);
        let response = self.inner.call(request);
        let Some(method) = method else {
            return Box::pin(response);
        };
        let started = Instant::now();
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => status_of(response),
                Err(_) => tonic::Code::Unknown,
            };
            // Unknown paths must not mint new series.
            let method = if code == tonic::Code::Unimplemented {
                "unknown".to_string()
            } else {
                method
            };
            let code = format!("{code:?}");
            histogram!(API_REQUEST_DURATION, "method" => method.clone())
                .record(started.elapsed().as_secs_f64());
            counter!(API_REQUESTS, "method" => method, "code" => code).increment(1);
            result
        })
    }
}

/// A failed unary call carries its status in the response headers ("trailers only"); a
/// successful one only in trailers, after the body, so no header means `Ok`.
fn status_of<RB>(response: &http::Response<RB>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}
