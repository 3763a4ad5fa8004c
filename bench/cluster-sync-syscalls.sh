#!/usr/bin/env bash
# The `tollgate-cluster` sync thread's syscalls, Redis round trips and context switches,
# natively (bench/RESULTS.md, "Cluster cost"): tollgate runs the `cluster` config of
# bench/callgrind-cluster.sh (gateway-keys + [admin] + [cluster], sync_interval_ms = 100)
# against a redis-server this script starts; the thread is found by its name. For 10 s idle,
# then 10 s under `wrk -t1 -c4` with the key: context switches of the thread (from
# /proc/PID/task/TID/status, without strace), then `strace -c -p TID` for another 10 s (a
# `sendto` is one Redis round trip, a `futex` one park). Prints the tables and the cluster
# metrics. Not a CPU-time benchmark: wrk only makes the shard lease.
#
# Usage: bench/cluster-sync-syscalls.sh [TOLLGATE_BIN]   (default target/release/tollgate)
# Environment: PORT, ORIGIN, ADMIN, REDIS (ports). Needs strace, wrk, curl, redis-server and
# the bench's `traffic` and `tollgate-bench` release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/tollgate}
T="${CARGO_TARGET_DIR:-target}/release"
PORT=${PORT:-25724}; ORIGIN=${ORIGIN:-25725}; ADMIN=${ADMIN:-25726}; REDIS=${REDIS:-25727}
KEY=bench0gold0key000000000000000001
W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-clsys.XXXXXX")
RS=; OR=; TG=; WK=
cleanup() {
    for p in $WK $TG $OR $RS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
"$T/traffic" config keys "$PORT" "$ORIGIN" >"$W/c.toml"
printf '\n[admin]\naddress = "127.0.0.1"\nport = %s\n' "$ADMIN" >>"$W/c.toml"
printf '\n[cluster]\nredis = "redis://127.0.0.1:%s/0"\nsync_interval_ms = 100\nkey_prefix = "tollgate-bench:"\n' \
    "$REDIS" >>"$W/c.toml"
echo 'wrk.path = "/prod/items/8a7b6c5d"' >"$W/path.lua"
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
    --logfile "$W/redis.log" --daemonize no &
RS=$!
"$T/tollgate-bench" origin --port "$ORIGIN" --max-secs 90 >"$W/origin.log" 2>&1 &
OR=$!
sleep 0.5
"$BIN" --config "$W/c.toml" >"$W/tg.log" 2>&1 &
TG=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
TID=
for t in /proc/$TG/task/*; do [ "$(cat "$t/comm")" = tollgate-cluste ] && TID=${t##*/}; done
[ -n "$TID" ] || { echo "cluster-sync-syscalls.sh: no tollgate-cluster thread" >&2; cat "$W/tg.log" >&2; exit 1; }
ctx() { awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$TG/task/$TID/status"; }
measure() {
    local c0 c1
    c0=$(ctx); sleep 10; c1=$(ctx)
    echo "== $1: context switches of the sync thread in 10 s: $(( c1 - c0 ))"
    timeout -s INT 10 strace -c -p "$TID" -o "$W/$1.strace" 2>/dev/null || true
    echo "== $1: syscalls of the sync thread in 10 s (strace -c)"
    cat "$W/$1.strace"
}
measure idle
wrk -t1 -c4 -d25s -s "$W/path.lua" -H "x-api-key: $KEY" "http://127.0.0.1:$PORT" >"$W/wrk.out" &
WK=$!
sleep 1.5
measure load
wait "$WK" || true; WK=
echo "== wrk: $(awk '/requests in/' "$W/wrk.out")"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^tollgate_cluster' || true
