#!/usr/bin/env bash
# What the TLS path costs per request, in user-space CPU instructions of the whole tollgate
# binary counted by valgrind's callgrind (see bench/callgrind-proxy.sh; instruction counts do
# not depend on the machine's load). One tollgate on one shard, under callgrind, with two
# listeners on the same HTTP API ($default route, http_proxy to the bench origin): plain HTTP
# on PORT and TLS on PORT+1 (a self-signed ECDSA P-256 certificate made here with openssl, as
# the bench's `https` scenario uses). tollgate-load drives four cases, 16 connections, closed
# loop, GET PATH (default /1k: a 1 KiB body):
#   plain-keepalive   plain HTTP/1.1 keep-alive
#   tls-keepalive     TLS 1.3 keep-alive (TLS13_AES_128_GCM_SHA256, X25519: tollgate-load's)
#   tls-full          a new connection and a full handshake per request
#   tls-resumed       a new connection and a resumed handshake (ticket) per request
# Each case runs twice after a warm-up, N and 2N requests, with the counters zeroed before and
# dumped after each run; per request = (Ir(2N) - Ir(N)) / (requests(2N) - requests(N)), which
# leaves out what a run pays once (the keep-alive connections' handshakes, start and end).
# Every response must be a 2xx and the handshake counts must match the case, else it fails.
# Then callgrind_annotate lists the top inclusive functions of the tls-keepalive 2N run and
# the instructions per request of that run grouped as: AEAD seal/open (ring), rustls record
# layer and buffering, our copies between the socket buffers and rustls, the rest.
#
# Usage: bench/callgrind-tls.sh TOLLGATE_BIN TOLLGATE_LOAD_BIN TOLLGATE_BENCH_BIN [N] [PATH]
#   e.g. bench/callgrind-tls.sh target/release/tollgate target/release/tollgate-load \
#            target/debug/tollgate-bench 4000
# N (default 4000) is the keep-alive cases' N; the handshake cases use N/10. Build tollgate
# and tollgate-load with --release (debug builds are not representative);
# TOLLGATE_BENCH_BIN runs the origin (`tollgate-bench origin`, not measured: any build will
# do). Ports: $TLS_COST_PORT (default 18580) plain, +1 TLS, +2 the origin. Set KEEP=DIR to
# keep the callgrind dumps and the annotations in DIR; CASES="plain-keepalive tls-keepalive"
# runs only those (the analysis needs both keep-alive cases). Needs valgrind, callgrind_annotate,
# openssl, curl, python3.
set -euo pipefail
# --- where the keep-alive requests spend it ----------------------------------------------------
# Per function, (Ir in the 2N run - Ir in the N run) / requests, like the totals: inclusive,
# self, and memcpy/memmove by caller (callgrind_annotate --tree=caller).
analyze() {
for case in plain-keepalive tls-keepalive; do
    for k in 1 2; do
        f=$W/cg.out.$case.$k
        callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$f" >"$W/$case.$k.inclusive.txt" 2>/dev/null
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$f" >"$W/$case.$k.self.txt" 2>/dev/null
        callgrind_annotate --auto=no --tree=caller --inclusive=no --threshold=100 "$f" >"$W/$case.$k.callers.txt" 2>/dev/null
    done
done
for case in tls-full tls-resumed; do
    [ -e "$W/cg.out.$case.2" ] || continue
    for k in 1 2; do
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$W/cg.out.$case.$k" >"$W/$case.$k.self.txt" 2>/dev/null
    done
done
python3 - "$W" "${TOP:-40}" <<'PY'
import json, os, re, sys
w, top = sys.argv[1], int(sys.argv[2])
LINE = re.compile(r"^\s*([\d,]+) \([\s\d.]+%\)\s+([<*]\s+)?(.*)$")
def name(s):
    # "file:function [object]" / "file:function (12x) [object]": the function.
    s = re.sub(r"\s+\[[^\]]*\]$", "", s.strip())
    s = re.sub(r"\s+\(\d[\d,]*x\)$", "", s)
    return s.split(":", 1)[1] if ":" in s and not s.startswith(":") else s
def table(path):
    # Mid-run dumps list the threads' bottom frames (clone, start_thread, ...) with the whole
    # total even in self mode: those rows are left out.
    t, total = {}, None
    for l in open(path):
        if "PROGRAM TOTALS" in l:
            total = int(l.split()[0].replace(",", ""))
            continue
        m = LINE.match(l)
        if m:
            v = int(m.group(1).replace(",", ""))
            if total and v >= 0.9 * total:
                continue
            f = name(m.group(3))
            t[f] = t.get(f, 0) + v
    return t
COPY = re.compile(r"mem(cpy|move)")
def copies(path):
    # tree=caller: the callers' lines ("<") come before their callee's ("*").
    by, pending = {}, []
    for l in open(path):
        m = LINE.match(l)
        if not m:
            if not l.strip():
                pending = []
            continue
        mark, f, ir = (m.group(2) or "").strip(), name(m.group(3)), int(m.group(1).replace(",", ""))
        if mark == "<":
            pending.append((f, ir))
        elif mark == "*":
            if COPY.search(f):
                for c, i in pending:
                    by[c] = by.get(c, 0) + i
            pending = []
    return by
def diff(a, b, req):
    return {k: (b.get(k, 0) - a.get(k, 0)) / req for k in set(a) | set(b)}
def requests(case, k):
    return json.load(open(f"{w}/{case}.{k}.json"))["requests"]
AEAD = re.compile(r"^ring::aead|ring_core_\S*(aes|gcm|ghash|chacha|poly1305|CRYPTO_memcmp)|aes_hw|aesni|gcm_|ghash", re.I)
ALLOC = re.compile(r"^(malloc|free|realloc|_int_malloc|_int_free|_int_realloc|unlink_chunk|malloc_consolidate|__rust_alloc|__rust_dealloc|__rdl_)")
RUSTLS = re.compile(r"rustls::")
# Our copies between the socket buffers and rustls: ciphertext into rustls (read_tls),
# plaintext out of rustls (Reader::read), ciphertext out of rustls into wbuf (write_tls),
# and whatever tollgate::net::tls itself copies.
OURS = re.compile(r"tollgate::net::tls::|read_tls|write_tls|rustls::conn::Reader|ChunkVecBuffer.*(read|write_to)|DeframerVecBuffer")
result = {}
for case in ("plain-keepalive", "tls-keepalive"):
    req = requests(case, 2) - requests(case, 1)
    inc = diff(table(f"{w}/{case}.1.inclusive.txt"), table(f"{w}/{case}.2.inclusive.txt"), req)
    slf = diff(table(f"{w}/{case}.1.self.txt"), table(f"{w}/{case}.2.self.txt"), req)
    cp = diff(copies(f"{w}/{case}.1.callers.txt"), copies(f"{w}/{case}.2.callers.txt"), req)
    result[case] = (inc, slf, cp)
inc, slf, cp = result["tls-keepalive"]
# Recursion through the futures' poll functions makes callgrind's inclusive counts of the
# executor and connection tasks too high (they count a frame once per level): read the
# inclusive table for leaf-side functions (rustls, ring, net::tls), the self tables for sums.
ROOT = re.compile(r"^(start_thread|clone|__rust_try|std::|core::ops::function|<core::panic|scoped_tls|glommio::executor|tollgate::runtime::run|<std::sys|events annotated)")
print(f"\ntls-keepalive: top {top} inclusive functions, Ir per request ((2N - N) / requests)")
for f, v in [x for x in sorted(inc.items(), key=lambda x: -x[1]) if not ROOT.search(x[0])][:top]:
    print(f"{v:>10.0f}  {f[:150]}")
pslf = result["plain-keepalive"][1]
print(f"\nself Ir per request, tls-keepalive minus plain-keepalive, top {top}")
d = {k: slf.get(k, 0) - pslf.get(k, 0) for k in set(slf) | set(pslf)}
for f, v in sorted(d.items(), key=lambda x: -abs(x[1]))[:top]:
    print(f"{v:>10.0f}  {f[:150]}")
print("\ntls-keepalive: memcpy/memmove by caller, Ir per request")
for f, v in sorted(cp.items(), key=lambda x: -x[1])[:15]:
    if v >= 1:
        print(f"{v:>10.0f}  {f[:150]}")
print("\nself Ir per request by group            plain-keepalive  tls-keepalive  difference")
rows = {}
for case, (inc_, slf_, cp_) in result.items():
    # memcpy/memmove by caller: ours (above), rustls's own (into its records and its
    # plaintext buffer), the rest.
    ours = sum(v for f, v in cp_.items() if OURS.search(f))
    theirs = sum(v for f, v in cp_.items() if RUSTLS.search(f) and not OURS.search(f))
    allcopy = sum(v for f, v in slf_.items() if COPY.search(f))
    other = allcopy - ours - theirs
    g = {"AEAD seal/open (ring)": 0.0, "rustls record layer and buffering": theirs,
         "our copies socket buffers <-> rustls": ours, "the rest": other,
         "  of which the allocator": 0.0, "  of which other memcpy/memmove": other,
         "  of which tollgate::net::tls (self)": 0.0}
    for f, v in slf_.items():
        if COPY.search(f):
            continue
        if AEAD.search(f):
            g["AEAD seal/open (ring)"] += v
        elif RUSTLS.search(f):
            g["rustls record layer and buffering"] += v
        else:
            g["the rest"] += v
            if ALLOC.search(f):
                g["  of which the allocator"] += v
            elif f.startswith("tollgate::net::tls::"):
                g["  of which tollgate::net::tls (self)"] += v
    g["total"] = sum(slf_.values())
    rows[case] = g
for k in rows["tls-keepalive"]:
    p, t = rows["plain-keepalive"][k], rows["tls-keepalive"][k]
    print(f"{k:<42} {p:>10.0f} {t:>14.0f} {t - p:>11.0f}")
# The handshake cases: self Ir per request by group and the top functions.
CRYPTO = re.compile(r"^ring::|ring_core_|aesni|x25519|ecp_nistz|sha256|^_?gcm|CRYPTO_|^fe_|^ge_|^table_select", re.I)
for case in ("tls-full", "tls-resumed"):
    if not os.path.exists(f"{w}/{case}.2.self.txt"):
        continue
    req = requests(case, 2) - requests(case, 1)
    slf = diff(table(f"{w}/{case}.1.self.txt"), table(f"{w}/{case}.2.self.txt"), req)
    total = sum(slf.values())
    crypto = sum(v for f, v in slf.items() if CRYPTO.search(f))
    rl = sum(v for f, v in slf.items() if RUSTLS.search(f) and not CRYPTO.search(f))
    al = sum(v for f, v in slf.items() if ALLOC.search(f))
    print(f"\n{case}: {total:.0f} Ir per request: ring {crypto:.0f} ({crypto / total:.0%}), rustls {rl:.0f} ({rl / total:.0%}), allocator {al:.0f} ({al / total:.0%}), the rest {total - crypto - rl - al:.0f}; top 12 self")
    for f, v in sorted(slf.items(), key=lambda x: -x[1])[:12]:
        print(f"{v:>10.0f}  {f[:150]}")
PY
}
if [ "${1:-}" = --analyze ]; then
    # Re-annotate a KEEP directory of an earlier run.
    W=$(realpath "$2"); analyze; exit 0
