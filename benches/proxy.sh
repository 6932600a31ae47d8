#!/usr/bin/env bash
# Portcullis against nginx, on this machine, in one run. Prints one table: requests/s, latency
# p50/p99, CPU seconds and peak RSS of the proxy, and each Portcullis row as a ratio of the nginx
# row measured in the same run. Loopback only; every wrk run is bounded.
#
#   benches/proxy.sh                 # defaults: 10 s per row, 64 connections
#   DURATION=5 SESSIONS=20000 benches/proxy.sh
#   ROWS=instructions benches/proxy.sh
#                                    # user-space instructions per request under callgrind
#                                    # (nginx, the floor, Portcullis): exact, noise-free A/B;
#                                    # PROFILE_DIR=dir keeps the dumps for callgrind_annotate
#                                    # (with PROFILE=profiling, a build with symbols)
#   BASELINE=/path/to/old/portcullis ROWS=cookie ROUNDS=3 benches/proxy.sh
#                                    # before/after: nginx, this build and other builds of
#                                    # Portcullis (a space-separated list) on the cookie path,
#                                    # alternating, ROUNDS times
#
# Placement (with 2+ CPUs): the proxy under test (nginx or Portcullis, one worker thread each)
# on CPU 0; wrk and the upstream nginx on CPU 1.
set -euo pipefail

