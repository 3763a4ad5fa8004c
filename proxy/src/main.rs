//! The `tollgate` binary: command line, config loading (embedded demo config when none is
//! given), and `tollgate validate`. The data plane lives in the modules below.

mod buffer;
mod conn;
mod lambda;
mod logging;
mod net;
mod relay;
mod runtime;
mod shard;
mod upstream;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_core::config;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway with Amazon API Gateway semantics on a thread-per-core io_uring data plane"
)]
struct Cli {
    /// Config file (TOML; see tuning/CONFIG.md). Without it, the built-in demo config is served.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Number of shards (overrides `server.shards`; default one per allowed CPU).
    #[arg(long)]
    shards: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check config files and report every error with file, line and column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
    logging::init();
    let cli = Cli::parse();
    if let Some(Command::Validate { files }) = cli.command {
        return validate(&files);
    }
    let gateway = match &cli.config {
        Some(path) => match config::load_file(path) {
            Ok(g) => g,
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "tollgate: {} has {} error(s); not starting",
                    path.display(),
                    errors.len()
                );
                return ExitCode::FAILURE;
            }
        },
        None => match config::load_str("<built-in demo config>", config::DEFAULT_CONFIG) {
            Ok(g) => {
                eprintln!("tollgate: no --config given: serving the built-in demo config.");
                if let Some(a) = g.listeners.first() {
                    eprintln!("tollgate: try `curl http://{a}/demo/pets` — run `tollgate --config FILE` to serve your own APIs (see tuning/CONFIG.md)");
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
    let path = match runtime::socket_path_from_env() {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    match runtime::run(gateway, shards, path) {
        Ok(()) => ExitCode::SUCCESS,
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
