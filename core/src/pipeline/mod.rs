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
//! | 2 | authorize | after dispatch, before any body is read | UNAUTHORIZED, ACCESS_DENIED, AUTHORIZER_CONFIGURATION_ERROR, AUTHORIZER_FAILURE; or an authorizer call to make (then [`authorize_result`]); the result goes in `Context::authorizer` | [`authorize()`] |
//! | 3 | throttle and quota | after authorize | THROTTLED, QUOTA_EXCEEDED, INVALID_API_KEY | not yet: issue 14 adds it here, with the API key and usage plan in `Context` |
//! | 4 | integration request | after the checks | mock: the complete local response; http_proxy: the backend request head; aws_proxy: the function's event ([`lambda_request`], finished by [`LambdaCall::invocation`] with the body); DEFAULT_5XX (500) on a gateway bug | [`integration_request`] |
//! | 5 | integration response | once the backend's response head is parsed (1xx skipped); aws_proxy: once the function's result is read | the client response head and how to relay the body; aws_proxy: the whole mapped response, or 502 on a malformed result / function error | [`integration_response`], [`LambdaCall::response`] |
//! | 6 | respond | for every answer made without the backend: the failures of phases 1-5, the I/O failures the connection loop reports (backend refused/reset/closed → INTEGRATION_FAILURE, integration timeout → INTEGRATION_TIMEOUT, malformed backend response → DEFAULT_5XX as 502, body over the limit → REQUEST_TOO_LARGE) and protocol refusals (400/431/501/505, named in `http::error`) | the response bytes | [`respond`], [`refuse`] |
//! | 7 | log | after the response is sent or the exchange fails | nothing | not yet: issue 18 adds it here, reading `Context` (integration status and latency join it then) |
//!
//! Phases 3 and 7 have no code today: there is no placeholder for them, only this seam.
//! Everything here is pure: no I/O, no clock reads except `Context::started` given by the
//! caller, no allocation beyond growing the caller's out buffer.

mod authorize;
mod context;
mod dispatch;
mod integration;
mod lambda;
mod respond;
#[cfg(test)]
mod test_support;

pub use authorize::{
    authorize, authorize_cached, authorize_result, AuthAnswer, AuthCall, Authorize,
};
pub use context::Context;
pub use dispatch::dispatch;
pub use integration::{integration_request, integration_response, Integration, ResponsePlan};
pub use lambda::{event_request, lambda_request, LambdaAnswer, LambdaCall};
pub use respond::{error_context, refuse, respond, Answer, Failure};