DURATION=${DURATION:-10}          # seconds measured per row
WARMUP=${WARMUP:-2}               # seconds of warm-up before each row
CONNECTIONS=${CONNECTIONS:-64}
SESSIONS=${SESSIONS:-100000}      # seeded sessions (the cache-size figure uses all of them)
WORKING_SET=${WORKING_SET:-10000} # distinct sessions in the working-set row
ROWS_WANTED=${ROWS:-all}          # all | cookie (rows a, b, floor, c, c0, plus the baseline's c) | instructions
ROUNDS=${ROUNDS:-1}               # with ROWS=cookie: how many times rows b to c0 are repeated
BASELINE=${BASELINE:-}            # another portcullis binary, measured on the cookie path too

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers (an unprivileged user under root) read the response files
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools ----------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${need[*]} from the Debian packages" >&2
    $sudo apt-get install -y "${need[@]}" >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${need[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx)

# PROFILE=profiling builds the same code with symbols (for PROFILE_DIR's dumps).
PROFILE=${PROFILE:-release}
echo "building Portcullis ($PROFILE)" >&2
(cd "$ROOT" && cargo build --profile "$PROFILE" --locked --quiet --bin portcullis --example bench_seed --example bench_floor)
PORTCULLIS="$ROOT/target/$PROFILE/portcullis"
SEED="$ROOT/target/$PROFILE/examples/bench_seed"
FLOOR="$ROOT/target/$PROFILE/examples/bench_floor"

if [ "$(nproc)" -ge 2 ]; then
    ON_PROXY_CPU=(taskset -c 0); ON_LOAD_CPU=(taskset -c 1); PLACEMENT="proxy on CPU 0, wrk and upstream on CPU 1"
else
    ON_PROXY_CPU=(); ON_LOAD_CPU=(); PLACEMENT="one CPU: nothing pinned"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM=$(free_port); NGINX_HTTP=$(free_port); NGINX_TLS=$(free_port)
PC_HTTP=$(free_port); PC_TLS=$(free_port); PC_ADMIN=$(free_port); FLOOR_HTTP=$(free_port)

head -c 1024 /dev/zero | tr '\0' x > "$WORK/1k.bin"
head -c 65536 /dev/zero | tr '\0' x > "$WORK/64k.bin"
chmod 644 "$WORK/1k.bin" "$WORK/64k.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1

# --- the upstream and the reference proxy ---------------------------------------------------
cat > "$WORK/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UPSTREAM;
        location / { return 200 "hello world\n"; }
        location = /1k { alias $WORK/1k.bin; }
        location = /64k { alias $WORK/64k.bin; }
    }
}
CONF
cat > "$WORK/proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$UPSTREAM; keepalive 128; }
    server {
        listen 127.0.0.1:$NGINX_HTTP;
        listen 127.0.0.1:$NGINX_TLS ssl http2;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"${ON_LOAD_CPU[@]}" "$NGINX" -p "$WORK" -c "$WORK/upstream.conf" & PIDS+=($!)
"${ON_PROXY_CPU[@]}" "$NGINX" -p "$WORK" -c "$WORK/proxy.conf" & PIDS+=($!)
# The floor: bare hyper, no auth, one upstream connection per client connection.
"${ON_PROXY_CPU[@]}" "$FLOOR" "127.0.0.1:$FLOOR_HTTP" "127.0.0.1:$UPSTREAM" affine & FLOOR_PID=$!; PIDS+=($FLOOR_PID)

# --- Portcullis -----------------------------------------------------------------------------
echo "seeding $SESSIONS sessions" >&2
"$SEED" "sqlite://$WORK/portcullis.db" "$SESSIONS" "$WORK/cookies.txt" 2>/dev/null
COOKIE=$(head -n 1 "$WORK/cookies.txt")
API_KEY=$(cat "$WORK/cookies.txt.api_key")
cat > "$WORK/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$PC_HTTP"
tls_listen = "127.0.0.1:$PC_TLS"
tls_cert = "$WORK/tls.crt"
tls_key = "$WORK/tls.key"
admin_listen = "127.0.0.1:$PC_ADMIN"
[storage]
database_url = "sqlite://$WORK/portcullis.db"
[session]
cache_ttl = "10m"
idle_timeout = "24h"
[email]
transport = "file"        # the log transport is refused behind https
file_dir = "$WORK/mail"
[rate_limit]
auth_per_minute = 0
login_failures_before_backoff = 0
[tokens]
assertion_header = false  # on only for row (h)
[[upstreams]]
name = "app"
url = "http://127.0.0.1:$UPSTREAM"
[[routes]]
path = "/public/*"
access = "public"
CONF
# start_portcullis TOKIO-THREADS [PREFIX...]: access lines off (RUST_LOG=warn) unless
# OUT_OF_BOX=1, which starts it as it ships (access lines on, to a file).
start_portcullis() {
    local settings=(TOKIO_WORKER_THREADS="${1:-1}" RUST_LOG=warn)
    [ "${OUT_OF_BOX:-0}" = 1 ] && settings=(-u RUST_LOG -u TOKIO_WORKER_THREADS)
    env "${settings[@]}" "${@:2}" "$PORTCULLIS" --config "$WORK/portcullis.toml" \
        2>"$WORK/portcullis.log" & PORTCULLIS_PID=$!
    PIDS+=("$PORTCULLIS_PID")
    for _ in $(seq "${STARTUP_TRIES:-100}"); do curl -sf "http://127.0.0.1:$PC_ADMIN/healthz" >/dev/null && return; sleep 0.1; done
    cat "$WORK/portcullis.log" >&2; exit 1
}
stop_portcullis() { kill -TERM "$PORTCULLIS_PID"; wait "$PORTCULLIS_PID" 2>/dev/null || true; }
start_portcullis 1 "${ON_PROXY_CPU[@]}"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$NGINX_HTTP/" >/dev/null && break; sleep 0.1; done
nginx_worker() { pgrep -P "$(cat "$WORK/$1.pid")" | head -n 1; }

# --- measuring ------------------------------------------------------------------------------
ROWS=()
NGINX_RPS=""; NGINX_P99=""; NGINX_TLS_RPS=""; NGINX_TLS_P99=""
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }

# measure LABEL PID [REF] WRK-ARGS...  (REF: "nginx" or "nginx-tls" rows compare against)
measure() {
    local label=$1 pid=$2 ref=$3; shift 3
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$@" >/dev/null
    local cpu_before; cpu_before=$(cpu_seconds "$pid")
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" > "$WORK/wrk.out"
    local cpu; cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$pid")" 'BEGIN {printf "%.2f", b - a}')
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk.out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/wrk.out" | tr -s ' ' | paste -sd ';')
    local ratio="-"
    case $ref in
        set-nginx) NGINX_RPS=$rps; NGINX_P99=$p99 ;;
        set-nginx-tls) NGINX_TLS_RPS=$rps; NGINX_TLS_P99=$p99 ;;
        nginx) ratio=$(awk -v r="$rps" -v n="$NGINX_RPS" -v p="$p99" -v q="$NGINX_P99" 'BEGIN {printf "%.2fx rps, %.2fx p99", r / n, p / q}') ;;
        nginx-tls) ratio=$(awk -v r="$rps" -v n="$NGINX_TLS_RPS" -v p="$p99" -v q="$NGINX_TLS_P99" 'BEGIN {printf "%.2fx rps, %.2fx p99", r / n, p / q}') ;;
    esac
    local per_request; per_request=$(awk -v c="$cpu" -v r="$rps" -v d="$DURATION" 'BEGIN {printf "%.1f", c * 1e6 / (r * d)}')
    ROWS+=("$(printf '| %-44s | %8s | %7s | %7s | %6s | %6s | %7s | %-22s |' "$label" "$rps" "$p50" "$p99" "$cpu" "$per_request" "$(peak_rss_mib "$pid")" "$ratio")")
    [ -z "$errors" ] || ROWS+=("|   ↳ errors: $errors |")
    echo "${ROWS[-1]}" >&2
}