fi
TG_BIN=$(realpath "$1"); LOAD_BIN=$(realpath "$2"); ORIGIN_BIN=$(realpath "$3")
N=${4:-4000}; REQ_PATH=${5:-/1k}
case "$N" in '' | *[!0-9]*) echo "callgrind-tls.sh: N must be a positive integer, got '$N'" >&2; exit 2 ;; esac
[ "$N" -ge 20 ] || { echo "callgrind-tls.sh: N must be at least 20" >&2; exit 2; }
for tool in valgrind callgrind_control callgrind_annotate openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "callgrind-tls.sh: $tool is not installed" >&2; exit 1; }
done
PORT=${TLS_COST_PORT:-18580}; TPORT=$((PORT + 1)); OPORT=$((PORT + 2))
W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-cgtls.XXXXXX")
TG=; OR=
# valgrind may not pass SIGTERM on promptly: TERM, a short wait, then KILL.
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$TG"; stop "$OR"
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$W"/cg.out* "$W"/*.txt "$W"/*.json "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat >"$W/gw.toml" <<EOF
[server]
shards = 1
drain_timeout_ms = 1000
[[listeners]]
address = "127.0.0.1"
port = $PORT
[[listeners]]
address = "127.0.0.1"
port = $TPORT
tls = { certificate = "$W/cert.pem", key = "$W/key.pem" }
[[apis]]
name = "bench"
protocol = "http"
  [[apis.stages]]
  name = "\$default"
  [[apis.routes]]
  key = "\$default"
  integration = { type = "http_proxy", uri = "http://127.0.0.1:$OPORT" }
