//! The compiled gateway: what a shard consults per request. Built once from a validated config
//! file (`config::load_str` / `load_file`), then cloned into every shard (it is `Clone + Send`,
//! holds no `Rc`/locks).
//!
//! - `settings`: host settings (`[server]`).
//! - `model`: APIs, stages, routes, integration targets, upstreams, throttles.
//! - `uri`: integration URI templates (`PathTemplate`) and their `{name}` tokenizer.
//! - `dispatch`: the `Gateway` and `Gateway::resolve`: custom domain / stage prefix / `$default`
//!   stage → route → target.
//! - `responses`: API Gateway's gateway response types and their per-API customisation.
//! - `Gateway::tls` (`crate::tls`): listener and custom-domain certificates, https backends.
//!
//! `config::compile` fills all of them in; the data plane only reads them.

pub mod access_log;
mod dispatch;
mod model;
pub mod responses;
mod settings;
mod uri;

pub(crate) use dispatch::{Dispatch, Domain, Group, StageRef};
pub use dispatch::{Gateway, Miss, Resolved, RouteMatch};
pub use model::{Api, MockTarget, Protocol, ProxyTarget, Route, Stage, Target, Throttle, Upstream};
pub use settings::Settings;
pub use uri::PathTemplate;
pub(crate) use uri::{tokenize, unknown_param_reason, Token};
