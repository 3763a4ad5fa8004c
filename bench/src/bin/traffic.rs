//! `traffic N [keyed|open]`: runs tollgate's throttle-and-quota phase (`pipeline::throttle`:
//! the `x-api-key` header scan, the key lookup, the usage plan throttle, the quota lease, the
//! stage and account throttles) N times, for counting CPU instructions per decision under
//! callgrind (`bench/callgrind-traffic.sh` runs it with N and 2N and divides the difference by
//! N, which removes start-up and config compilation). It also times the loop and prints ns per
//! decision (wall clock: noisy on a shared machine; the instruction count is the number to use).
//!
//! `keyed` (the default) is `GET /prod/items/{id}` with `api_key_required`, the key in a usage
//! plan with a throttle and a quota, a stage throttle and the account throttle; `open` is the
//! same route and request on a config with none of them (the phase's one-branch path). The
//! limits are high enough that nothing is ever refused: a refusal fails the run.
//!
//! `traffic config keys|plain LISTEN ORIGIN` prints the proxy configs `bench/callgrind-keys.sh`
//! compares: the same REST route proxied to 127.0.0.1:ORIGIN with the limits above (`keys`)
//! and without any (`plain`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Instant;
use tollgate_bench::configs::{tollgate_traffic as config_text, TRAFFIC_KEY as KEY};
use tollgate_core::config;
use tollgate_core::forward::ClientInfo;
use tollgate_core::http::{request, MAX_HEADERS};
use tollgate_core::pipeline::{self, Context};
use tollgate_core::request_id::RequestIds;
use tollgate_core::traffic::quota::AtomicQuotaStore;
use tollgate_core::traffic::{Now, ShardTraffic};

/// Decisions per simulated second: the bucket clock advances by 1e9 / RATE ns per decision,
/// far below every limit's rate.
const SIMULATED_RATE: u64 = 1_000_000;

/// A browser-like request head with the key (sent to both configs: the same bytes to parse).
fn request_head() -> Vec<u8> {
    format!(
        "GET /prod/items/8a7b6c5d?expand=owner&limit=20 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
x-api-key: {KEY}\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f9a1c; theme=dark\r\n\
\r\n"
    )
    .into_bytes()
}

fn usage() -> ExitCode {
    eprintln!("usage: traffic ITERATIONS [keyed|open]\n       traffic config keys|plain LISTEN_PORT ORIGIN_PORT");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("config") {
        let keys = match args.get(1).map(String::as_str) {
            Some("keys") => true,
            Some("plain") => false,
            _ => return usage(),
        };
        let port = |i: usize| args.get(i).and_then(|a| a.parse::<u16>().ok());
        let (Some(listen), Some(origin)) = (port(2), port(3)) else {
            return usage();
        };
        print!("{}", config_text(keys, listen, origin));
        return ExitCode::SUCCESS;
    }
    let Some(Ok(n)) = args.first().map(|a| a.parse::<u64>()) else {
        return usage();
    };
    let keys = match args.get(1).map(String::as_str) {
        None | Some("keyed") => true,
        Some("open") => false,
        Some(_) => return usage(),
    };
    run(n, keys)
}

fn run(n: u64, keys: bool) -> ExitCode {
    let text = config_text(keys, 18080, 9000);
    let gateway = match config::load_str("<traffic bench>", &text) {
        Ok(g) => g,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let client = ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        port: 18080,
        proto: "http",
    };
    let raw = request_head();
    let mut req_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let req = match request::parse(&raw, &mut req_headers, 10 * 1024) {
        Ok(Some(r)) => r,
        other => {
            eprintln!("request did not parse: {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut ids = RequestIds::new(0x5eed);
    let mut ctx = Context::new(ids.next(), client, Instant::now(), &req);
    let m = match pipeline::dispatch(&gateway, &req, &mut ctx) {
        Ok(m) => m,
        Err(f) => {
            eprintln!("no route for {}: {f:?}", req.path);
            return ExitCode::FAILURE;
        }
    };
    let mut shard = ShardTraffic::new(&gateway.traffic, 0, 1, 0);
    let store = AtomicQuotaStore::new(gateway.traffic.memberships.len());
    // 2025-12-01T00:00:00Z; the bucket clock is simulated so that runs are deterministic.
    let unix_secs = 1_764_547_200;
    let step = 1_000_000_000 / SIMULATED_RATE;
    let mut mono_ns = 1_000_000_000u64;
    let mut keyed = 0u64;
    let started = Instant::now();
    for i in 0..n {
        mono_ns += step;
        let now = Now { mono_ns, unix_secs };
        let r = pipeline::throttle(
            &gateway,
            black_box(&req),
            &m,
            &mut ctx,
            &mut shard,
            &store,
            || black_box(now),
        );
        if let Err(f) = r {
            eprintln!("decision {i} refused: {f:?}");
            return ExitCode::FAILURE;
        }
        keyed += u64::from(black_box(ctx.api_key).is_some());
    }
    let elapsed = started.elapsed();
    let expected = if keys { n } else { 0 };
    if keyed != expected {
        eprintln!("{keyed} of {n} decisions carried the key, expected {expected}");
        return ExitCode::FAILURE;
    }
    let ns = elapsed.as_nanos() as f64 / n.max(1) as f64;
    println!(
        "{n} iterations, {keyed} keyed, {ns:.1} ns per decision (wall clock, noisy: use the instruction count)"
    );
    ExitCode::SUCCESS
}
