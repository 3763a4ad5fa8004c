//! The `tollgate` binary: command line (`tollgate [run] --config FILE`, `validate`, `doctor`,
//! `usage`, `--version`, `--help`; log level and format), config loading (embedded demo
//! config when none is given). The data plane lives in the modules below; signals are taken
//! by `runtime` once the shards run.

mod admin;
mod buffer;
mod cluster;
mod conn;
mod doctor;
mod lambda;
mod logging;
mod metrics;
mod net;
mod relay;
mod reload;
mod runtime;
mod shard;
mod traffic_state;
mod upstream;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_core::config;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway with Amazon API Gateway semantics on a thread-per-core io_uring data plane",
    after_help = "Without a subcommand, tollgate runs (same as `tollgate run`)."
)]
struct Cli {
    /// Config file (TOML; see tuning/CONFIG.md). Without it, the built-in demo config is served.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Number of shards (overrides `server.shards`; default one per allowed CPU).
    #[arg(long, global = true)]
    shards: Option<usize>,
    /// Start even if the quota `state_file` is corrupt: it is moved aside
    /// (`<state_file>.corrupt-<time>`) and every quota starts from 0.
    #[arg(long, global = true)]
    reset_state: bool,
    /// Gateway log level (the flag wins over TOLLGATE_LOG). Library messages show from
    /// `warn` unless the level is `debug` or `trace`.
    #[arg(long, env = "TOLLGATE_LOG", value_enum, ignore_case = true, default_value_t = LogLevel::Info, global = true)]
    log_level: LogLevel,
    /// Gateway log format: `text` lines or `json` lines (time, level, message, fields).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = logging::Format::Text, global = true)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the config (the default when no subcommand is given).
    Run,
    /// Check config files and report every error with file, line and column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check the host's limits and settings (locked memory, open files, somaxconn, local
    /// ports, io_uring, kernel, CPUs, governor) and say what to change.
    Doctor,
    /// Print used and remaining quota per API key and usage plan for the current period, as
    /// JSON, from the config's `state_file` (like API Gateway's GetUsage).
    Usage {
        /// Only this API key (by name).
        #[arg(long)]
        key: Option<String>,
        /// Only this usage plan (by name).
        #[arg(long)]
        plan: Option<String>,
    },
}

/// Allocations of this size or more get their own mapping, returned to the system when freed.
/// The request path's buffers are smaller (64 KiB read buffers, pooled) and stay on the heap;
/// the large ones come from bursts (send queues of slow clients, up to a few hundred KiB).
/// glibc's adaptive threshold would move those onto the heap after the first one is freed,
/// where fragmentation keeps them resident after the burst: memory would ratchet up instead
/// of coming back. (A 64 KiB threshold also caught per-request buffers and cost the `64k`
/// bench scenario about 40 % more CPU per request: measured, not kept.)
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

fn main() -> ExitCode {
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    let cli = Cli::parse();
    logging::init(cli.log_level.filter(), cli.log_format);
    match cli.command {
        Some(Command::Validate { files }) => return validate(&files),
        Some(Command::Doctor) => {
            let checks = doctor::checks();
            print!("{}", doctor::report(&checks));
            let fail = checks.iter().any(|c| c.verdict == doctor::Verdict::Fail);
            return if fail {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        Some(Command::Usage { key, plan }) => {
            return usage(cli.config.as_deref(), key.as_deref(), plan.as_deref())
        }
        Some(Command::Run) | None => {}
    }
    traffic_state::set_reset_state(cli.reset_state);
    let gateway = match &cli.config {
        Some(path) => match config::load_file(path) {
            Ok(g) => g,
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                log::error!(
                    config:% = path.display(), errors = errors.len();
                    "the config has errors; not starting"
                );
                return ExitCode::FAILURE;
            }
        },
        None => match config::load_str("<built-in demo config>", config::DEFAULT_CONFIG) {
            Ok(g) => {
                log::info!("no --config given: serving the built-in demo config");
                if let Some(a) = g.listeners.first() {
                    log::info!("try `curl http://{a}/demo/pets` — run `tollgate --config FILE` to serve your own APIs (see tuning/CONFIG.md)");
                }
                g
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                return ExitCode::FAILURE;
            }
        },
    };
    let shards = cli
        .shards
        .filter(|&n| n > 0)
        .or((gateway.settings.shards > 0).then_some(gateway.settings.shards))
        .unwrap_or_else(|| runtime::allowed_cpus().len());
    runtime::raise_nofile_limit();
    let path = match runtime::socket_path_from_env() {
        Ok(p) => p,
        Err(msg) => {
            logging::error(&msg);
            return ExitCode::FAILURE;
        }
    };
    match runtime::run(gateway, shards, path, cli.config.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            logging::error(&msg);
            ExitCode::FAILURE
        }
    }
}

/// `tollgate usage --config FILE [--key NAME] [--plan NAME]`.
fn usage(config: Option<&std::path::Path>, key: Option<&str>, plan: Option<&str>) -> ExitCode {
    let Some(path) = config else {
        eprintln!("tollgate usage: --config FILE is required (the config names the state_file)");
        return ExitCode::FAILURE;
    };
    let gateway = match config::load_file(path) {
        Ok(g) => g,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match traffic_state::usage_report(&gateway, key, plan, traffic_state::unix_secs()) {
        Ok(json) => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        match config::load_file(f) {
            Ok(_) => println!("{}: ok", f.display()),
            Err(errors) => {
                failed = true;
                for e in &errors {
                    println!("{e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