EOF
"$TG_BIN" validate "$W/gw.toml" >/dev/null

"$ORIGIN_BIN" origin --port "$OPORT" --max-secs 3600 >"$W/origin.log" 2>&1 &
OR=$!
valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$TG_BIN" --config "$W/gw.toml" \
    >"$W/tg.log" 2>&1 &
TG=$!
up=
for _ in $(seq 300); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT$REQ_PATH" &&
        curl -sf -o /dev/null --cacert "$W/cert.pem" "https://localhost:$TPORT$REQ_PATH" \
            --resolve "localhost:$TPORT:127.0.0.1"; then
        up=1; break
    fi
    sleep 0.2
done
[ -n "$up" ] || { echo "callgrind-tls.sh: tollgate did not answer on both listeners" >&2; cat "$W/tg.log" >&2; exit 1; }

DUMPS=0
# One run of case $1 with $2 requests: its Ir (from the dump after it) and its JSON report.
run() {
    local case=$1 n=$2 out=$3 args=()
    case $case in
        plain-keepalive) args=("http://127.0.0.1:$PORT$REQ_PATH") ;;
        tls-keepalive) args=(--tls "https://127.0.0.1:$TPORT$REQ_PATH") ;;
        tls-full) args=(--tls --new-conn-per-request "https://127.0.0.1:$TPORT$REQ_PATH") ;;
        tls-resumed) args=(--tls --resume --new-conn-per-request "https://127.0.0.1:$TPORT$REQ_PATH") ;;
    esac
    "$LOAD_BIN" -q -c 16 -d 600s --timeout 60s -n "$n" --json "$W/$out.json" "${args[@]}" >/dev/null
}
measure() {
    local case=$1 n=$2 out=$3
    callgrind_control -z "$TG" >/dev/null
    run "$case" "$n" "$out"
    callgrind_control -d "$TG" >/dev/null
    DUMPS=$((DUMPS + 1))
    for _ in $(seq 100); do [ -s "$W/cg.out.$DUMPS" ] && break; sleep 0.1; done
    sleep 0.5
    mv "$W/cg.out.$DUMPS" "$W/cg.out.$out"
}

