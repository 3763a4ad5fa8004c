//! Helpers of core's config-error tests (included with
//! `#[path = "support/config_text.rs"] mod config_text;`): where a marker stands in a config
//! text, and the errors a text that must be refused gives (loaded as `test.toml`).

use tollgate_core::config::{load_str, ConfigError};

/// The file name the errors of [`errors_of`] carry.
pub const FILE: &str = "test.toml";

/// `(line, column)`, 1-based (the column in characters), of the first `marker` in `text`.
pub fn position_of(text: &str, marker: &str) -> (u32, u32) {
    let offset = text
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} is not in the config"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line as u32, column as u32)
}

/// The errors of `text`, loaded as [`FILE`]; panics if it loads.
pub fn errors_of(text: &str) -> Vec<ConfigError> {
    match load_str(FILE, text) {
        Ok(_) => panic!("config loaded without errors:\n{text}"),
        Err(errors) => errors,
    }
}
