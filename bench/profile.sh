#!/usr/bin/env bash
# Where the time goes: tollgate's plain-proxy case on ONE shard, profiled next to nginx.
#
# One run, four proxies measured one after the other under the same load (the three tollgate
# runs are the same binary and config, started with different environments):
#   tollgate, lean path       tollgate --shards 1 with GLOMMIO_STOCK_RINGS and TOLLGATE_SOCKET_PATH
#                             removed (env -u): patched rings, multishot receive into the shard's
#                             provided-buffer ring, sends as SQEs, no recv/send syscalls
#   tollgate, poll path       TOLLGATE_SOCKET_PATH=poll, GLOMMIO_STOCK_RINGS removed: patched
#                             rings, readiness polling (recv/send syscalls, one-shot POLL_ADD)
#   tollgate, stock glommio   GLOMMIO_STOCK_RINGS=1 TOLLGATE_SOCKET_PATH=poll (glommio 0.9's ring
#                             flags and the poll path: glommio as published)
#   nginx                     reverse proxy, 1 worker, upstream keepalive 256, HTTP/1.1 upstream
# lean vs poll is the lean socket path's effect; poll vs stock the ring patch's.
# Proxy pinned to CPU 0; origin (nginx, `return 200 ""`, 1 worker) and load generator (wrk -t1
# -c64, or tollgate-load if wrk is missing) pinned to CPU 1. Everything on 127.0.0.1.
#
# Per proxy: warm-up, then three load phases of $PROFILE_SECONDS each (default 5):
#   1. clean:   requests served; CPU time of the proxy (utime+stime, /proc/PID/stat) per request
#   2. syscall: `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>,... -p PID`
#               (in-kernel counting; total + ~50 named syscalls, the rest shown as "other")
#   3. profile: `perf record -e cpu-clock -g -p PID`: dso split, top symbols, kernel time by syscall
# Then bench/callgrind.sh (user-space instructions per request of the in-process pipeline).
# Load phases 2 and 3 carry perf overhead; only their counts and sample shares are used.
#
# Usage: bench/profile.sh [OUT.md]          (default bench/PROFILE.md; markdown also on stdout)
# Env:   PROFILE_SECONDS=5 (per phase)  CALLGRIND_N=5000 (0 = skip)  LOADGEN=wrk|tollgate-load
#        PROFILE_KEEP_TMP=1 (keep the temp dir: configs, logs, perf.data)  PROFILE_LIMIT_S=238
# Bounded (< 4 min once the release binaries exist), re-runnable, and it stops every process
# it started (trap on EXIT/INT/TERM), removing its temp dir.
set -euo pipefail

START_EPOCH=$(date +%s)
ORIG_PWD=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD

