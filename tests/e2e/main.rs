//! End-to-end tests: each test starts the real `tollgate` binary (built by cargo for this test
//! target) with its own config on free loopback ports, drives it with a raw HTTP/1.1 client and
//! checks what a real in-process origin received.
//!
//! Support code: `harness` (config files, starting and stopping the gateway), `origin` (the
//! local backend), `client` (raw TCP client and response parser), `util` (body patterns and
//! checksums). The other modules hold the tests, one topic each.
//!
//! Run with `cargo test -p tollgate --test e2e`.

mod client;
mod harness;
mod lambda_server;
mod ops_support;
mod origin;
mod raw_origin;
mod util;

mod bodies;
mod chunked;
mod cli;
mod cluster;
mod default_config;
mod errors;
mod gateway_responses;
mod gateway_responses_custom;
mod inflight;
mod keepalive;
mod lambda_auth;
mod lambda_context;
mod lambda_jwt;
mod lambda_proxy;
mod latency;
mod memory;
mod ops_access_log;
mod ops_limits;
mod ops_metrics;
mod ops_reload;
mod ops_shutdown;
mod pipelining;
mod protocol;
mod proxying;
mod selftest;
mod slashes;
mod smuggling;
mod socket_paths;
mod spliced_bodies;
mod timeouts;
mod tls;
mod traffic;
mod traffic_accuracy;
mod traffic_state;
mod upstream_pool;
