//! The comparison scenarios that run tollgate (as built) against nginx and HAProxy only:
//! `fixed-rate` (open loop at each of `Options::fixed_rates`, 1 shard / worker / thread, the
//! method's pinning, one phase per rate and round, proxies interleaved) and `https` (the three
//! terminating TLS with one certificate generated at run time: keep-alive requests, a full
//! handshake per request, a resumed handshake per request; closed loop).

use crate::configs::{Routes, Setup, TlsFiles};
use crate::procs;
use crate::run::control::{Ctx, PhaseSpec, Proxy};
use crate::run::drivers::{keep, record_peak_rss, start_all, Field};
use crate::run::{
    anchors, FixedRateScenario, HttpsMode, HttpsScenario, ProxyKind, Scenario, SweepRow,
    HTTPS_WARM_UP, WARM_UP,
};

use std::path::Path;

pub(super) fn run_fixed(
    ctx: &mut Ctx<'_>,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<FixedRateScenario, String> {
    let opts = ctx.opts;
    let scen = Scenario::FixedRate;
    let rates = opts.fixed_rates.clone();
    let proxies = anchors(proxies);
    let (mut rows, mut running) = start_all(ctx, scen, &proxies, progress, |k, failure| SweepRow {
        failure,
        ..SweepRow::new(k, rates.len())
    });
    let layout = ctx.pinned.clone();
    let warm = PhaseSpec::closed(opts.duration.min(WARM_UP), opts.connections, &layout);
    ctx.warm_up(&mut running, &mut rows, scen, &warm, progress);
    let mut notes = Vec::new();
    for round in 0..opts.rounds {
        for (ri, &rate) in rates.iter().enumerate() {
            let spec = PhaseSpec {
                rate: Some(rate),
                ..PhaseSpec::closed(opts.duration, opts.connections, &layout)
            };
            for i in 0..rows.len() {
                let what = format!("{rate:.0} req/s phase (round {})", round + 1);
                let Some(result) =
                    ctx.watched_phase(&mut running, i, scen, &spec, &what, &mut notes)
                else {
                    continue;
                };
                let kept = keep(
                    &mut rows[i],
                    &mut running[i],
                    result,
                    &format!("{rate:.0} req/s"),
                    progress,
                    |name, ph| {
                        format!(
                            "round {} {:>6.0} req/s {:<14} p99 {:.3} ms  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%",
                            round + 1,
                            rate,
                            name,
                            ph.p99_us / 1000.0,
                            ph.cpu_us_per_req,
                            ph.proxy_busy * 100.0,
                        )
                    },
                );
                if let Some((ph, r)) = kept {
                    if r.rps < rate * 0.95 {
                        notes.push(format!(
                            "{} round {}: the open loop at {rate:.0} req/s reached only {:.0} req/s.",
                            rows[i].proxy.name(),
                            round + 1,
                            r.rps
                        ));
                    }
                    if let Some(v) = rows[i].phases.get_mut(ri) {
                        v.push(ph);
                    }
                }
            }
            if procs::interrupted() {
                return Err("interrupted".into());
            }
        }
    }
    record_peak_rss(&mut rows, running);
    Ok(FixedRateScenario { rates, rows, notes })
}

/// Writes a self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1 into `dir`
/// (`cert.pem`, `key.pem`, and `both.pem` for HAProxy); returns the files and a description.
pub(super) fn write_certificate(dir: &Path) -> Result<(TlsFiles, String), String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("generating a certificate: {e}"))?;
    let cert = ck.cert.pem();
    let key = ck.key_pair.serialize_pem();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        both: dir.join("both.pem"),
    };
    for (path, text) in [
        (&files.cert, cert.clone()),
        (&files.key, key.clone()),
        (&files.both, format!("{cert}{key}")),
    ] {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((
        files,
        "self-signed ECDSA P-256 (SHA-256), names `localhost` and `127.0.0.1`, generated at run time with rcgen".into(),
    ))
}

/// Why a phase's handshakes do not match its mode (None = they do): a full-handshake phase
/// must resume nothing; in a resumed one, only each connection's first handshake (there is no
/// session to resume yet: `connections` of them) may be full, and 10 % more.
pub fn handshake_mismatch(
    mode: HttpsMode,
    full: u64,
    resumed: u64,
    connections: u64,
) -> Option<String> {
    let total = full + resumed;
    match mode {
        HttpsMode::KeepAlive => None,
        _ if total == 0 => Some("no TLS handshake completed".into()),
        HttpsMode::Full if resumed > 0 => Some(format!(
            "{resumed} of {total} handshakes were resumed in the full-handshake mode"
        )),
        // Each connection's first handshake is a full one.
        HttpsMode::Resumed if full > connections + total / 10 => Some(format!(
            "only {resumed} of {total} handshakes were resumed: the server did not resume sessions"
        )),
        _ => None,
    }
}

