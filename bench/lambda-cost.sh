#!/usr/bin/env bash
# Lambda and authorizer cost in user-space instructions per request (callgrind; see
# bench/callgrind-proxy.sh, which this runs once per case and round). Cases, on one shard:
#   rest-plain   REST API, GET /prod/plain, http_proxy to the function server's GET /fn
#   rest-token   the same route shape with a TOKEN Lambda authorizer (ttl 3600 s: after the
#                first call every request is a cache hit; the function server's call count
#                is checked)
#   rest-lambda  aws_proxy (payload 1.0) to the function server's Invoke API, which returns
#                the same 11-byte JSON body that GET /fn returns
#   http-plain   HTTP API ($default stage), GET /plain, http_proxy to GET /fn
#   http-rs256   the same with a JWT authorizer, RS256 token (2048-bit key, jwks_file), with
#                ttl_seconds = 0: the token is verified on every request
#   http-es256   the same with an ES256 token (P-256 key)
#   http-jwt-hit the same RS256 token with the default ttl_seconds: after the first request
#                every request finds the verified token in the shard's cache
#   http-lambda  aws_proxy (payload 2.0)
# Every request carries the same Authorization header within an API (REST: a bearer token;
# HTTP: the RS256 JWT, except http-es256 which sends the ES256 JWT), so the cases differ only
# in the route's authorizer or integration. The cases alternate round by round.
#
# Usage: bench/lambda-cost.sh TOLLGATE_BIN TOLLGATE_BENCH_BIN [ROUNDS] [SECONDS] [CASES...]
#   e.g. bench/lambda-cost.sh target/release/tollgate target/debug/tollgate-bench 3 4
# TOLLGATE_BENCH_BIN runs the function server (`tollgate-bench functions`, not measured: any
# build will do). Needs valgrind, wrk, curl, openssl, basenc, xxd, ss. Prints one line per case and
# round, then the median per case. Ports: $LAMBDA_COST_PORT (default 18480) for tollgate, the
# next one for the function server.
set -euo pipefail
TG_BIN=$(realpath "$1"); FN_BIN=$(realpath "$2"); ROUNDS=${3:-3}; SECS=${4:-4}
shift $(( $# >= 4 ? 4 : $# ))
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(rest-plain rest-token rest-lambda http-plain http-rs256 http-es256 http-jwt-hit http-lambda)
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${LAMBDA_COST_PORT:-18480}; FPORT=$((PORT + 1))
for tool in openssl basenc xxd valgrind wrk curl ss; do
    command -v "$tool" >/dev/null || { echo "lambda-cost.sh: $tool is not installed" >&2; exit 1; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-lambda-cost.XXXXXX")
FN=
cleanup() { [ -n "$FN" ] && kill "$FN" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM

b64url() { basenc --base64url -w0 | tr -d '='; }
hex2bin() { xxd -r -p; }

# --- keys, JWKS and tokens --------------------------------------------------------------
openssl genrsa -out "$W/rs.pem" 2048 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$W/es.pem" 2>/dev/null
N=$(openssl rsa -in "$W/rs.pem" -noout -modulus | sed 's/^Modulus=//' | hex2bin | b64url)
XY=$(openssl ec -in "$W/es.pem" -pubout -outform DER 2>/dev/null | tail -c 64 | xxd -p -c 64)
X=$(printf '%s' "${XY:0:64}" | hex2bin | b64url)
Y=$(printf '%s' "${XY:64:64}" | hex2bin | b64url)
cat >"$W/jwks.json" <<EOF
{"keys":[{"kty":"RSA","kid":"rs","use":"sig","alg":"RS256","n":"$N","e":"AQAB"},
{"kty":"EC","kid":"es","use":"sig","alg":"ES256","crv":"P-256","x":"$X","y":"$Y"}]}
EOF
NOW=$(date +%s)
CLAIMS=$(printf '{"iss":"https://issuer.bench","aud":"bench","sub":"user-1","scope":"read","iat":%d,"exp":%d}' \
    "$NOW" $((NOW + 86400)) | b64url)
# RS256: PKCS#1 v1.5 over SHA-256, as openssl dgst -sign makes it.
H=$(printf '{"alg":"RS256","typ":"JWT","kid":"rs"}' | b64url)
S=$(printf '%s' "$H.$CLAIMS" | openssl dgst -sha256 -sign "$W/rs.pem" | b64url)
RS_TOKEN="$H.$CLAIMS.$S"
# ES256: JWS wants r || s (32 bytes each), openssl gives a DER sequence of two integers.
H=$(printf '{"alg":"ES256","typ":"JWT","kid":"es"}' | b64url)
printf '%s' "$H.$CLAIMS" | openssl dgst -sha256 -sign "$W/es.pem" >"$W/es.sig"
RAW=$(openssl asn1parse -inform DER -in "$W/es.sig" | awk -F: '/INTEGER/ {print $NF}' |
    while read -r v; do printf '%064s' "$v" | tr ' ' 0; done)
[ ${#RAW} -eq 128 ] || { echo "lambda-cost.sh: cannot convert the ES256 signature" >&2; exit 1; }
S=$(printf '%s' "$RAW" | hex2bin | b64url)
ES_TOKEN="$H.$CLAIMS.$S"

# --- configs ------------------------------------------------------------------------------
FNURL="http://127.0.0.1:$FPORT"
cat >"$W/rest.toml" <<EOF
[server]
shards = 1
drain_timeout_ms = 1000
[[listeners]]
address = "127.0.0.1"
port = $PORT
[[apis]]
name = "bench"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.authorizers]]
  name = "tokens"
  type = "token"
  uri = "$FNURL/2015-03-31/functions/auth/invocations"
  identity_sources = ["method.request.header.Authorization"]
  ttl_seconds = 3600
  [[apis.routes]]
  key = "GET /plain"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /token"
  authorizer = "tokens"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /awsfn"
  integration = { type = "aws_proxy", uri = "$FNURL/2015-03-31/functions/pets/invocations" }
EOF
cat >"$W/http.toml" <<EOF
[server]
shards = 1
drain_timeout_ms = 1000
[[listeners]]
address = "127.0.0.1"
port = $PORT
[[apis]]
name = "bench"
protocol = "http"
  [[apis.stages]]
  name = "\$default"
  [[apis.authorizers]]
  name = "users"
  type = "jwt"
  issuer = "https://issuer.bench"
  audiences = ["bench"]
  jwks_file = "$W/jwks.json"
  ttl_seconds = 0
  [[apis.authorizers]]
  name = "kept"
  type = "jwt"
  issuer = "https://issuer.bench"
  audiences = ["bench"]
  jwks_file = "$W/jwks.json"
  [[apis.routes]]
  key = "GET /plain"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /rs256"
  authorizer = "users"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /es256"
  authorizer = "users"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /kept"
  authorizer = "kept"
  integration = { type = "http_proxy", uri = "$FNURL/fn" }
  [[apis.routes]]
  key = "GET /awsfn"
  integration = { type = "aws_proxy", uri = "$FNURL/2015-03-31/functions/pets/invocations" }
EOF
"$TG_BIN" validate "$W/rest.toml" >/dev/null
"$TG_BIN" validate "$W/http.toml" >/dev/null

# case → config, path, Authorization header
setup() {
    case $1 in
        rest-plain)  CONF=rest; PATH_=/prod/plain; AUTH="Bearer bench-token-0123456789" ;;
        rest-token)  CONF=rest; PATH_=/prod/token; AUTH="Bearer bench-token-0123456789" ;;
        rest-lambda) CONF=rest; PATH_=/prod/awsfn; AUTH="Bearer bench-token-0123456789" ;;
        http-plain)  CONF=http; PATH_=/plain; AUTH="Bearer $RS_TOKEN" ;;
        http-rs256)  CONF=http; PATH_=/rs256; AUTH="Bearer $RS_TOKEN" ;;
        http-es256)  CONF=http; PATH_=/es256; AUTH="Bearer $ES_TOKEN" ;;
        http-jwt-hit) CONF=http; PATH_=/kept; AUTH="Bearer $RS_TOKEN" ;;
        http-lambda) CONF=http; PATH_=/awsfn; AUTH="Bearer $RS_TOKEN" ;;
        *) echo "lambda-cost.sh: unknown case $1" >&2; exit 2 ;;
    esac
}

