#!/usr/bin/env bash
# User-space CPU instructions per proxied request for the whole tollgate binary, counted by
# valgrind's callgrind while wrk drives it: tollgate runs under callgrind with CONFIG (which
# must listen on 127.0.0.1:PORT), wrk warms it up for 2 s, the counters are zeroed, wrk runs
# for SECONDS, the counters are dumped, and Ir / requests is printed. Instruction counts do
# not depend on the machine's load (batching does a little: compare runs at similar rates).
#
# Usage: bench/callgrind-proxy.sh TOLLGATE_BIN CONFIG PORT [SECONDS] [WRK_ARGS...]
#   e.g. bench/callgrind-proxy.sh target/release/tollgate gw.toml 18080 5 -s paths.lua
#        bench/callgrind-proxy.sh target/release/tollgate gw.toml 18080 5 -H 'x-api-key: ...'
# The origin (if the config proxies) must already be running. Needs valgrind and wrk.
# Environment: CG_ARGS, extra callgrind options (e.g. --separate-threads=yes: one dump per
# thread, the printed instructions are their sum); CG_KEEP, a directory the dumps are copied to.
set -euo pipefail
BIN=$1; CONFIG=$2; PORT=$3; SECS=${4:-5}; shift $(( $# >= 4 ? 4 : $# ))
for tool in valgrind callgrind_control wrk curl; do
    command -v "$tool" >/dev/null || { echo "callgrind-proxy.sh: $tool is not installed" >&2; exit 1; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-cgproxy.XXXXXX")
TG=
# valgrind may not pass SIGTERM on promptly: TERM, a short wait, then KILL.
cleanup() {
    if [ -n "$TG" ]; then
        kill "$TG" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$TG" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$TG" 2>/dev/null || true
    fi
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
# shellcheck disable=SC2086 # CG_ARGS is a list of options
valgrind --tool=callgrind ${CG_ARGS:-} --callgrind-out-file="$W/cg.out" "$BIN" --config "$CONFIG" >"$W/tg.log" 2>&1 &
TG=$!
for _ in $(seq 150); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
done
URL="http://127.0.0.1:$PORT"
wrk -t1 -c16 -d2s "$@" "$URL" >/dev/null
callgrind_control -z "$TG" >/dev/null
wrk -t1 -c16 -d"${SECS}s" "$@" "$URL" >"$W/wrk.out"
callgrind_control -d "$TG" >/dev/null
sleep 1
REQ=$(awk '/requests in/ {print $1}' "$W/wrk.out")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$W/wrk.out"); NON2XX=${NON2XX:-0}
# One dump (or one per thread): the sum of each file's summary (else totals) line.
IR=$(for f in "$W"/cg.out.*; do
    if [ -f "$f" ]; then awk '/^summary:|^totals:/ {print $2; exit}' "$f"; fi
done | awk '{ s += $1 } END { if (NR) print s }')
[ -z "${CG_KEEP:-}" ] || cp "$W"/cg.out.* "$CG_KEEP"/ 2>/dev/null || true
[ -n "$REQ" ] && [ -n "$IR" ] && [ "$REQ" -gt 0 ] || { echo "callgrind-proxy.sh: no measurement"; cat "$W/tg.log" >&2; exit 1; }
echo "requests=$REQ non2xx=$NON2XX instructions=$IR per_request=$(( IR / REQ ))"
