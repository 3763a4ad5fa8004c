//! The request pipeline: a request's pure decisions, phase by phase in the order API Gateway
//! runs them (and pingora's `ProxyHttp` names its hooks). `proxy/` drives sockets and timers
//! only and calls these functions; `bench/src/bin/pipeline.rs` calls them in-process.
//!
//! Each phase takes the per-request [`Context`] and either continues or returns a
//! [`Failure`], which [`respond`] turns into a gateway response (or a protocol refusal).
//!
//! | # | phase | runs | may return | where |
//! |---|-------|------|------------|-------|
//! | 1 | dispatch | once the head is parsed | the route match; or REQUEST_TOO_LARGE (declared length over `max_body_bytes`), MISSING_AUTHENTICATION_TOKEN (REST, no route), RESOURCE_NOT_FOUND (HTTP API, no route) | [`dispatch()`] |
//! | 2 | authorize | after dispatch, before any body is read | UNAUTHORIZED, ACCESS_DENIED, AUTHORIZER_CONFIGURATION_ERROR, AUTHORIZER_FAILURE; or an authorizer call to make (then [`authorize_result`]); the result goes in `Context::authorizer` | [`authorize()`]; mutual TLS: [`mutual_tls`] (403 when a mutual-TLS domain's request did not come with its verified client certificate) |
//! | 3 | throttle and quota | after authorize | INVALID_API_KEY (403), THROTTLED (429), QUOTA_EXCEEDED (429); the key's index in `Context::api_key` | [`throttle()`], with the shard's buckets and leases and the shared quota store |
//! | 4 | integration request | after the checks | mock: the complete local response; http_proxy: the backend request head; aws_proxy: the function's event ([`lambda_request`], finished by [`LambdaCall::invocation`] with the body); DEFAULT_5XX (500) on a gateway bug | [`integration_request`] |
//! | 5 | integration response | once the backend's response head is parsed (1xx skipped); aws_proxy: once the function's result is read | the client response head and how to relay the body; aws_proxy: the whole mapped response, or 502 on a malformed result / function error | [`integration_response`], [`LambdaCall::response`] |
//! | 6 | respond | for every answer made without the backend: the failures of phases 1-5, the I/O failures the connection loop reports (backend refused/reset/closed → INTEGRATION_FAILURE, integration timeout → INTEGRATION_TIMEOUT, malformed backend response → DEFAULT_5XX as 502, body over the limit → REQUEST_TOO_LARGE) and protocol refusals (400/431/501/505, named in `http::error`) | the response bytes | [`respond`], [`refuse`] |
//! | 7 | log | after the response is sent or the exchange fails | the stage's access log line, from `Context` and the [`Outcome`] the connection loop filled (status, length, latencies, integration status/error, gateway response type) | [`log()`] |
//!
//! Phase 7 (`log`) runs after the response. Everything here is pure: no I/O, no clock reads
//! except `Context::started` and the traffic clock given by the caller, no allocation beyond
//! growing the caller's out buffer (the aws_proxy pair and authorizer events build JSON).

mod authorize;
mod context;
mod dispatch;
mod integration;
mod lambda;
mod log;
mod mtls;
mod respond;
#[cfg(test)]
mod test_support;
mod throttle;

pub use authorize::{
    authorize, authorize_cached, authorize_result, AuthAnswer, AuthCall, Authorize,
};
pub use context::Context;
pub use dispatch::dispatch;
pub use integration::{integration_request, integration_response, Integration, ResponsePlan};
pub use lambda::{event_request, lambda_request, LambdaAnswer, LambdaCall};
pub use log::{access_log, log, Outcome};
pub use mtls::mutual_tls;
pub use respond::{error_context, refuse, respond, Answer, Failure};
pub use throttle::{throttle, throttle_apply, throttle_input, ThrottleInput, API_KEY_HEADER};
