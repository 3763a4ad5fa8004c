#!/usr/bin/env bash
# Traffic control's cost per proxied request for the whole tollgate binary: the same REST
# route (GET /prod/items/{id} → the bench origin) with an API key in a usage plan (throttle +
# quota), a stage throttle and the account throttle (`keys`), against the same route with no
# limit at all (`plain`), each measured with bench/callgrind-proxy.sh (user-space instructions
# per request under callgrind while wrk drives it), alternating keys/plain for ROUNDS rounds in
# one sitting. wrk sends the same request (with the x-api-key header) to both. The configs come
# from `traffic config keys|plain` (bench/src/bin/traffic.rs); their limits are far above what
# wrk reaches, and a round with non-2xx answers fails the run.
#
# Usage: bench/callgrind-keys.sh [TOLLGATE_BIN] [ROUNDS] [SECONDS]
#   defaults: target/release/tollgate, 3 rounds, 5 s per measurement
# Needs valgrind, wrk, curl, ss; builds the traffic and tollgate-bench release binaries (origin).
set -euo pipefail
cd "$(dirname "$0")/.."
TOLLGATE=${1:-target/release/tollgate}; ROUNDS=${2:-3}; SECS=${3:-5}
TARGET="${CARGO_TARGET_DIR:-target}/release"
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p tollgate-bench --bin traffic --bin tollgate-bench
[ -x "$TOLLGATE" ] || { echo "callgrind-keys.sh: no tollgate binary at $TOLLGATE" >&2; exit 1; }
PORT=${PORT:-24714}; ORIGIN=${ORIGIN:-24715}
KEY=bench0gold0key000000000000000001

W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-cgkeys.XXXXXX")
OR=
cleanup() { [ -n "$OR" ] && kill "$OR" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM
"$TARGET/traffic" config keys "$PORT" "$ORIGIN" >"$W/keys.toml"
"$TARGET/traffic" config plain "$PORT" "$ORIGIN" >"$W/plain.toml"
echo 'wrk.path = "/prod/items/8a7b6c5d"' >"$W/path.lua"
"$TARGET/tollgate-bench" origin --port "$ORIGIN" --max-secs $(( ROUNDS * 2 * (SECS + 40) + 60 )) >"$W/origin.log" 2>&1 &
OR=$!
sleep 0.5

# callgrind-proxy.sh stops tollgate without waiting: the next one may start only when the
# port is free again (the graceful shutdown under valgrind takes a few seconds).
port_free() {
    for _ in $(seq 120); do
        [ -z "$(ss -ltnH "sport = :$PORT" 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    echo "callgrind-keys.sh: port $PORT still in use after 60 s" >&2
    exit 1
}

declare -A SUM
for r in $(seq "$ROUNDS"); do
    for cfg in keys plain; do
        port_free
        line=$(bench/callgrind-proxy.sh "$TOLLGATE" "$W/$cfg.toml" "$PORT" "$SECS" \
            -s "$W/path.lua" -H "x-api-key: $KEY")
        echo "round $r $cfg: $line"
        case "$line" in *" non2xx=0 "*) ;; *) echo "callgrind-keys.sh: refused or failed requests in round $r ($cfg)" >&2; exit 1 ;; esac
        per=${line##*per_request=}
        SUM[$cfg]=$(( ${SUM[$cfg]:-0} + per ))
    done
done
keys=$(( SUM[keys] / ROUNDS )); plain=$(( SUM[plain] / ROUNDS ))
awk -v k="$keys" -v p="$plain" 'BEGIN { printf "mean instructions per request: keys %d, plain %d, difference %d (%+.1f %%)\n", k, p, k - p, (k - p) * 100 / p }'