# measure_h2 LABEL PID REF URL [HEADER]: as measure, with h2load over TLS (HTTP/2, one stream
# per connection at a time); h2load reports the mean latency, shown as p50, and no p99.
measure_h2() {
    local label=$1 pid=$2 ref=$3 url=$4; shift 4
    local header=(); [ $# -gt 0 ] && header=(-H "$1")
    "${ON_LOAD_CPU[@]}" h2load -t1 -c"$CONNECTIONS" -m1 -D"$WARMUP" "${header[@]}" "$url" >/dev/null 2>&1
    local cpu_before; cpu_before=$(cpu_seconds "$pid")
    "${ON_LOAD_CPU[@]}" h2load -t1 -c"$CONNECTIONS" -m1 -D"$DURATION" "${header[@]}" "$url" > "$WORK/h2.out" 2>&1
    local cpu; cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$pid")" 'BEGIN {printf "%.2f", b - a}')
    local rps mean
    rps=$(awk '/^finished in/ {gsub(",", "", $4); printf "%.0f", $4}' "$WORK/h2.out")
    mean=$(to_ms "$(awk '/^time for request:/ {print $6}' "$WORK/h2.out")")
    local ratio="-"
    case $ref in
        set-nginx-h2) NGINX_H2_RPS=$rps ;;
        nginx-h2) ratio=$(awk -v r="$rps" -v n="$NGINX_H2_RPS" 'BEGIN {printf "%.2fx rps", r / n}') ;;
    esac
    local per_request; per_request=$(awk -v c="$cpu" -v r="$rps" -v d="$DURATION" 'BEGIN {printf "%.1f", c * 1e6 / (r * d)}')
    ROWS+=("$(printf '| %-44s | %8s | %7s | %7s | %6s | %6s | %7s | %-22s |' "$label" "$rps" "$mean" "-" "$cpu" "$per_request" "$(peak_rss_mib "$pid")" "$ratio")")
    echo "${ROWS[-1]}" >&2
}

