#!/usr/bin/env bash
# What `[cluster]` costs per proxied request (issue 19), in instructions for the whole tollgate
# process (every thread: shard, the `tollgate-cluster` sync thread, admin, ...): the
# `gateway-keys` config (API key in a usage plan with throttle + quota, stage and account
# throttles; `traffic config keys`) with an `[admin]` listener, without (`single`) and with
# (`cluster`) a `[cluster]` section pointing at a redis-server this script starts on REDIS
# (`--save '' --appendonly no`); the same configs as the bench's `cluster` scenario
# (bench/src/run/cluster.rs). Each is measured with bench/callgrind-proxy.sh under
# `--separate-threads=yes`, alternating single/cluster for ROUNDS rounds; the script prints
# per round and on average the instructions per request of both, their ratio, and per thread
# kind (shard, sync, other; a thread is named by the functions in its dump) how the
# difference splits. wrk sends the same request (with the x-api-key header) to both; a round
# with non-2xx answers fails the run.
# The sync thread's work is per sync (every sync_interval_ms = 100) and per 10 ms poll, not per
# request; under valgrind it runs fewer syncs than natively (threads take turns; a sync with
# its Redis round trips is slow there), even with `--fair-sched=yes` (the default here; FAIR=
# turns it off), so the script also prints the syncs counted and the instructions per sync:
# natively the sync thread costs about (instructions per sync × 10) ÷ (requests per s) per
# request.
#
# Usage: bench/callgrind-cluster.sh [TOLLGATE_BIN] [ROUNDS] [SECONDS]
#   defaults: target/release/tollgate, 3 rounds, 5 s per measurement
# DUMPS=DIR keeps every measurement's per-thread dumps in DIR/<round>-<config>/ (for
# callgrind_annotate).
# Environment: PORT, ORIGIN, ADMIN, REDIS (ports), NO_BUILD=1 (use the built bench binaries),
# FAIR (valgrind's scheduling option, default --fair-sched=yes).
# Needs valgrind, wrk, curl, ss, redis-server; builds the traffic and tollgate-bench release
# binaries (origin).
set -euo pipefail
cd "$(dirname "$0")/.."
TOLLGATE=${1:-target/release/tollgate}; ROUNDS=${2:-3}; SECS=${3:-5}
TARGET="${CARGO_TARGET_DIR:-target}/release"
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p tollgate-bench --bin traffic --bin tollgate-bench
[ -x "$TOLLGATE" ] || { echo "callgrind-cluster.sh: no tollgate binary at $TOLLGATE" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "callgrind-cluster.sh: redis-server is not installed" >&2; exit 1; }
PORT=${PORT:-24724}; ORIGIN=${ORIGIN:-24725}; ADMIN=${ADMIN:-24726}; REDIS=${REDIS:-24727}
KEY=bench0gold0key000000000000000001