OUT="${1:-bench/PROFILE.md}"
case "$OUT" in /*) ;; *) if [ -n "${1:-}" ]; then OUT="$ORIG_PWD/$OUT"; else OUT="$REPO/$OUT"; fi ;; esac

DUR="${PROFILE_SECONDS:-5}"
CG_N="${CALLGRIND_N:-5000}"
CONNS=64
LIMIT_S="${PROFILE_LIMIT_S:-238}" # hard bound on the run (after the build, if one was needed)
PROXY_CPU=0
CLIENT_CPU=1
REQ_PATH=/p
case "$DUR" in '' | *[!0-9]*) echo "profile.sh: PROFILE_SECONDS must be a positive integer" >&2; exit 2 ;; esac
case "$CG_N" in '' | *[!0-9]*) echo "profile.sh: CALLGRIND_N must be an integer (0 = skip)" >&2; exit 2 ;; esac
if [ "$DUR" -lt 1 ] || [ "$DUR" -gt 20 ]; then echo "profile.sh: PROFILE_SECONDS must be 1..20" >&2; exit 2; fi

die() { echo "profile.sh: $*" >&2; exit 1; }
log() { echo "profile.sh: [$(($(date +%s) - START_EPOCH)) s] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every background process is started with setsid (its own process group)
# and recorded; cleanup kills each recorded group (TERM, then KILL), then removes the temp dir.
# ---------------------------------------------------------------------------------------------
TMP=""
PIDS=()
cleanup() {
    local rc=$? pid alive
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 -- "-$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -n "$TMP" ]; then
        if [ "${PROFILE_KEEP_TMP:-0}" = 1 ]; then echo "profile.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "profile.sh: interrupted" >&2; exit 130' INT
trap 'echo "profile.sh: stopped (SIGTERM or the ${LIMIT_S} s time limit)" >&2; exit 143' TERM

# start_bg LOG CMD...: starts CMD in its own process group, output to LOG; sets BG_PID.
BG_PID=""
start_bg() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}
forget() {
    local pid="$1" keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
# stop_bg PID: stops the process group PID (TERM, then KILL after 3 s) and reaps it.
stop_bg() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}
# run_fg LOG CMD...: runs CMD in its own process group (so cleanup can stop it) and waits.
run_fg() {
    local rc=0
    start_bg "$@"
    wait "$BG_PID" || rc=$?
    forget "$BG_PID"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
if [ ! -d /sys/devices/system/cpu/cpu1 ] || [ "$(cat /sys/devices/system/cpu/cpu1/online 2>/dev/null || echo 1)" != 1 ]; then
    die "needs CPUs 0 and 1 online"
fi
for t in perf nginx taskset setsid curl awk timeout; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not installed"
done
NGINX=$(command -v nginx)
if [ ! -x target/release/tollgate ] || [ ! -x target/release/tollgate-load ]; then
    log "release binaries missing: cargo build --release --workspace"
    cargo build --release --workspace >&2 || die "cargo build --release --workspace failed"
fi
LOADGEN="${LOADGEN:-$(command -v wrk >/dev/null 2>&1 && echo wrk || echo tollgate-load)}"
case "$LOADGEN" in wrk | tollgate-load) ;; *) die "LOADGEN must be wrk or tollgate-load" ;; esac
if [ "$LOADGEN" = tollgate-load ] && ! command -v jq >/dev/null 2>&1; then die "LOADGEN=tollgate-load needs jq"; fi
perf stat -e 'syscalls:sys_enter_getpid' -x, -o /dev/null -- true >/dev/null 2>&1 ||
    die "perf cannot open syscall tracepoints (run as root or lower kernel.perf_event_paranoid)"

# Watchdog: SIGTERM to this script after LIMIT_S seconds; the TERM trap then cleans up.
start_bg /dev/null bash -c "sleep $LIMIT_S; kill -TERM $$"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
chmod 755 "$TMP"
# Snapshot the binaries: another build may replace target/release/* while this runs, and perf
# report must see the binary that was profiled.
cp target/release/tollgate target/release/tollgate-load "$TMP/"
TOLLGATE="$TMP/tollgate"
LOAD="$TMP/tollgate-load"
TOLLGATE_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
TOLLGATE_BUILT=$(date -u -r target/release/tollgate '+%Y-%m-%d %H:%M UTC')
TOLLGATE_DIRTY=$(git -C "$REPO" status --porcelain -- proxy core vendor 2>/dev/null | head -1)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
CLK_TCK=$(getconf CLK_TCK)

# free_port VAR: a free TCP port on 127.0.0.1 into VAR: below the ephemeral range (so no
# client connection can hold it), used by no socket in any state, not chosen before.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
USED_PORTS=" "
free_port() {
    local p lo=10000 hi=$((EPH_LO - 1))
    if [ "$hi" -le $((lo + 1000)) ]; then lo=$((EPH_LO > 40000 ? 20000 : 61000)) hi=$((lo + 4000)); fi
    while :; do
        p=$((lo + RANDOM % (hi - lo)))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
            USED_PORTS="$USED_PORTS$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
}
free_port ORIGIN_PORT
free_port PROXY_PORT

# waits until http://127.0.0.1:$1$REQ_PATH answers 200 (up to 10 s)
wait_200() {
    local port="$1" pid="$2" log="$3" code
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "process $pid exited during start-up"; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port$REQ_PATH" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    cat "$log" >&2
    die "http://127.0.0.1:$port$REQ_PATH did not answer 200 (last: $code)"
}

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
nginx_common() { # $1 = dir
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log error;
events { worker_connections 4096; accept_mutex off; }
EOF
}
nginx_temp_paths() { # $1 = dir
    cat <<EOF
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}
mkdir -p "$TMP/origin" "$TMP/nginx"
{
    nginx_common "$TMP/origin"
    echo "http {"
    nginx_temp_paths "$TMP/origin"
    cat <<EOF
    access_log off;
    server_tokens off;
    keepalive_timeout 60s;
    keepalive_requests 1000000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location / { return 200 ""; }
    }
}
EOF
} >"$TMP/origin/nginx.conf"

# Same per-request work as bench/src/configs.rs: X-Forwarded-*, a request id on every response.
{
    nginx_common "$TMP/nginx"
    echo "http {"
    nginx_temp_paths "$TMP/nginx"
    cat <<EOF
    access_log off;
    server_tokens off;
    keepalive_timeout 60s;
    keepalive_requests 1000000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Port \$server_port;
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 256;
        keepalive_requests 1000000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        add_header x-amzn-RequestId \$request_id always;
        location / { proxy_pass http://origin; }
    }
}
EOF
} >"$TMP/nginx/nginx.conf"

cat >"$TMP/tollgate.toml" <<EOF
# generated by bench/profile.sh
[server]
shards = 1
pin_cpus = true
upstream_pool_size = 256

[[listeners]]
address = "127.0.0.1"
port = $PROXY_PORT

[[apis]]
name = "profile"
protocol = "http"

  [[apis.stages]]
  name = "\$default"
  variables = { backend = "127.0.0.1:$ORIGIN_PORT" }

  [[apis.routes]]
  key = "ANY /{proxy+}"
  integration = { type = "http_proxy", uri = "http://\${stageVariables.backend}" }
EOF
"$TOLLGATE" validate "$TMP/tollgate.toml" >"$TMP/validate.log" 2>&1 ||
    { cat "$TMP/validate.log" >&2; die "generated tollgate config does not validate"; }
"$NGINX" -t -q -p "$TMP/origin" -e "$TMP/origin/error.log" -c "$TMP/origin/nginx.conf" ||
    die "origin nginx config does not validate"
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" ||
    die "proxy nginx config does not validate"

# ---------------------------------------------------------------------------------------------
# Load and measurement helpers
# ---------------------------------------------------------------------------------------------
# load_cmd SECONDS OUTPREFIX: prints the load generator's argv, one per line.
load_cmd() {
    local secs="$1" prefix="$2" url="http://127.0.0.1:$PROXY_PORT$REQ_PATH"
    if [ "$LOADGEN" = wrk ]; then
        printf '%s\n' wrk -t1 "-c$CONNS" "-d${secs}s" "$url"
    else
        printf '%s\n' "$LOAD" -t1 "-c$CONNS" "-d${secs}s" --json "$prefix.json" "$url"
    fi
}
# load_result OUTPREFIX: prints "requests non_ok" from the load generator's output.
load_result() {
    local prefix="$1"
    if [ "$LOADGEN" = wrk ]; then
        awk '/ requests in /{r=$1} /Non-2xx or 3xx responses:/{b+=$NF}
             /Socket errors:/{gsub(/[^0-9 ]/," "); n=split($0,a," "); for(i=1;i<=n;i++) b+=a[i]}
             END{printf "%d %d\n", r, b}' "$prefix.out"
    else
        jq -r '"\(.requests) \(.requests - (.status_codes["200"] // 0) + ([.errors[]?] | add // 0))"' \
            "$prefix.json" 2>/dev/null || echo "0 0"
    fi
}
# proc_ticks PID...: utime and stime (clock ticks) summed over the processes, "utime stime".
proc_ticks() {
    local p u=0 s=0 fields
    for p in "$@"; do
        fields=$(sed 's/^.*) //' "/proc/$p/stat")
        # after "pid (comm) ": field 1 = state, 12 = utime, 13 = stime
        u=$((u + $(echo "$fields" | awk '{print $12}')))
        s=$((s + $(echo "$fields" | awk '{print $13}')))
    done
    echo "$u $s"
}
# cpu_busy CPU: busy and total jiffies of one CPU from /proc/stat, "busy total".
cpu_busy() {
    awk -v c="cpu$1" '$1==c{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat
}
now() { date +%s.%N; }

# Syscalls counted by name. Enabling a tracepoint costs ~35 ms here, so all ~360 would add 13 s
# per phase; raw_syscalls:sys_enter gives the total, and what no named one covers is "(other)".
SYSCALL_EVENTS=raw_syscalls:sys_enter
for sc in read write readv writev pread64 pwrite64 recvfrom sendto recvmsg sendmsg recvmmsg \
    sendmmsg splice io_uring_enter io_uring_register epoll_wait epoll_pwait epoll_pwait2 \
    epoll_ctl poll ppoll select pselect6 accept accept4 connect close shutdown socket \
    setsockopt getsockopt getsockname getpeername getpid gettid clock_gettime gettimeofday \
    futex membarrier sched_yield nanosleep clock_nanosleep mmap munmap madvise mprotect brk \
    timerfd_settime eventfd2 rt_sigprocmask rt_sigreturn ioctl fcntl openat statx newfstatat; do
    SYSCALL_EVENTS="$SYSCALL_EVENTS,syscalls:sys_enter_$sc"
done

RESULTS="$TMP/results.tsv" # name requests secs non_ok utime stime ticks cpu0busy cpu1busy
: >"$RESULTS"

# measure NAME PIDS...: the three load phases against the proxy whose processes are PIDS.
measure() {
    local name="$1"
    shift
    local pids=("$@") pidlist d="$TMP/$name" t0 t1 a b c0 c1 k0 k1 req bad
    pidlist=$(
        IFS=,
        echo "${pids[*]}"
    )
    mkdir -p "$d"
    local -a cmd
    mapfile -t cmd < <(load_cmd 1 "$d/warm")
    run_fg "$d/warm.out" taskset -c "$CLIENT_CPU" "${cmd[@]}" || die "$name: warm-up load failed"

    # 1. clean phase
    mapfile -t cmd < <(load_cmd "$DUR" "$d/clean")
    read -r -a a < <(proc_ticks "${pids[@]}")
    read -r -a c0 < <(cpu_busy "$PROXY_CPU")
    read -r -a k0 < <(cpu_busy "$CLIENT_CPU")
    t0=$(now)
    run_fg "$d/clean.out" taskset -c "$CLIENT_CPU" "${cmd[@]}" || die "$name: load failed: $(tail -3 "$d/clean.out")"
    t1=$(now)
    read -r -a b < <(proc_ticks "${pids[@]}")
    read -r -a c1 < <(cpu_busy "$PROXY_CPU")
    read -r -a k1 < <(cpu_busy "$CLIENT_CPU")
    read -r req bad < <(load_result "$d/clean")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$req" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" \
        "$bad" "$((b[0] - a[0]))" "$((b[1] - a[1]))" \
        "$(awk -v b="$((c1[0] - c0[0]))" -v t="$((c1[1] - c0[1]))" 'BEGIN{printf "%.3f", t ? b/t : 0}')" \
        "$(awk -v b="$((k1[0] - k0[0]))" -v t="$((k1[1] - k0[1]))" 'BEGIN{printf "%.3f", t ? b/t : 0}')" \
        >>"$RESULTS"

    # 2. syscalls, counted in the kernel by perf stat for exactly the load generator's run
    #    (perf opens the counters, then starts the load generator, and stops when it exits)
    mapfile -t cmd < <(load_cmd "$DUR" "$d/sys")
    run_fg "$d/sys.out" taskset -c "$CLIENT_CPU" perf stat -x, -o "$d/perfstat.csv" \
        -e "$SYSCALL_EVENTS" -p "$pidlist" -- "${cmd[@]}" || die "$name: perf stat phase failed: $(tail -3 "$d/sys.out")"
    read -r req bad < <(load_result "$d/sys")
    awk -F, -v n="$req" '
        $1 !~ /^[0-9]+$/ { next }
        $3 == "raw_syscalls:sys_enter" { total = $1; next }
        $3 ~ /^syscalls:sys_enter_/ && $1 > 0 {
            sub(/^syscalls:sys_enter_/, "", $3); named += $1; printf "%s\t%.6f\t%d\n", $3, $1 / n, $1 }
        END { if (total > named) printf "(other)\t%.6f\t%d\n", (total - named) / n, total - named }' \
        "$d/perfstat.csv" | sort -t$'\t' -k2,2 -g -r >"$d/syscalls.tsv"
    echo "$req" >"$d/sys.requests"

    # 3. cpu-clock profile with call graphs
    mapfile -t cmd < <(load_cmd "$DUR" "$d/rec")
    run_fg "$d/rec.out" taskset -c "$CLIENT_CPU" perf record -q -e cpu-clock -g -N -B \
        -o "$d/perf.data" -p "$pidlist" -- "${cmd[@]}" || die "$name: perf record phase failed: $(tail -3 "$d/rec.out")"
}

# analyse NAME: perf report summaries for one proxy (run after its processes stopped is fine:
# the binaries stay in $TMP and kernel symbols come from /proc/kallsyms).
analyse() {
    local d="$TMP/$1"
    perf report -i "$d/perf.data" --stdio --no-children -g none --sort dso -q 2>/dev/null |
        awk 'NF >= 2 { sub(/%$/, "", $1); pct=$1; $1=""; sub(/^ +/, ""); printf "%s\t%s\n", $0, pct }' >"$d/dso.tsv"
    perf report -i "$d/perf.data" --stdio --no-children -g none --sort dso,sym -q 2>/dev/null |
        awk 'NF >= 4 && $1 ~ /%$/ { pct=$1; dso=$2; $1=""; $2=""; $3=""; sym=$0; sub(/^ +/, "", sym);
             gsub(/::h[0-9a-f]{16}$/, "", sym); if (++k <= 10) print pct "\t" dso "\t" sym }' >"$d/top.tsv"
    # CPU samples by where they ran: user space, or the kernel path entered from user space
    # (the syscall: first kernel frame below entry_SYSCALL_64/do_syscall_64/x64_sys_call,
    # e.g. __x64_sys_sendto or do_writev), task work on the return to user space, or an
    # interrupt that arrived while in user space.
    perf script -i "$d/perf.data" -F ip,sym 2>/dev/null | awk '
        function flush(   i, c, kern, s) {
            if (!k) return
            total++; c = ""; kern = 0
            for (i = k; i >= 1; i--) {      # from the outermost frame inwards
                if (a[i] !~ /^ffff/) continue
                kern = 1; s = f[i]
                if (s ~ /^(entry_SYSCALL_64|do_syscall_64$|x64_sys_call$)/) continue
                c = s; break
            }
            if (!kern) c = "user space"
            else if (c == "") c = "syscall entry/exit"
            else if (c ~ /exit_to_user_mode/) c = "task work or signals on return to user space"
            else if (c ~ /^syscall_(trace_enter|exit_work)/) c = "syscall tracing (tracepoints enabled by some process)"
            else if (c ~ /^(asm_|irq|sysvec|common_interrupt|ret_from_intr)/) c = "interrupts (incl. IPIs) while in user space"
            else if (c ~ /^ret_from_fork/) c = "kernel threads"
            else {
                sub(/^(__x64_sys_|__ia32_sys_|__do_sys_|__se_sys_|ksys_|__sys_|do_)/, "", c)
                c = "syscall `" c "`"
            }
            n[c]++; k = 0
        }
        /^$/ { flush(); next }
        { k++; a[k] = $1; f[k] = $2 }
        END {
            flush()
            if (!total) exit
            for (c in n) printf "%s\t%.1f\n", c, 100 * n[c] / total
        }' | sort -t$'\t' -k2,2 -g -r >"$d/kernel_by_syscall.tsv"
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
log "origin nginx on CPU $CLIENT_CPU, port $ORIGIN_PORT; proxies on CPU $PROXY_CPU, port $PROXY_PORT; $LOADGEN $DUR s per phase"
start_bg "$TMP/origin/stdout.log" taskset -c "$CLIENT_CPU" "$NGINX" -p "$TMP/origin" -e "$TMP/origin/error.log" -c "$TMP/origin/nginx.conf"
ORIGIN_PID=$BG_PID
for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$ORIGIN_PORT/" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { cat "$TMP/origin/error.log" >&2; die "origin nginx did not start"; }

# The proxies in run (and report) order; the tollgate variants differ only in their environment.
NAMES=(tollgate-lean tollgate-poll tollgate-stock nginx)
for variant in lean poll stock; do
    name="tollgate-$variant"
    log "$name"
    case "$variant" in
        lean) variant_env=(-u GLOMMIO_STOCK_RINGS -u TOLLGATE_SOCKET_PATH) ;;
        poll) variant_env=(-u GLOMMIO_STOCK_RINGS TOLLGATE_SOCKET_PATH=poll) ;;
        stock) variant_env=(GLOMMIO_STOCK_RINGS=1 TOLLGATE_SOCKET_PATH=poll) ;;
    esac
    start_bg "$TMP/$name.log" taskset -c "$PROXY_CPU" env "${variant_env[@]}" "$TOLLGATE" --config "$TMP/tollgate.toml" --shards 1
    pid=$BG_PID
    wait_200 "$PROXY_PORT" "$pid" "$TMP/$name.log"
    measure "$name" "$pid"
    stop_bg "$pid"
done

log "nginx"
start_bg "$TMP/nginx/stdout.log" taskset -c "$PROXY_CPU" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
nginx_pid=$BG_PID
wait_200 "$PROXY_PORT" "$nginx_pid" "$TMP/nginx/error.log"
worker=$(pgrep -P "$nginx_pid" | awk 'NR == 1')
[ -n "$worker" ] || die "nginx worker not found"
# CPU time: master + worker; syscalls and profile: the worker (the master sleeps in sigsuspend).
measure_nginx_pids=("$worker" "$nginx_pid")
measure nginx "${measure_nginx_pids[@]}"
stop_bg "$nginx_pid"
stop_bg "$ORIGIN_PID"

log "perf report"
for n in "${NAMES[@]}"; do analyse "$n"; done

# callgrind: the pipeline's user-space instructions per request. callgrind.sh builds the
# pipeline binary first; if that build fails or takes too long (the tree is being edited), the
# same method is applied to the already built target/release/pipeline.
log "callgrind"
CG_PER_REQ="" CG_NOTE="" CG_WHY=""
if [ "$CG_N" = 0 ]; then
    CG_NOTE="skipped (CALLGRIND_N=0)"
    log "callgrind skipped"
else
    cg_rc=0
    run_fg "$TMP/callgrind.out" timeout 55 bench/callgrind.sh "$CG_N" || cg_rc=$?
    if [ "$cg_rc" = 0 ]; then
        CG_PER_REQ=$(awk '/instructions per request/{print $NF}' "$TMP/callgrind.out")
        CG_NOTE="\`bench/callgrind.sh $CG_N\`"
    elif [ "$cg_rc" = 124 ]; then
        CG_WHY="its build did not finish within 55 s"
    else
        CG_WHY="it failed: $(grep -m1 -E '^error|callgrind.sh:' "$TMP/callgrind.out" | cut -c1-100 | tr -d '`' || true)"
    fi
fi
if [ -z "$CG_PER_REQ" ] && [ "$CG_N" != 0 ] && [ -x target/release/pipeline ] && command -v valgrind >/dev/null 2>&1; then
    cp target/release/pipeline "$TMP/pipeline"
    ir=()
    for n in "$CG_N" "$((2 * CG_N))"; do
        run_fg "$TMP/cg.$n.log" timeout 25 valgrind --tool=callgrind \
            --callgrind-out-file="$TMP/cg.$n.out" "$TMP/pipeline" "$n" || true
        ir+=("$(sed -n 's/^==[0-9]*== Collected : *\([0-9]*\).*/\1/p' "$TMP/cg.$n.log" | tail -1)")
    done
    if [ -n "${ir[0]}" ] && [ -n "${ir[1]}" ]; then
        CG_PER_REQ=$(((ir[1] - ir[0]) / CG_N))
        CG_NOTE="callgrind.sh's method (N = $CG_N and 2N) on the already built \`target/release/pipeline\`, because \`bench/callgrind.sh\` could not be used now (${CG_WHY:-no result})"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