P=http://127.0.0.1:$PC_HTTP
THIS_BUILD=$PORTCULLIS
# The cookie row of each baseline binary, against the nginx row measured just before it.
measure_baseline() {
    [ -n "$BASELINE" ] || return 0
    local other
    for other in $BASELINE; do
        stop_portcullis
        PORTCULLIS=$other start_portcullis 1 "${ON_PROXY_CPU[@]}"
        measure "(c) $(basename "$(dirname "$other")")/$(basename "$other"), cookie" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
    done
    stop_portcullis
    PORTCULLIS=$THIS_BUILD start_portcullis 1 "${ON_PROXY_CPU[@]}"
}
# The out-of-the-box settings (access lines on, default workers) on the same CPU budget.
measure_out_of_box() {
    stop_portcullis
    OUT_OF_BOX=1 start_portcullis 1 "${ON_PROXY_CPU[@]}"
    measure "(c0) out of the box (access lines on), cookie" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
    stop_portcullis
    start_portcullis 1 "${ON_PROXY_CPU[@]}"
}
# --- ROWS=instructions: user-space instructions per request, under callgrind ----------------
# Instruction counts do not move with the machine's noise, so they read small changes that the
# req/s rows cannot. Each proxy runs under callgrind (every thread counted), takes a warm-up,
# has its counters zeroed, then serves exactly $REQUESTS requests from h2load (HTTP/1.1,
# 16 connections). Kernel work is not counted: it is about the same for all three (same
# system calls per request, see RESULTS.md).
if [ "$ROWS_WANTED" = instructions ]; then
    REQUESTS=${REQUESTS:-20000}
    # counted PID URL HEADER NAME: instructions per request of process PID serving URL.
    counted() {
        local pid=$1 url=$2 header=$3
        local args=(--h1 -c16 -m1); [ -n "$header" ] && args+=(-H "$header")
        "${ON_LOAD_CPU[@]}" h2load "${args[@]}" -n 2000 "$url" >/dev/null
        callgrind_control --zero "$pid" >/dev/null 2>&1
        "${ON_LOAD_CPU[@]}" h2load "${args[@]}" -n "$REQUESTS" "$url" > "$WORK/h2load.out"
        grep -q "succeeded, 0 failed, 0 errored" "$WORK/h2load.out" \
            || { echo "requests failed:" >&2; grep -m1 "requests:" "$WORK/h2load.out" >&2; }
        callgrind_control --dump=counted "$pid" >/dev/null 2>&1
        sleep 1
        local total; total=$(cat "$WORK"/callgrind.out.* 2>/dev/null | awk '/^summary:/ {sum += $2} END {print sum + 0}')
        # PROFILE_DIR=dir keeps each dump, for callgrind_annotate.
        [ -n "${PROFILE_DIR:-}" ] && mkdir -p "$PROFILE_DIR" && cat "$WORK"/callgrind.out.* > "$PROFILE_DIR/$4.callgrind"
        rm -f "$WORK"/callgrind.out.*
        awk -v t="$total" -v n="$REQUESTS" 'BEGIN {printf "%.0f", t / n}'
    }
    CALLGRIND=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" --dump-instr=no)
    sed -e 's/^daemon off;/daemon off;\nmaster_process off;/' -e "s/pid .*proxy.pid;/pid $(printf '%s' "$WORK" | sed 's/[\/&]/\\&/g')\/counted.pid;/" \
        "$WORK/proxy.conf" | sed "s/$NGINX_HTTP/$FLOOR_HTTP/; s/listen 127.0.0.1:$NGINX_TLS.*//; s/ssl_.*//" > "$WORK/counted.conf"
    kill "$FLOOR_PID"; wait "$FLOOR_PID" 2>/dev/null || true
    "${ON_PROXY_CPU[@]}" "${CALLGRIND[@]}" "$NGINX" -p "$WORK" -c "$WORK/counted.conf" 2>/dev/null & COUNTED=$!; PIDS+=($COUNTED)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$FLOOR_HTTP/" >/dev/null && break; sleep 0.2; done
    NGINX_IR=$(counted "$COUNTED" "http://127.0.0.1:$FLOOR_HTTP/" "" nginx)
    kill "$COUNTED"; wait "$COUNTED" 2>/dev/null || true; rm -f "$WORK"/callgrind.out.*
    "${ON_PROXY_CPU[@]}" "${CALLGRIND[@]}" "$FLOOR" "127.0.0.1:$FLOOR_HTTP" "127.0.0.1:$UPSTREAM" affine 2>/dev/null & COUNTED=$!; PIDS+=($COUNTED)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$FLOOR_HTTP/" >/dev/null && break; sleep 0.2; done
    FLOOR_IR=$(counted "$COUNTED" "http://127.0.0.1:$FLOOR_HTTP/" "" floor)
    kill "$COUNTED"; wait "$COUNTED" 2>/dev/null || true; rm -f "$WORK"/callgrind.out.*
    stop_portcullis
    STARTUP_TRIES=600 start_portcullis 1 "${ON_PROXY_CPU[@]}" "${CALLGRIND[@]}"
    COOKIE_IR=$(counted "$PORTCULLIS_PID" "$P/app" "Cookie: portcullis_session=$COOKIE" cookie)
    stop_portcullis; rm -f "$WORK"/callgrind.out.*
    OUT_OF_BOX=1 STARTUP_TRIES=600 start_portcullis 1 "${ON_PROXY_CPU[@]}" "${CALLGRIND[@]}"
    OUT_OF_BOX_IR=$(counted "$PORTCULLIS_PID" "$P/app" "Cookie: portcullis_session=$COOKIE" out-of-box)
    stop_portcullis
    echo
    echo "Portcullis $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'): user-space instructions per request (callgrind, $REQUESTS requests after 2000 of warm-up, h2load --h1 -c16)"
    echo
    echo "| proxy | instructions per request | vs nginx |"
    echo "|---|---|---|"
    for row in "nginx reverse proxy:$NGINX_IR" "bare hyper proxy (floor):$FLOOR_IR" "Portcullis, session cookie:$COOKIE_IR" "Portcullis out of the box (access lines on):$OUT_OF_BOX_IR"; do
        awk -v label="${row%%:*}" -v ir="${row##*:}" -v ref="$NGINX_IR" 'BEGIN {printf "| %s | %d | %.2fx |\n", label, ir, ir / ref}'
    done
    exit 0