W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-cgcluster.XXXXXX")
OR=; RS=
cleanup() {
    [ -n "$OR" ] && kill "$OR" 2>/dev/null
    [ -n "$RS" ] && kill "$RS" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
# The configs of bench/src/run/cluster.rs's `config`: the same text, `[cluster]` appended.
"$TARGET/traffic" config keys "$PORT" "$ORIGIN" >"$W/single.toml"
printf '\n[admin]\naddress = "127.0.0.1"\nport = %s\n' "$ADMIN" >>"$W/single.toml"
cp "$W/single.toml" "$W/cluster.toml"
printf '\n[cluster]\nredis = "redis://127.0.0.1:%s/0"\nsync_interval_ms = 100\nkey_prefix = "tollgate-bench:"\n' \
    "$REDIS" >>"$W/cluster.toml"
echo 'wrk.path = "/prod/items/8a7b6c5d"' >"$W/path.lua"
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
    --logfile "$W/redis.log" --daemonize no &
RS=$!
"$TARGET/tollgate-bench" origin --port "$ORIGIN" --max-secs $(( ROUNDS * 2 * (SECS + 40) + 60 )) >"$W/origin.log" 2>&1 &
OR=$!
sleep 0.5

# callgrind-proxy.sh stops tollgate without waiting: the next one may start only when the
# ports are free again (the graceful shutdown under valgrind takes a few seconds).
port_free() {
    for _ in $(seq 120); do
        [ -z "$(ss -ltnH "( sport = :$PORT or sport = :$ADMIN )" 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    echo "callgrind-cluster.sh: port $PORT or $ADMIN still in use after 60 s" >&2
    exit 1
}

# The kind of the thread whose callgrind dump is $1, by the functions it ran: `shard`
# (serves connections), `sync` (the `tollgate-cluster` thread), `other` (main, admin, ...).
kind() {
    if grep -Eq 'tollgate::cluster::(sync::)?Sync' "$1"; then echo sync
    elif grep -q 'tollgate::conn::' "$1"; then echo shard
    else echo other
    fi
}

# How many syncs (`Sync::tick` calls; `cluster::sync::Sync` since the module split) the
# dump $1 of the sync thread ran.
ticks() {
    callgrind_annotate --tree=caller --inclusive=yes --threshold=100 "$1" 2>/dev/null | awk 'BEGIN { RS = "" }
        /\* [^\n]*tollgate::cluster::(sync::)?Sync::tick \[/ {
            n = split($0, L, "\n")
            for (i = 1; i <= n; i++)
                if (L[i] ~ /< / && match(L[i], /\([0-9]+x\)$/)) s += substr(L[i], RSTART + 1, RLENGTH - 3)
        }
        END { print s + 0 }'
}

KINDS="shard sync other"
declare -A SUM
for r in $(seq "$ROUNDS"); do
    for cfg in single cluster; do
        port_free
        mkdir -p "$W/dumps"; rm -f "$W"/dumps/*
        line=$(CG_ARGS="--separate-threads=yes ${FAIR---fair-sched=yes}" CG_KEEP="$W/dumps" bench/callgrind-proxy.sh \
            "$TOLLGATE" "$W/$cfg.toml" "$PORT" "$SECS" -s "$W/path.lua" -H "x-api-key: $KEY")
        case "$line" in *" non2xx=0 "*) ;; *) echo "callgrind-cluster.sh: refused or failed requests in round $r ($cfg): $line" >&2; exit 1 ;; esac
        req=${line#requests=}; req=${req%% *}
        per=${line##*per_request=}
        SUM[$cfg]=$(( ${SUM[$cfg]:-0} + per ))
        split=; nt=0
        for k in $KINDS; do
            ir=0
            for f in "$W"/dumps/cg.out.*; do
                [ -f "$f" ] && [ "$(kind "$f")" = "$k" ] || continue
                ir=$(( ir + $(awk '/^summary:|^totals:/ {print $2; exit}' "$f") ))
                [ "$k" != sync ] || nt=$(( nt + $(ticks "$f") ))
            done
            [ "$k" != sync ] || { SUM[$cfg.ticks]=$(( ${SUM[$cfg.ticks]:-0} + nt )); SUM[$cfg.syncir]=$(( ${SUM[$cfg.syncir]:-0} + ir )); }
            SUM[$cfg.$k]=$(( ${SUM[$cfg.$k]:-0} + ir / req ))
            split="$split $k=$(( ir / req ))"
        done
        [ "$cfg" = single ] || split="$split; syncs=$nt in ${SECS} s"
        echo "round $r $cfg: $line (per request by thread:$split)"
        if [ -n "${DUMPS:-}" ]; then
            mkdir -p "$DUMPS/$r-$cfg" && cp "$W"/dumps/cg.out.* "$DUMPS/$r-$cfg/"
        fi
    done
done
single=$(( SUM[single] / ROUNDS )); cluster=$(( SUM[cluster] / ROUNDS ))
awk -v c="$cluster" -v s="$single" 'BEGIN { printf "mean instructions per request: single %d, cluster %d, difference %d, ratio %.3f\n", s, c, c - s, c / s }'
for k in $KINDS; do
    s=$(( SUM[single.$k] / ROUNDS )); c=$(( SUM[cluster.$k] / ROUNDS ))
    printf '  %-6s thread(s): single %d, cluster %d, difference %+d\n' "$k" "$s" "$c" $(( c - s ))
done
# Under valgrind the sync thread may run fewer syncs than one per sync_interval: its cost is
# per sync (and per 10 ms poll), not per request; scale it to the native rate from this.
if [ "${SUM[cluster.ticks]:-0}" -gt 0 ]; then
    echo "sync thread: ${SUM[cluster.ticks]} syncs in $(( ROUNDS * SECS )) s (10 per s natively), $(( SUM[cluster.syncir] / SUM[cluster.ticks] )) instructions per sync (poll loop included)"
fi