label() {
    case "$1" in
        tollgate-lean) echo "tollgate, lean path" ;;
        tollgate-poll) echo "tollgate, poll path" ;;
        tollgate-stock) echo "tollgate, stock glommio" ;;
        nginx) echo "nginx" ;;
    esac
}
field() { awk -F'\t' -v n="$1" -v c="$2" '$1==n{print $c}' "$RESULTS"; }
sys_per_req() { awk -F'\t' -v s="$2" '$1==s{printf "%.2f", $2; f=1} END{if(!f) printf "0"}' "$TMP/$1/syscalls.tsv"; }
sys_total() { awk -F'\t' '{t+=$2} END{printf "%.2f", t}' "$TMP/$1/syscalls.tsv"; }
dso_pct() { awk -F'\t' -v k="$2" '($1 ~ /kernel/) == (k == "kernel") {t+=$2} END{printf "%.0f", t}' "$TMP/$1/dso.tsv"; }
us_per_req() { # name: CPU µs per request from the clean phase
    awk -v u="$(field "$1" 5)" -v s="$(field "$1" 6)" -v n="$(field "$1" 2)" -v hz="$CLK_TCK" \
        'BEGIN{ if (n > 0) printf "%.2f", (u + s) * 1e6 / hz / n; else printf "n/a" }'
}
kern_pct() { # name: kernel share (stime) of the proxy's CPU time in the clean phase, in %
    awk -v u="$(field "$1" 5)" -v s="$(field "$1" 6)" 'BEGIN{t=u+s; printf "%.0f", t ? 100*s/t : 0}'
}