fi
measure "(a) upstream nginx, direct" "$(nginx_worker upstream)" none "http://127.0.0.1:$UPSTREAM/"
measure "(b) nginx reverse proxy" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/"
measure "(floor) bare hyper proxy, no auth" "$FLOOR_PID" nginx "http://127.0.0.1:$FLOOR_HTTP/"
measure "(c) Portcullis, session cookie (cache hit)" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
measure_baseline
if [ "$ROWS_WANTED" = cookie ]; then
    measure_out_of_box
    for _ in $(seq 2 "$ROUNDS"); do
        measure "(b) nginx reverse proxy" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/"
        measure "(floor) bare hyper proxy, no auth" "$FLOOR_PID" nginx "http://127.0.0.1:$FLOOR_HTTP/"
        measure "(c) Portcullis, session cookie (cache hit)" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
        measure_baseline
        measure_out_of_box
    done
    stop_portcullis
    echo
    echo "| row                                          |    req/s | p50 ms  | p99 ms  | CPU s  | CPU µs/req | RSS MiB | vs nginx (same run)    |"
    echo "|----------------------------------------------|----------|---------|---------|--------|--------|---------|------------------------|"
    printf '%s\n' "${ROWS[@]}"
    # Each row against the nginx row of its own round, median over the rounds: on a noisy
    # machine the per-round ratio is steadier than any absolute figure.
    printf '%s\n' "${ROWS[@]}" | python3 -c '
import statistics, sys
rounds, current = [], {}
for line in sys.stdin:
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if len(cells) < 6 or not cells[0].startswith("(") or cells[0].startswith("(a)"):
        continue
    if cells[0].startswith("(b)") and current:
        rounds.append(current)
        current = {}
    current[cells[0]] = (float(cells[1]), float(cells[5]))
rounds.append(current)
print()
print("| row | req/s vs nginx, median of %d rounds (min-max) | CPU per request vs nginx, median |" % len(rounds))
print("|---|---|---|")
for label in rounds[0]:
    if label.startswith("(b)"):
        continue
    pairs = [(r[label], r[k]) for r in rounds for k in r if k.startswith("(b)") and label in r]
    rps = [row[0] / ref[0] for row, ref in pairs]
    cpu = [row[1] / ref[1] for row, ref in pairs]
    print("| %s | %.2fx (%.2f-%.2fx) | %.2fx |" % (label, statistics.median(rps), min(rps), max(rps), statistics.median(cpu)))
'
    exit 0
