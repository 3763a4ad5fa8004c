//! Quota counts across restarts (2 shards): exact across a graceful stop (SIGTERM), within one
//! flush interval across `kill -9`; a missing state file starts from 0 with a log line; a
//! corrupt one is refused and left as it was (and `--reset-state` moves it aside); `tollgate
//! usage` reports the counts from the file; a quota `offset` is charged in the initial period
//! and kept (not charged again) across a restart.

use crate::harness::{config_text, free_port, run_to_end, Gateway, TempDir};
use crate::traffic::{keyed_config, statuses, two_shards, wait_all_shards, ALICE};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMIT: u64 = 40;
const USED: usize = 37;

struct Setup {
    dir: TempDir,
    config: PathBuf,
    state: PathBuf,
    addr: SocketAddr,
}

fn setup(tag: &str, flush_ms: u64) -> Setup {
    let dir = TempDir::new(tag);
    let state = dir.path.join("quota.state");
    let port = free_port();
    let server = two_shards()
        .with("state_file", &format!("{:?}", state.display().to_string()))
        .with("state_flush_ms", &flush_ms.to_string());
    let config = dir.write(
        "gateway.toml",
        &config_text(&server, port, &keyed_config(LIMIT, "", "")),
    );
    Setup {
        dir,
        config,
        state,
        addr: ([127, 0, 0, 1], port).into(),
    }
}

impl Setup {
    fn start(&self) -> Gateway {
        let args = [std::ffi::OsStr::new("--config"), self.config.as_os_str()];
        let gw = Gateway::spawn(&args, self.addr, None);
        wait_all_shards(&gw);
        gw
    }
}