pub(super) fn run_https(
    ctx: &mut Ctx<'_>,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<HttpsScenario, String> {
    let opts = ctx.opts;
    let scen = Scenario::Https;
    let modes = HttpsMode::ALL.to_vec();
    let proxies = anchors(proxies);
    let dir = ctx.temp.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (files, certificate) = write_certificate(&dir)?;
    let setup = Setup {
        tls: Some(files),
        ..Setup::default()
    };
    let (rows, running) = start_tls(ctx, &proxies, modes.len(), &setup, progress);
    let mut f = Field {
        rows,
        running,
        notes: Vec::new(),
    };
    let layout = ctx.pinned.clone();
    let spec = |mode: HttpsMode, duration| PhaseSpec {
        tls: Some(mode.load_args()),
        ..PhaseSpec::closed(duration, opts.connections, &layout)
    };
    // Longer than the other warm-ups: 64 handshakes must complete within it.
    let warm = spec(HttpsMode::KeepAlive, opts.duration.min(HTTPS_WARM_UP));
    ctx.warm_up(&mut f.running, &mut f.rows, scen, &warm, progress);
    for round in 0..opts.rounds {
        for (mi, &mode) in modes.iter().enumerate() {
            let ps = spec(mode, opts.duration);
            for i in 0..f.rows.len() {
                https_phase(ctx, (round, mi, mode), i, &ps, &mut f, progress);
            }
            if procs::interrupted() {
                return Err("interrupted".into());
            }
        }
    }
    let Field {
        mut rows,
        running,
        notes,
    } = f;
    record_peak_rss(&mut rows, running);
    Ok(HttpsScenario {
        modes,
        rows,
        certificate,
        notes,
    })
}

/// Starts every proxy terminating TLS as `setup` says: a row per proxy (a column per mode)
/// and the running proxies in the same order (`None` where it failed to start).
fn start_tls(
    ctx: &mut Ctx<'_>,
    proxies: &[ProxyKind],
    modes: usize,
    setup: &Setup,
    progress: &mut dyn FnMut(&str),
) -> (Vec<SweepRow>, Vec<Option<Proxy>>) {
    let scen = Scenario::Https;
    let cpus = ctx.pinned.proxy.clone();
    let mut rows = Vec::with_capacity(proxies.len());
    let mut running = Vec::with_capacity(proxies.len());
    for &k in proxies {
        let mut row = SweepRow::new(k, modes);
        match ctx.start_proxy_with(k, Routes::Single, scen.id(), 1, &cpus, setup) {
            Ok(p) => running.push(Some(p)),
            Err(e) => {
                progress(&format!("  {}: {e}", k.name()));
                row.failure = Some(format!("did not start: {e}"));
                running.push(None);
            }
        }
        rows.push(row);
    }
    (rows, running)
}

/// Proxy `i`'s phase in `mode` (column `mi`) of round `round`; a phase whose handshakes do not
/// match the mode is left out, with a note.
fn https_phase(
    ctx: &mut Ctx<'_>,
    (round, mi, mode): (usize, usize, HttpsMode),
    i: usize,
    ps: &PhaseSpec<'_>,
    f: &mut Field<SweepRow>,
    progress: &mut dyn FnMut(&str),
) {
    let what = format!("{} phase (round {})", mode.name(), round + 1);
    let scen = Scenario::Https;
    let Some(result) = ctx.watched_phase(&mut f.running, i, scen, ps, &what, &mut f.notes) else {
        return;
    };
    let kept = keep(
        &mut f.rows[i],
        &mut f.running[i],
        result,
        mode.name(),
        progress,
        |name, ph| {
            format!(
                "round {} {:<30} {:<14} {:>9.0} req/s  {:>7.2} µs CPU/req  proxy CPU {:>3.0}%",
                round + 1,
                mode.name(),
                name,
                ph.rps,
                ph.cpu_us_per_req,
                ph.proxy_busy * 100.0,
            )
        },
    );
    let Some((ph, r)) = kept else { return };
    let connections = ctx.opts.connections as u64;
    match handshake_mismatch(mode, r.tls_full, r.tls_resumed, connections) {
        None => {
            if let Some(v) = f.rows[i].phases.get_mut(mi) {
                v.push(ph);
            }
        }
        Some(why) => {
            let why = format!("{} round {}: {why}", mode.name(), round + 1);
            progress(&format!("  {}: {why}", f.rows[i].proxy.name()));
            f.notes.push(format!(
                "{}: {why}; the phase is left out.",
                f.rows[i].proxy.name()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_checks() {
        assert_eq!(handshake_mismatch(HttpsMode::KeepAlive, 64, 0, 64), None);
        assert_eq!(handshake_mismatch(HttpsMode::Full, 1000, 0, 64), None);
        assert!(handshake_mismatch(HttpsMode::Full, 990, 10, 64).is_some());
        assert!(handshake_mismatch(HttpsMode::Full, 0, 0, 64).is_some());
        // Each connection's first handshake is full.
        assert_eq!(handshake_mismatch(HttpsMode::Resumed, 64, 184, 64), None);
        assert_eq!(handshake_mismatch(HttpsMode::Resumed, 90, 910, 64), None);
        assert!(handshake_mismatch(HttpsMode::Resumed, 200, 800, 64).is_some());
        assert!(handshake_mismatch(HttpsMode::Resumed, 1000, 0, 64)
            .is_some_and(|w| w.contains("did not resume")));
    }

    #[test]
    fn certificate_files() {
        let dir = std::env::temp_dir().join(format!("tollgate-bench-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (files, what) = write_certificate(&dir).expect("certificate");
        let cert = std::fs::read_to_string(&files.cert).expect("cert");
        let key = std::fs::read_to_string(&files.key).expect("key");
        let both = std::fs::read_to_string(&files.both).expect("both");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(both, format!("{cert}{key}"));
        assert!(what.contains("P-256"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