kshare() { # name category: % of CPU samples in that category
    awk -F'\t' -v c="$2" '$1==c{printf "%.1f", $2; f=1} END{if(!f) printf "0"}' "$TMP/$1/kernel_by_syscall.tsv"
}
busy() { # name: "proxy all" CPU share of the proxy CPU in the clean phase, in %
    awk -v u="$(field "$1" 5)" -v s="$(field "$1" 6)" -v w="$(field "$1" 3)" -v hz="$CLK_TCK" -v c="$(field "$1" 7)" \
        'BEGIN{printf "%.0f %.0f\n", 100*(u+s)/hz/w, 100*c}'
}
top_syscalls() { # name: the syscalls with >= 0.1 per request, "2.00 sendto, 2.00 recvfrom, ..."
    awk -F'\t' '$2 >= 0.1 && $1 != "(other)" {printf "%s%.2f `%s`", (n++ ? ", " : ""), $2, $1}' "$TMP/$1/syscalls.tsv"
}
sock_io_per_req() { # name: recv/send-family syscalls per request (the poll path's per-operation I/O)
    awk -F'\t' '$1 ~ /^(recvfrom|sendto|recvmsg|sendmsg|recvmmsg|sendmmsg)$/ {t+=$2}
        END{printf "%.2f", t}' "$TMP/$1/syscalls.tsv"
}
table_head() { # first-column title: the header row and separator of a table with a column per proxy
    local n
    printf '| %s |' "$1"
    for n in "${NAMES[@]}"; do printf ' %s |' "$(label "$n")"; done
    printf '\n|---|'
    for n in "${NAMES[@]}"; do printf '%s' '---:|'; done
    printf '\n'
}

