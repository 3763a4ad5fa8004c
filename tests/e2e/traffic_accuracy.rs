//! Throttle accuracy on 2 shards: a stage throttle of 20 requests/s, burst 20, over 10 s must
//! admit `20 × 10 + 20` = 220 requests ±5 %, whether the traffic comes on one keep-alive
//! connection (one shard: the other shard's share must move to it) or on 64 connections
//! (spread over both shards). Offered load is far above the limit in both shapes.

use crate::harness::Gateway;
use crate::traffic::{hammer, keyed_config};
use std::time::{Duration, Instant};

const RATE: f64 = 20.0;
const BURST: u64 = 20;
const WINDOW: Duration = Duration::from_secs(10);

fn expected() -> f64 {
    RATE * WINDOW.as_secs_f64() + BURST as f64
}

fn gateway() -> Gateway {
    let stage = format!("throttle = {{ rate = {RATE:.1}, burst = {BURST} }}");
    crate::traffic::start(&keyed_config(1000, "", &stage))
}

fn check(shape: &str, admitted: u64, refused: u64, other: u64) {
    let want = expected();
    eprintln!("{shape}: admitted {admitted}, refused {refused} (want {want} ±5 %)");
    assert_eq!(other, 0, "{shape}: unexpected statuses");
    assert!(
        refused > admitted,
        "{shape}: the load did not exceed the limit ({refused} refused)"
    );
    let error = (admitted as f64 - want) / want;
    assert!(
        error.abs() <= 0.05,
        "{shape}: admitted {admitted} in {WINDOW:?}, want {want} ±5 % (off by {:.1} %)",
        error * 100.0
    );
}

#[test]
fn throttle_accuracy_on_one_connection() {
    let gw = gateway();
    // One connection, about 1,000 requests/s offered.
    let (ok, refused, other) = hammer(
        gw.addr,
        "/prod/open",
        None,
        1,
        Duration::from_millis(1),
        Instant::now() + WINDOW,
        None,
    );
    check("one connection", ok, refused, other);
}

#[test]
fn throttle_accuracy_on_64_connections() {
    let gw = gateway();
    // 64 connections, each about 60 requests/s offered.
    let (ok, refused, other) = hammer(
        gw.addr,
        "/prod/open",
        None,
        64,
        Duration::from_millis(16),
        Instant::now() + WINDOW,
        None,
    );
    check("64 connections", ok, refused, other);
}