# --- function server ------------------------------------------------------------------------
"$FN_BIN" functions --port "$FPORT" --max-secs 3600 --stats "$W/calls" &
FN=$!
for _ in $(seq 100); do [ -s "$W/calls" ] && break; sleep 0.1; done
calls() { sed -n 's/.*authorizer=\([0-9]*\).*/\1/p' "$W/calls"; }

# callgrind-proxy.sh does not wait for the tollgate it stopped (under valgrind it takes a
# moment to exit): wait until the port is free again.
port_free() {
    for _ in $(seq 150); do
        ss -ltn | grep -q "127.0.0.1:$PORT " || return 0
        sleep 0.2
    done
    # Still there after 30 s: if it is the tollgate of our own config, stop it hard.
    local pid
    pid=$(ss -ltnpH "sport = :$PORT" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $W/"; then
        echo "lambda-cost.sh: tollgate $pid did not stop within 30 s of SIGTERM; killing it" >&2
        kill -9 "$pid"; sleep 1; return 0
    fi
    echo "lambda-cost.sh: port $PORT stays busy" >&2; exit 1
}

# Each case answers 200 once, outside callgrind (tollgate started normally).
for c in "${CASES[@]}"; do
    setup "$c"
    port_free
    "$TG_BIN" --config "$W/$CONF.toml" >"$W/check.log" 2>&1 &
    TG=$!
    code=000
    for _ in $(seq 50); do
        code=$(curl -s -o "$W/body" -w '%{http_code}' -H "Authorization: $AUTH" "http://127.0.0.1:$PORT$PATH_" || true)
        [ "$code" != 000 ] && break
        sleep 0.1
    done
    kill "$TG"; wait "$TG" 2>/dev/null || true
    [ "$code" = 200 ] && [ "$(cat "$W/body")" = '{"ok":true}' ] ||
        { echo "lambda-cost.sh: $c answers $code $(cat "$W/body")" >&2; cat "$W/check.log" >&2; exit 1; }
done

# --- measurement -------------------------------------------------------------------------
# The function server rewrites its counts when its loop turns (at least once a second).
sleep 1.2
: >"$W/results"
for r in $(seq "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        setup "$c"
        printf 'wrk.path = "%s"\n' "$PATH_" >"$W/path.lua"
        port_free
        before=$(calls)
        out=$(nice -n 5 "$HERE/callgrind-proxy.sh" "$TG_BIN" "$W/$CONF.toml" "$PORT" "$SECS" \
            -s "$W/path.lua" -H "Authorization: $AUTH" 2> >(grep -v '^sending command' >&2))
        sleep 1.2
        auth_calls=$(( $(calls) - before ))
        echo "round=$r case=$c $out authorizer_calls=$auth_calls"
        echo "$c ${out##*per_request=} ${out#*non2xx=}" | awk '{print $1, $2, $3}' >>"$W/results"
    done
done
echo "median instructions per request:"
for c in "${CASES[@]}"; do
    awk -v c="$c" '$1 == c {print $2}' "$W/results" | sort -n |
        awk -v c="$c" '{v[NR] = $1} END {printf "  %-12s %d\n", c, v[int((NR + 1) / 2)]}'
done