RUN_S=$(($(date +%s) - START_EPOCH))
{
    echo "## Where the time goes (one shard, plain proxy)"
    echo
    echo "*Generated by \`bench/profile.sh\` in $RUN_S s on $(date -u '+%Y-%m-%d %H:%M UTC'): tollgate at $TOLLGATE_COMMIT${TOLLGATE_DIRTY:+ with uncommitted changes in proxy/, core/ or vendor/}, binary built $TOLLGATE_BUILT; kernel $(uname -r), $(nproc) CPUs, load average at start $LOADAVG. A shared, noisy machine: read req/s and µs as indicative; counts per request (syscalls, instructions) and sample shares are stable.*"
    echo
    echo "**Method.** One proxy at a time on CPU $PROXY_CPU (\`taskset\`): tollgate \`--shards 1\` with one route \`ANY /{proxy+}\` (HTTP API, \`\$default\` stage, upstream pool 256), run three times from the same binary and config: *lean path*, started with \`GLOMMIO_STOCK_RINGS\` and \`TOLLGATE_SOCKET_PATH\` removed from its environment (as built: the vendored glommio's rings, \`COOP_TASKRUN | TASKRUN_FLAG | SINGLE_ISSUER\`, and the lean socket path: multishot receive into the shard's io_uring provided-buffer ring and sends queued as SQEs, flushed with the reactor's \`io_uring_enter\`, no recv/send syscalls); *poll path*, started with \`TOLLGATE_SOCKET_PATH=poll\` and \`GLOMMIO_STOCK_RINGS\` removed (the same patched rings with glommio's readiness-polling \`TcpStream\`: a recv/send syscall per operation and a one-shot \`POLL_ADD\` to wait, i.e. tollgate before the lean path); and *stock glommio*, started with \`GLOMMIO_STOCK_RINGS=1 TOLLGATE_SOCKET_PATH=poll\` (rings set up as glommio 0.9 does, flags 0, vendor/glommio/PATCHES.md, and the poll path: glommio as published). Lean against poll is the effect of the lean socket path, poll against stock that of the ring patch. Then nginx as reverse proxy (1 worker, \`keepalive 256\`, \`proxy_http_version 1.1\`, and, as in bench/, X-Forwarded-* headers and a request-id response header). Origin: nginx \`return 200 \"\"\` (1 worker, no access log) on CPU $CLIENT_CPU; load: \`$LOADGEN\` 1 thread, $CONNS connections, \`GET $REQ_PATH\`, also on CPU $CLIENT_CPU; everything on 127.0.0.1. Per proxy, after 1 s of warm-up, three ${DUR}-s load phases. (1) Clean: requests served, and proxy CPU time = utime+stime deltas from \`/proc/PID/stat\` (nginx: master+worker) ÷ requests, with the utime/stime split. (2) Syscalls: \`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>,… -p PID\` wrapped around exactly the load generator's run — in-kernel tracepoint counting, the cheapest of the options (strace stops the target at every syscall, \`perf trace\` processes every event in user space); ~50 named syscalls plus the total, the remainder shown as *(other)*; ÷ that phase's requests. (3) \`perf record -e cpu-clock -g -p PID\` (4 kHz): user/kernel split by DSO, top symbols by self time, and every sample classified by the path it ran on (user space; the syscall it was entered through, i.e. the first kernel frame below \`do_syscall_64\`; task work on the return to user space; interrupts). Phases 2 and 3 carry perf's overhead and feed only counts and shares. User-space instructions per request of tollgate's in-process pipeline: ${CG_NOTE:-not measured (valgrind or the pipeline binary missing)}."
    echo
    echo "| | requests in ${DUR} s (req/s) | CPU µs / request | user / kernel (/proc) | user / kernel (perf samples) | CPU $PROXY_CPU busy: proxy / all | CPU $CLIENT_CPU busy | syscalls / request | io_uring_enter / request |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in "${NAMES[@]}"; do
        req=$(field "$n" 2)
        secs=$(field "$n" 3)
        u=$(field "$n" 5)
        s=$(field "$n" 6)
        bad=$(field "$n" 4)
        read -r bp ba < <(busy "$n")
        printf '| %s | %s (%s)%s | %s | %s | %s / %s %% | %s / %s %% | %s %% | %s | %s |\n' \
            "$(label "$n")" "$req" "$(awk -v r="$req" -v s="$secs" 'BEGIN{printf "%.0f", r/s}')" \
            "$(if [ "${bad:-0}" -gt 0 ]; then echo " ⚠ $bad errors/non-2xx"; fi)" \
            "$(us_per_req "$n")" \
            "$(awk -v u="$u" -v s="$s" 'BEGIN{t=u+s; if(t) printf "%.0f / %.0f %%", 100*u/t, 100*s/t; else printf "n/a"}')" \
            "$(dso_pct "$n" user)" "$(dso_pct "$n" kernel)" "$bp" "$ba" \
            "$(awk -v c="$(field "$n" 8)" 'BEGIN{printf "%.0f", 100*c}')" \
            "$(sys_total "$n")" "$(sys_per_req "$n" io_uring_enter)"
    done
    echo
    for n in "${NAMES[@]}"; do
        read -r bp ba < <(busy "$n")
        if [ $((ba - bp)) -gt 10 ]; then
            echo "⚠ During the $(label "$n") clean phase other processes used $((ba - bp)) % of CPU $PROXY_CPU: its req/s is understated (CPU µs per request much less so)."
            echo
        fi
    done
    sl=$(sock_io_per_req tollgate-lean)
    if awk -v x="$sl" 'BEGIN{exit !(x >= 0.5)}'; then
        echo "⚠ $(label tollgate-lean) made $sl recv/send-family syscalls per request: some of its I/O did not take the lean path (a kernel without its pieces, < 6.0, falls back to the poll path; a provided-buffer ring that runs dry falls back to recv(2)), so lean against poll understates the lean path's effect."
        echo
    fi
    if [ -n "$CG_PER_REQ" ]; then
        echo "callgrind: **$CG_PER_REQ user-space instructions per request** in tollgate's in-process pipeline (head parse, resolve among 1,000 routes, backend head, response head parse, request id, client head; no I/O, no runtime) — more routing work than the one route here needs."
        echo
    fi

    echo "**Syscalls per request, by name** (perf stat phase; ≥ 0.01 per request in some column):"
    echo
    table_head syscall
    for n in "${NAMES[@]}"; do cat "$TMP/$n/syscalls.tsv"; done | awk -F'\t' '$2 >= 0.01 {print $1}' | sort -u |
        while read -r sc; do
            printf '%s' "$sc"
            for n in "${NAMES[@]}"; do printf '\t%s' "$(sys_per_req "$n" "$sc")"; done
            echo
        done | sort -t$'\t' -k2,2gr -k3,3gr -k4,4gr -k5,5gr |
        awk -F'\t' '{ printf "| %s |", ($1 ~ /^\(/) ? $1 : "`" $1 "`"; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }'
    echo

    echo "**Where the CPU samples are** (perf cpu-clock, % of the proxy's samples; kernel samples by the path they ran on; rows ≥ 1 % somewhere):"
    echo
    table_head "ran in"
    for n in "${NAMES[@]}"; do cat "$TMP/$n/kernel_by_syscall.tsv"; done | awk -F'\t' '$2 >= 1 {print $1}' | sort -u |
        while read -r cat_; do
            printf '%s' "$cat_"
            for n in "${NAMES[@]}"; do printf '\t%s' "$(kshare "$n" "$cat_")"; done
            echo
        done | sort -t$'\t' -k2,2gr -k3,3gr -k4,4gr -k5,5gr |
        awk -F'\t' '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s %% |", $i; print "" }'
    echo

    for n in "${NAMES[@]}"; do
        echo "**Top 10 symbols, $(label "$n")** (self time, % of samples):"
        echo
        echo "| % | dso | symbol |"
        echo "|---:|---|---|"
        awk -F'\t' '{ s=$3; gsub(/\|/, "\\|", s); printf "| %s | %s | `%s` |\n", $1, $2, s }' "$TMP/$n/top.tsv"
        echo
    done

    # Plain sentences from the numbers: the lean path's cost, then lean vs poll (the lean socket
    # path's effect), poll vs stock (the ring patch's effect), and lean vs nginx.
    ul=$(us_per_req tollgate-lean)
    upo=$(us_per_req tollgate-poll)
    us=$(us_per_req tollgate-stock)
    un=$(us_per_req nginx)
    kl=$(kern_pct tollgate-lean)
    kpo=$(kern_pct tollgate-poll)
    irq='interrupts (incl. IPIs) while in user space'
    # the three largest kernel buckets of tollgate (lean): "`io_uring_enter` (50.1 % of the samples; ...), ..."
    kbuckets=$(sort -t$'\t' -k2,2gr "$TMP/tollgate-lean/kernel_by_syscall.tsv" | awk -F'\t' '
        $1 != "user space" && n < 3 {
            c = $1; sub(/^syscall /, "", c)
            note = ""
            if (n == 0) {
                note = " of the samples"
                if (c ~ /io_uring_enter/)
                    note = note "; the lean path'"'"'s sends are SQEs issued in this call, and on loopback a send also runs the receiving socket'"'"'s TCP input in the sender'"'"'s softirq, so this includes delivering to the origin and the client and waking them"
                else if (c ~ /sendto|writev|sendmsg/)
                    note = note "; on loopback a send also runs the receiving socket'"'"'s TCP input in the sender'"'"'s softirq, so this includes delivering to the origin and the client and waking them"
            }
            printf "%s%s (%s %%%s)", (n == 0 ? "" : (n == 2 ? " and " : ", ")), c, $2, note
            n++
        }')
    tl_top=$(top_syscalls tollgate-lean)
    echo "**What dominates.** tollgate on the lean path spends $ul µs of CPU per proxied request, $kl % of it in the kernel (/proc stime); the largest buckets are ${kbuckets:-none}, against $(kshare tollgate-lean 'user space') % in user space (gateway, glommio, libc), where callgrind counts ${CG_PER_REQ:-?} instructions per request for the pipeline itself. $(
        awk -v l="$ul" -v p="$upo" -v tl="$(sys_total tollgate-lean)" -v tp="$(sys_total tollgate-poll)" \
            -v il="$(sys_per_req tollgate-lean io_uring_enter)" -v ip="$(sys_per_req tollgate-poll io_uring_enter)" \
            -v sl="$(sock_io_per_req tollgate-lean)" -v sp="$(sock_io_per_req tollgate-poll)" \
            -v kl="$kl" -v kp="$kpo" 'BEGIN{
            printf "The lean path'"'"'s effect, against the poll path on the same patched rings: "
            if (l + 0 > 0 && p + 0 > 0) printf "%s µs per request against %s, %.2f× the poll path'"'"'s CPU time (%+.0f %%)", l, p, l / p, (l - p) / p * 100
            else printf "%s µs per request against %s", l, p
            printf ", with %s syscalls per request (%s `io_uring_enter`, %s recv/send-family) against %s (%s `io_uring_enter`, %s recv/send-family); kernel share (/proc) %s %% against %s %%.", tl, il, sl, tp, ip, sp, kl, kp
        }') $(
        awk -v p="$upo" -v s="$us" -v l="$ul" -v tp="$(sys_total tollgate-poll)" -v ts="$(sys_total tollgate-stock)" \
            -v ip="$(sys_per_req tollgate-poll io_uring_enter)" -v is="$(sys_per_req tollgate-stock io_uring_enter)" \
            -v qp="$(kshare tollgate-poll "$irq")" -v qs="$(kshare tollgate-stock "$irq")" 'BEGIN{
            printf "The ring patch'"'"'s effect, both on the poll path: stock glommio costs %s µs per request", s
            if (p + 0 > 0 && s + 0 > 0) printf " (%+.0f %% against patched rings)", (s - p) / p * 100
            printf " with %s syscalls per request (%s `io_uring_enter`) against %s (%s)", ts, is, tp, ip
            if (qs > qp + 1) printf "; the one bucket that shows up only with stock rings is interrupts arriving while in user space, %s %% of the samples against %s %% (as PATCHES.md describes: with stock rings io_uring task work is signalled by an IPI instead of run at the next kernel entry).", qs, qp
            else printf "; interrupts in user space: %s %% of stock-ring samples against %s %%.", qs, qp
            if (l + 0 > 0 && s + 0 > 0) printf " Both changes together: the lean path uses %.2f× stock glommio'"'"'s CPU time per request.", l / s
        }') nginx needs $un µs per request with $(sys_total nginx) syscalls ($(top_syscalls nginx)) against the lean path's ${tl_top:-none at 0.1 or more per request}; $(awk -v l="$ul" -v n="$un" 'BEGIN{ if (!(l + 0 > 0 && n + 0 > 0)) printf "no CPU-time ratio (no requests measured)."; else if (l > n) printf "tollgate (lean path) uses %.2f× nginx'"'"'s CPU time per request.", l / n; else printf "tollgate (lean path) uses %.0f %% less CPU time per request than nginx.", 100 * (n - l) / n }')"
    echo
} >"$TMP/report.md"

mkdir -p "$(dirname "$OUT")"
cp "$TMP/report.md" "$OUT"
cat "$TMP/report.md"
log "wrote $OUT in $(($(date +%s) - START_EPOCH)) s"