/// Sends `sig` to the gateway and waits (at most 5 s) until it has exited.
fn signal_and_wait(gw: &Gateway, sig: i32) {
    let pid = gw.pid();
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}");
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Exited: a zombie until the harness waits for it (or gone).
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "gateway did not exit on signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `used` count of alice in `tollgate usage --config ... --key alice`.
fn usage_used(config: &Path) -> u64 {
    let (code, out) = run_to_end(&[
        Path::new("usage"),
        Path::new("--config"),
        config,
        Path::new("--key"),
        Path::new("alice"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let at = out
        .find("\"used\": ")
        .unwrap_or_else(|| panic!("no used in {out}"));
    out[at + 8..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad usage output {out}"))
}

/// After a restart, the remaining quota is exactly `LIMIT - USED`.
fn assert_resumed(s: &Setup) {
    let gw = s.start();
    assert!(
        gw.wait_output("resumed 1 quota counter", Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    let left = (LIMIT as usize) - USED;
    let got = statuses(s.addr, "/prod/keyed", Some(ALICE), left + 3);
    let ok = got.iter().filter(|c| **c == 200).count();
    assert_eq!(ok, left, "after the restart: {got:?}");
}

#[test]
fn quota_counts_survive_a_graceful_restart_exactly() {
    // A long flush interval: only the exit path can have written the counts.
    let s = setup("graceful", 3_600_000);
    let gw = s.start();
    assert!(
        gw.wait_output("does not exist yet", Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    // Spread over two connections (likely both shards) so both hold leases at the stop.
    let a = statuses(s.addr, "/prod/keyed", Some(ALICE), 20);
    let b = statuses(s.addr, "/prod/keyed", Some(ALICE), USED - 20);
    assert!(a.iter().chain(&b).all(|c| *c == 200));
    signal_and_wait(&gw, libc::SIGTERM);
    assert!(gw.output().contains("quota state saved"), "{}", gw.output());
    drop(gw);
    assert_eq!(usage_used(&s.config), USED as u64);
    assert_resumed(&s);
}

#[test]
fn quota_counts_survive_kill_9_within_one_interval() {
    let s = setup("kill9", 200);
    let gw = s.start();
    let got = statuses(s.addr, "/prod/keyed", Some(ALICE), USED);
    assert!(got.iter().all(|c| *c == 200));
    // Leases go back every 100 ms, the file is written every 200 ms: after one interval
    // (and a margin) the file holds the count.
    std::thread::sleep(Duration::from_millis(600));
    signal_and_wait(&gw, libc::SIGKILL);
    drop(gw);
    assert_eq!(usage_used(&s.config), USED as u64);
    assert_resumed(&s);
}

#[test]
fn a_corrupt_state_file_is_refused_and_left_as_it_was() {
    let s = setup("corrupt", 200);
    let bad = "tollgate-quota-state 1\ngold\talice\t0\t5\ncrc32 00000000\n";
    std::fs::write(&s.state, bad).expect("write state");
    let (code, out) = run_to_end(&[Path::new("--config"), &s.config]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is refused") && out.contains("--reset-state"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&s.state).expect("state kept"), bad);
    // `tollgate usage` refuses it too.
    let (code, out) = run_to_end(&[Path::new("usage"), Path::new("--config"), &s.config]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(std::fs::read_to_string(&s.state).expect("state kept"), bad);

    // --reset-state starts from 0 and keeps the bad file aside.
    let args = [
        std::ffi::OsStr::new("--reset-state"),
        std::ffi::OsStr::new("--config"),
        s.config.as_os_str(),
    ];
    let gw = Gateway::spawn(&args, s.addr, None);
    wait_all_shards(&gw);
    let aside: Vec<_> = std::fs::read_dir(&s.dir.path)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("quota.state.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{}", gw.output());
    assert_eq!(
        std::fs::read_to_string(aside[0].path()).expect("aside"),
        bad
    );
    let got = statuses(s.addr, "/prod/keyed", Some(ALICE), 3);
    assert_eq!(got, [200, 200, 200]);
}

#[test]
fn a_state_file_that_cannot_be_written_stops_the_start() {
    let s = setup("unwritable", 200);
    let text = std::fs::read_to_string(&s.config).expect("config");
    let missing_dir = s.dir.path.join("no-such-dir").join("quota.state");
    let text = text.replace(
        &format!("{:?}", s.state.display().to_string()),
        &format!("{:?}", missing_dir.display().to_string()),
    );
    std::fs::write(&s.config, text).expect("config");
    let (code, out) = run_to_end(&[Path::new("--config"), &s.config]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot write quota state"), "{out}");
}

/// The admin listener's `GET /usage` reports the live counters (no state file needed), in the
/// same shape as `tollgate usage`, and refuses unknown names.
#[test]
fn admin_usage_reports_live_quota_counts() {
    let dir = TempDir::new("live-usage");
    let port = free_port();
    let admin_port = free_port();
    let text = format!(
        "{}\n[admin]\nport = {admin_port}\n",
        config_text(&two_shards(), port, &keyed_config(LIMIT, "", ""))
    );
    let config = dir.write("gateway.toml", &text);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let gw = Gateway::spawn(&args, addr, None);
    wait_all_shards(&gw);
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let sent = 9;
    let got = statuses(addr, "/prod/keyed", Some(ALICE), sent);
    assert!(got.iter().all(|c| *c == 200), "{got:?}");
    // Shards hand back unused lease blocks at the next tick (100 ms): poll for the count.
    let deadline = Instant::now() + Duration::from_secs(3);
    let body = loop {
        let (status, body) = crate::ops_support::admin_get(admin, "/usage?key=alice");
        assert_eq!(status, 200, "{body}");
        if body.contains(&format!("\"used\": {sent},")) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("\"source\": \"live\""), "{body}");
    assert!(body.contains("\"keyId\": \"alice\""), "{body}");
    assert!(body.contains(&format!("\"used\": {sent},")), "{body}");
    assert!(
        body.contains(&format!("\"remaining\": {},", LIMIT as usize - sent)),
        "{body}"
    );
    assert!(
        !body.contains(ALICE),
        "the key's value must never appear: {body}"
    );
    let (status, body) = crate::ops_support::admin_get(admin, "/usage?key=nobody");
    assert_eq!(status, 404, "{body}");
    drop(dir);
}

#[test]
fn the_quota_offset_is_charged_in_the_initial_period_and_kept_across_a_restart() {
    // WEEK quota of 40 with `offset = 30`: alice's first week (no state file yet) allows 10.
    let dir = TempDir::new("offset");
    let state = dir.path.join("quota.state");
    let port = free_port();
    let server = two_shards()
        .with("state_file", &format!("{:?}", state.display().to_string()))
        .with("state_flush_ms", "3600000");
    let plans = keyed_config(LIMIT, "", "").replacen(
        "period = \"DAY\" }",
        "period = \"WEEK\", offset = 30 }",
        1,
    );
    assert!(plans.contains("offset = 30"));
    let s = Setup {
        config: dir.write("gateway.toml", &config_text(&server, port, &plans)),
        dir,
        state,
        addr: ([127, 0, 0, 1], port).into(),
    };
    let gw = s.start();
    let got = statuses(s.addr, "/prod/keyed", Some(ALICE), 4);
    assert!(got.iter().all(|c| *c == 200), "{got:?}");
    signal_and_wait(&gw, libc::SIGTERM);
    drop(gw);
    // The pre-charged counter is in the state file: 30 + 4.
    assert!(s.state.exists());
    assert_eq!(usage_used(&s.config), 34);
    // The restart resumes it and does not charge the offset again: exactly 6 left.
    let gw = s.start();
    assert!(
        gw.wait_output("resumed 1 quota counter", Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    let got = statuses(s.addr, "/prod/keyed", Some(ALICE), 9);
    assert_eq!(got.iter().filter(|c| **c == 200).count(), 6, "{got:?}");
    drop(gw);
}
