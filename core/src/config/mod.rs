//! The config file (TOML): model, parsing with positions, validation, compilation into a
//! `gateway::Gateway`, and the embedded default config.
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

mod compile;
mod decode;
mod diagnostics;
mod dispatch;
mod lambda;
mod model;
mod settings;
mod uri;
mod validate;

use crate::gateway::Gateway;
use diagnostics::Diagnostics;

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
pub fn load_str(name: &str, text: &str) -> Result<Gateway, Vec<ConfigError>> {
    let mut d = Diagnostics::new(text);
    let gateway = decode::decode(text, &mut d).map(|cfg| compile::compile(&cfg, &mut d));
    match gateway {
        Some(g) if d.is_empty() => Ok(g),
        _ => {
            let mut errors = d.into_errors(name);
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
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&name, &text),
        Err(e) => Err(vec![ConfigError {
            file: name,
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
        }]),
    }
}