printf '%-16s %9s %12s %12s %10s %8s\n' case requests "Ir(N)" "Ir(2N)" Ir/request vs-plain
PLAIN=
for case in ${CASES:-plain-keepalive tls-keepalive tls-full tls-resumed}; do
    n=$N
    case $case in tls-full | tls-resumed) n=$((N / 10)) ;; esac
    run "$case" "$((n / 4))" "$case.warm"
    measure "$case" "$n" "$case.1"
    measure "$case" "$((2 * n))" "$case.2"
    line=$(python3 - "$W" "$case" <<'PY'
import json, re, sys
w, case = sys.argv[1], sys.argv[2]
def ir(path):
    with open(path) as f:
        for l in f:
            m = re.match(r"^(summary|totals): (\d+)", l)
            if m:
                return int(m.group(2))
    raise SystemExit(f"{path}: no totals")
out = []
for k in ("1", "2"):
    r = json.load(open(f"{w}/{case}.{k}.json"))
    ok = r["status"]["2xx"]
    bad = sum(v for k2, v in r["status"].items() if k2 != "2xx")
    errs = sum(v for v in r["errors"].values()) if isinstance(r["errors"], dict) else 0
    if r["requests"] == 0 or bad or errs or ok != r["requests"]:
        raise SystemExit(f"{case}.{k}: {r['requests']} responses, {ok} 2xx, errors {r['errors']}")
    tls = r.get("tls") or {}
    full, res = tls.get("full_handshakes", 0), tls.get("resumed_handshakes", 0)
    if case == "tls-full" and (res or full < r["requests"]):
        raise SystemExit(f"{case}.{k}: {full} full, {res} resumed for {r['requests']} requests")
    if case == "tls-resumed" and res < r["requests"] - 16:
        raise SystemExit(f"{case}.{k}: {full} full, {res} resumed for {r['requests']} requests")
    if case.endswith("keepalive") and r["connects"] > 16:
        raise SystemExit(f"{case}.{k}: {r['connects']} connections for a keep-alive run")
    out.append((r["requests"], ir(f"{w}/cg.out.{case}.{k}")))
(r1, i1), (r2, i2) = out
print(r2 - r1, i1, i2, (i2 - i1) // (r2 - r1))
PY
) || { echo "callgrind-tls.sh: $case: the run does not count" >&2; exit 1; }
    read -r req ir1 ir2 per <<<"$line"
    [ -n "$PLAIN" ] || PLAIN=$per
    printf '%-16s %9s %12s %12s %10s %8s\n' "$case" "$req" "$ir1" "$ir2" "$per" \
        "$(python3 -c "print(f'{$per / $PLAIN:.2f}x')")"
    echo "$case $req $ir1 $ir2 $per" >>"$W/results.txt"
done

analyze
