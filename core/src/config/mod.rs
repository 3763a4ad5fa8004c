//! The config file (TOML): model, parsing with positions, validation, compilation into a
//! `gateway::Gateway`, and the embedded default config (traffic control included: API keys,
//! usage plans, throttles, in `traffic`).
//!
//! - `DEFAULT_CONFIG`: the embedded demo config (mock pets API on 127.0.0.1:8080).
//! - `load_str(name, text)` / `load_file(path)`: parse + validate + compile, returning every
//!   error found, each with file, line, column and a plain reason.
//!
//! The pipeline: `decode` (TOML → `model`, reporting syntax errors, unknown keys, wrong types,
//! missing keys) → `compile` (with `settings`, `validate`, `uri` and `dispatch`: every semantic
//! check, and the `Gateway` itself). Errors are collected in `diagnostics::Diagnostics` and
//! turned into `ConfigError`s in file order. The keys and rules are documented in
//! tuning/CONFIG.md.

mod cluster;
mod compile;
mod decode;
mod diagnostics;
mod dispatch;
mod lambda;
mod model;
mod ops;
mod settings;
mod tls;
mod traffic;
mod uri;
mod validate;

use crate::gateway::Gateway;
use diagnostics::Diagnostics;
use std::path::Path;

/// One problem in a config file; `Display` prints `file:line:column: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// The built-in config `tollgate` runs with when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Parses, checks and compiles the config `text`; `name` is the file name used in errors.
/// Relative paths in it (`api_keys_file`, `state_file`) are relative to the current directory.
pub fn load_str(name: &str, text: &str) -> Result<Gateway, Vec<ConfigError>> {
    load(name, text, Path::new(""))
}

/// `load_str` with relative paths resolved against `base` (the config file's directory).
fn load(name: &str, text: &str, base: &Path) -> Result<Gateway, Vec<ConfigError>> {
    let mut d = Diagnostics::new(text);
    let cfg = decode::decode(text, &mut d);
    // The `api_keys_file`, read and checked with its own positions.
    let keys_path = cfg
        .as_ref()
        .and_then(|c| c.server.api_keys_file.as_ref())
        .filter(|p| !p.value.is_empty());
    let keys_file = keys_path.and_then(|p| {
        let path = base.join(&p.value);
        match std::fs::read_to_string(&path) {
            Ok(keys_text) => Some((path.display().to_string(), keys_text)),
            Err(e) => {
                d.error(
                    p.span.clone(),
                    format!("cannot read the `api_keys_file` {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let mut kd = keys_file.as_ref().map(|(_, t)| Diagnostics::new(t));
    let file_keys = match (&keys_file, kd.as_mut()) {
        (Some((_, t)), Some(kd)) => decode::decode_keys_file(t, kd),
        _ => None,
    };
    let gateway = cfg.map(|cfg| {
        let keys = match (&file_keys, kd.as_mut()) {
            (Some(keys), Some(kd)) => Some(traffic::KeysFile { keys, d: kd }),
            _ => None,
        };
        compile::compile(&cfg, base, keys, &mut d)
    });
    let keys_clean = kd.as_ref().is_none_or(Diagnostics::is_empty);
    match gateway {
        Some(g) if d.is_empty() && keys_clean => Ok(g),
        _ => {
            let mut errors = d.into_errors(name);
            if let (Some((keys_name, _)), Some(kd)) = (&keys_file, kd) {
                errors.extend(kd.into_errors(keys_name));
            }
            if errors.is_empty() {
                // Not reachable: nothing is left out without an error. Never return Err([]).
                errors.push(ConfigError {
                    file: name.to_string(),
                    line: 1,
                    column: 1,
                    message: "the config could not be loaded".to_string(),
                });
            }
            Err(errors)
        }
    }
}

/// Reads and loads the config file at `path` (errors name it as `path.display()`).
pub fn load_file(path: &std::path::Path) -> Result<Gateway, Vec<ConfigError>> {
    let name = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new(""));
    match std::fs::read_to_string(path) {
        Ok(text) => load(&name, &text, base),
        Err(e) => Err(vec![ConfigError {
            file: name,
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
        }]),
    }
}
