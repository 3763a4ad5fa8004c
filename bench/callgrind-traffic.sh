#!/usr/bin/env bash
# CPU instructions per throttle-and-quota decision (tollgate's traffic control), counted by
# valgrind's callgrind: bench/src/bin/traffic.rs runs `pipeline::throttle` (x-api-key header
# scan, key lookup, usage plan throttle, quota lease, stage and account throttles) N and 2N
# times, and this prints (Ir(2N) - Ir(N)) / N, which removes start-up and config compilation;
# then the same for the same route on a config without any limit (the phase's one-branch path).
# Instruction counts do not depend on the machine's load, so this can run while it is busy.
#
# Usage: bench/callgrind-traffic.sh [N]        (default N = 20000)
#        ANNOTATE=1 bench/callgrind-traffic.sh  also prints the functions with the most
#                                               instructions (keyed, 2N run)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-20000}"
case "$N" in '' | *[!0-9]*) echo "callgrind-traffic.sh: N must be a positive integer, got '$N'" >&2; exit 2 ;; esac
[ "$N" -gt 0 ] || { echo "callgrind-traffic.sh: N must be > 0" >&2; exit 2; }

if ! command -v valgrind >/dev/null 2>&1; then
    echo "callgrind-traffic.sh: valgrind is not installed: apt-get install -y valgrind" >&2
    exit 1
fi

cargo build --release -q -p tollgate-bench --bin traffic
BIN="${CARGO_TARGET_DIR:-target}/release/traffic"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-callgrind-traffic.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

# Ir (instructions executed) of one run with $1 iterations of mode $2 (keyed or open).
instructions() {
    local n="$1" mode="$2"
    if ! valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.$mode.$n" \
        "$BIN" "$n" "$mode" >"$tmp/stdout.$mode.$n" 2>"$tmp/stderr.$mode.$n"; then
        echo "callgrind-traffic.sh: the $mode bench failed with $n iterations:" >&2
        grep -v '^==' "$tmp/stderr.$mode.$n" | tail -20 >&2
        exit 1
    fi
    local ir
    ir="$(sed -n 's/^==[0-9]*== Collected : *\([0-9]*\).*/\1/p' "$tmp/stderr.$mode.$n" | tail -1)"
    if [ -z "$ir" ]; then
        echo "callgrind-traffic.sh: no 'Collected' line from callgrind:" >&2
        tail -20 "$tmp/stderr.$mode.$n" >&2
        exit 1
    fi
    echo "$ir"
}

for mode in keyed open; do
    ir1="$(instructions "$N" "$mode")"
    ir2="$(instructions "$((2 * N))" "$mode")"
    per=$(( (ir2 - ir1) / N ))
    case "$mode" in
        keyed) echo "keyed: key lookup + usage plan throttle + quota + stage throttle + account throttle" ;;
        open) echo "open: the same route and request, no limit configured (one branch)" ;;
    esac
    printf '  %-38s %14s\n' "Ir with N = $N decisions" "$ir1" \
        "Ir with 2N = $((2 * N)) decisions" "$ir2" \
        "instructions per decision" "$per"
done
# Wall clock, outside valgrind: noisy on a shared machine.
echo "timed loop, $((50 * N)) decisions (wall clock, noisy):"
for mode in keyed open; do
    printf '  %-6s %s\n' "$mode" "$("$BIN" "$((50 * N))" "$mode")"
done

if [ "${ANNOTATE:-0}" = 1 ] && command -v callgrind_annotate >/dev/null 2>&1; then
    echo
    echo "Functions with the most instructions (keyed, 2N run, start-up included):"
    callgrind_annotate "$tmp/callgrind.keyed.$((2 * N))" 2>/dev/null | sed -n '/^Ir/,$p' | head -25
fi
