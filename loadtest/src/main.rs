//! The `tollgate-load` binary: parse the command line, arm the hard stop, run,
//! print the summary and write the requested report files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tollgate_load::cli::Args;
use tollgate_load::engine::HARD_GRACE;
use tollgate_load::{hgrm, run};

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    // The run stops itself; this is the backstop if anything ever hangs.
    let cap = cfg.duration + HARD_GRACE;
    std::thread::spawn(move || {
        std::thread::sleep(cap + Duration::from_millis(500));
        eprintln!("tollgate-load: hard time limit ({cap:?}) reached, exiting");
        std::process::exit(3);
    });
    let summary = match run(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate-load: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", summary.render());
    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &args.json {
        let res = File::create(path).and_then(|f| {
            let mut w = BufWriter::new(f);
            serde_json::to_writer_pretty(&mut w, &summary.json())?;
            writeln!(w)?;
            w.flush()
        });
        if let Err(e) = res {
            eprintln!("tollgate-load: --json {}: {e}", path.display());
            status = ExitCode::from(1);
        }
    }
    if let Some(path) = &args.hgrm {
        let res = File::create(path).and_then(|f| {
            let mut w = BufWriter::new(f);
            hgrm::write_distribution(summary.latency(), &mut w)?;
            w.flush()
        });
        if let Err(e) = res {
            eprintln!("tollgate-load: --hgrm {}: {e}", path.display());
            status = ExitCode::from(1);
        }
    }
    status
}
