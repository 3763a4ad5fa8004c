//! Process log sink for library messages (the `log` facade): glommio's warnings, such as the
//! io_uring setup fallback on an older kernel, go to stderr as one `tollgate:` line each.
//! Request access logs are not this module's business.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            // One write per line so lines from different shards do not interleave.
            let line = format!(
                "tollgate: {level}: {}: {}\n",
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr sink (warnings and errors only). Call once, first thing in `main`.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}
