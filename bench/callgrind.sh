#!/usr/bin/env bash
# CPU instructions per request for tollgate's in-process request pipeline, counted by
# valgrind's callgrind: request head parse + Gateway::resolve on 1,000 routes + backend head
# + backend response head parse + request id + client head (bench/src/bin/pipeline.rs).
# Runs the pipeline N and 2N times and prints (Ir(2N) - Ir(N)) / N, which removes start-up and
# config compilation. Instruction counts do not depend on the machine's load, so this can run
# while the machine is busy.
#
# Usage: bench/callgrind.sh [N]        (default N = 20000)
#        ANNOTATE=1 bench/callgrind.sh  also prints the functions with the most instructions
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-20000}"
case "$N" in '' | *[!0-9]*) echo "callgrind.sh: N must be a positive integer, got '$N'" >&2; exit 2 ;; esac
[ "$N" -gt 0 ] || { echo "callgrind.sh: N must be > 0" >&2; exit 2; }

if ! command -v valgrind >/dev/null 2>&1; then
    echo "callgrind.sh: valgrind is not installed: apt-get install -y valgrind" >&2
    exit 1
fi

cargo build --release -q -p tollgate-bench --bin pipeline
BIN="${CARGO_TARGET_DIR:-target}/release/pipeline"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-callgrind.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

# Ir (instructions executed) of one run of the pipeline with $1 iterations.
instructions() {
    local n="$1"
    if ! valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.$n" \
        "$BIN" "$n" >"$tmp/stdout.$n" 2>"$tmp/stderr.$n"; then
        echo "callgrind.sh: the pipeline failed with $n iterations:" >&2
        grep -v '^==' "$tmp/stderr.$n" | tail -20 >&2
        exit 1
    fi
    local ir
    ir="$(sed -n 's/^==[0-9]*== Collected : *\([0-9]*\).*/\1/p' "$tmp/stderr.$n" | tail -1)"
    if [ -z "$ir" ]; then
        echo "callgrind.sh: no 'Collected' line from callgrind:" >&2
        tail -20 "$tmp/stderr.$n" >&2
        exit 1
    fi
    echo "$ir"
}

ir1="$(instructions "$N")"
ir2="$(instructions "$((2 * N))")"
per_request=$(( (ir2 - ir1) / N ))
startup=$(( ir1 - per_request * N ))
echo "pipeline: parse request + resolve (1,000 routes) + backend head + parse response + request id + client head"
printf '  %-38s %14s\n' "Ir with N = $N iterations" "$ir1" \
    "Ir with 2N = $((2 * N)) iterations" "$ir2" \
    "start-up (config load, 1,000 routes)" "$startup" \
    "instructions per request" "$per_request"

if [ "${ANNOTATE:-0}" = 1 ] && command -v callgrind_annotate >/dev/null 2>&1; then
    echo
    echo "Functions with the most instructions (2N run, start-up included):"
    callgrind_annotate "$tmp/callgrind.$((2 * N))" 2>/dev/null | sed -n '/^Ir/,$p' | head -25
fi
