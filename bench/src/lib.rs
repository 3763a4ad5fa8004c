//! tollgate-bench: the side-by-side comparison harness. tollgate (as built, as `tollgate-poll`
//! with glommio's readiness socket path, and as `tollgate-stock` with stock glommio's rings and
//! that path: one binary, see [`run::ProxyKind`]), nginx and HAProxy run as reverse proxies in
//! front of one local origin, pinned to the same CPU, driven by the same load generator in the
//! same run; `RESULTS.md` and its SVG plots report throughput, latency at a fixed rate, CPU
//! time per request, memory and the ratios between them.
//!
//! Modules: [`procs`] (children that never outlive the harness, `/proc` sampling),
//! [`origin`] (the benchmark origin), [`functions`] (the Lambda function server of
//! `lambda-cost.sh`), [`configs`] (equivalent proxy configs), [`load`]
//! (tollgate-load and wrk), [`idle`] (the idle-connection client), [`run`] (the scenario and
//! results model, process control and measurement, the scenario drivers), [`report`] (the
//! tables; its prose is `templates/report.md`) and [`plot`] (RESULTS.md and SVGs), [`sysinfo`]
//! (machine and versions).

pub mod configs;
pub mod functions;
pub mod idle;
pub mod load;
pub mod origin;
pub mod plot;
pub mod procs;
pub mod report;
pub mod run;
pub mod sysinfo;
