//! tollgate-core: everything in the gateway that is pure logic and needs no runtime.
//!
//! The config model and its validation (`config`), the compiled gateway that the data plane
//! consults per request (`gateway`: API/stage dispatch, routes, integration targets), the route
//! trie (`router`), HTTP/1.1 head parsing and body framing on borrowed buffers (`http`), the
//! request pipeline's phases in execution order (`pipeline`: dispatch, integration request and
//! response, respond), the gateway responses clients see (`gateway::responses`), protocol-level
//! refusals (`http::error`), request ids, Lambda events, results, authorizer policies and caches
//! (`lambda`), traffic control's pure half (`traffic`: API keys, usage plans, token buckets, quota
//! periods and counters, the quota state format) and TLS as plain data (`tls`: certificates,
//! policies, client certificate fields; shared by config, gateway, pipeline and the proxy's socket
//! layer). Nothing here depends on glommio or does I/O other than reading config files and the
//! certificate files they name.

pub mod civil;
pub mod config;
pub mod forward;
pub mod gateway;
pub mod http;
pub mod lambda;
pub mod method;
pub mod pipeline;
pub mod request_id;
pub mod router;
pub mod tls;
pub mod traffic;