fi
measure "(d) Portcullis, API key" "$PORTCULLIS_PID" nginx -H "Authorization: Bearer $API_KEY" "$P/app"
JWT=$(curl -sf -H 'Content-Type: application/json' \
    -d '{"email":"storm@example.com","password":"correct horse battery staple","mode":"token"}' \
    "$P/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
measure "(e) Portcullis, bearer JWT" "$PORTCULLIS_PID" nginx -H "Authorization: Bearer $JWT" "$P/app"
measure "(f) Portcullis, public route" "$PORTCULLIS_PID" nginx "$P/public/x"
measure "(g) nginx over TLS" "$(nginx_worker proxy)" set-nginx-tls "https://localhost:$NGINX_TLS/"
measure "(g) Portcullis over TLS, session cookie" "$PORTCULLIS_PID" nginx-tls -H "Cookie: portcullis_session=$COOKIE" "https://localhost:$PC_TLS/app"
measure_h2 "(g2) nginx over TLS, HTTP/2" "$(nginx_worker proxy)" set-nginx-h2 "https://localhost:$NGINX_TLS/"
measure_h2 "(g2) Portcullis over TLS, HTTP/2, cookie" "$PORTCULLIS_PID" nginx-h2 "https://localhost:$PC_TLS/app" "cookie: portcullis_session=$COOKIE"
measure "(i) nginx, 1 KiB response" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/1k"
measure "(i) Portcullis, 1 KiB response, cookie" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/1k"
measure "(j) nginx, 64 KiB response" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/64k"
measure "(j) Portcullis, 64 KiB response, cookie" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/64k"
CONNECTIONS=256 measure "(k) nginx, 256 connections" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/"
CONNECTIONS=256 measure "(k) Portcullis, 256 connections, cookie" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
measure "(b) nginx reverse proxy (reference again)" "$(nginx_worker proxy)" set-nginx "http://127.0.0.1:$NGINX_HTTP/"
measure_out_of_box
stop_portcullis
PORTCULLIS_TOKENS__ASSERTION_HEADER=true start_portcullis 1 "${ON_PROXY_CPU[@]}"
measure "(h) Portcullis, X-Auth-Assertion on" "$PORTCULLIS_PID" nginx -H "Cookie: portcullis_session=$COOKIE" "$P/app"
stop_portcullis
start_portcullis 1 "${ON_PROXY_CPU[@]}"
cached() { curl -s "http://127.0.0.1:$PC_ADMIN/metrics" | awk '/^portcullis_cached_identities / {print $2}'; }
# Loads the first N sessions into the cache (each first use reads the store), bounded in time.
warm_sessions() {
    for _ in $(seq 24); do
        "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d5s -s "$ROOT/benches/wrk/cookies.lua" "$P/app" -- "$WORK/cookies.txt" "$1" >/dev/null
        [ "$(cached)" -ge "$1" ] && return
    done
}
warm_sessions "$WORKING_SET"
measure "1 session via Lua (reference for the next)" "$PORTCULLIS_PID" nginx -s "$ROOT/benches/wrk/cookies.lua" "$P/app" -- "$WORK/cookies.txt" 1
measure "$WORKING_SET distinct sessions (working set)" "$PORTCULLIS_PID" nginx -s "$ROOT/benches/wrk/cookies.lua" "$P/app" -- "$WORK/cookies.txt" "$WORKING_SET"

# --- scale figures --------------------------------------------------------------------------
warm_sessions "$SESSIONS"
CACHED=$(cached)
RSS_NOW=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PORTCULLIS_PID/status")
stop_portcullis

# Login storm: Portcullis on every CPU (as deployed), proxied p99 quiet and during a storm of
# correct-password logins.
start_portcullis "$(nproc)"
wrk -t1 -c16 -d"${WARMUP}s" -H "Cookie: portcullis_session=$COOKIE" "$P/app" >/dev/null
wrk -t1 -c16 -d"${DURATION}s" --latency -H "Cookie: portcullis_session=$COOKIE" "$P/app" > "$WORK/quiet.out"
wrk -t1 -c32 -d"$((DURATION + 2))s" -s "$ROOT/benches/wrk/login.lua" "$P/auth/login" > "$WORK/storm-logins.out" &
STORM=$!
sleep 1
wrk -t1 -c16 -d"${DURATION}s" --latency -H "Cookie: portcullis_session=$COOKIE" "$P/app" > "$WORK/storm.out"
wait "$STORM"
QUIET_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/quiet.out")")
STORM_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/storm.out")")
LOGINS=$(awk '/Requests\/sec/ {printf "%.1f", $2}' "$WORK/storm-logins.out")
stop_portcullis

# --- report ---------------------------------------------------------------------------------
echo
echo "Portcullis $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') vs nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $PLACEMENT"
echo "wrk -t1 -c$CONNECTIONS, ${DURATION}s per row after ${WARMUP}s warm-up; upstream returns 12 bytes; RUST_LOG=warn, nginx access_log off"
echo
echo "| row                                          |    req/s | p50 ms  | p99 ms  | CPU s  | CPU µs/req | RSS MiB | vs nginx (same run)    |"
echo "|----------------------------------------------|----------|---------|---------|--------|--------|---------|------------------------|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Scale: $CACHED of $SESSIONS sessions cached: RSS $RSS_NOW MiB (after all rows above, same process)"
echo "Login storm ($LOGINS logins/s, argon2id): proxied p99 ${QUIET_P99} ms quiet, ${STORM_P99} ms during the storm ($(awk -v s="$STORM_P99" -v q="$QUIET_P99" 'BEGIN {printf "%.2fx", s / q}'))"
