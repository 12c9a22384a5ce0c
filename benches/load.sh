#!/usr/bin/env bash
# Load benchmark: nxguard against Unbound and dnsdist, all forwarding to a local authoritative
# upstream.
#
#   bash benches/load.sh [--quick] [--scaling] [--busy | --busy-only] [--keep]
#
# Installs dnsperf, unbound, dnsdist and dig from Debian packages when missing (needs root), builds
# nxguard with `cargo build --release` (or takes NXGUARD_BIN), generates the query corpora and
# block lists under a `mktemp -d` directory, and measures each server x list x scenario.
# Everything runs on loopback ports above 15000 (never 53); every process the script starts is
# stopped by its PID on exit. The table is printed and written to benches/results/latest.txt
# (latest-quick.txt with --quick). --busy adds fixed-rate latency runs against nxguard while its
# attempt store is written and read, and while it reloads the big list.
# See benches/README.md for what each column means.
set -eEuo pipefail

usage() {
    cat <<'EOF'
usage: bash benches/load.sh [--quick] [--scaling] [--busy | --busy-only] [--keep]

  --quick      short runs (2 s per scenario, 1 s latency run) and a 100k list instead of 1M;
               the report goes to benches/results/latest-quick.txt instead of latest.txt
  --scaling    also compare nxguard with workers=1 on one core and workers=2 on two cores
  --busy       after the other runs, the busy section: fixed-rate latency (LAT_QPS for
               LAT_SECONDS) of nxguard on the generated list, without and with an attempt store:
               store idle, every query blocked, `nxguard report` reading the store in a loop,
               a SIGHUP reloading the list every second; and the time of one reload
  --busy-only  only the busy section, no nxguard/Unbound table (not with --scaling); the report
               goes to latest-busy.txt (latest-busy-quick.txt with --quick)
  --keep       keep the temporary directory (configs, corpora, raw dnsperf output, logs)

Environment (defaults in brackets; --quick lowers the first three):
  DURATION [10]       seconds per throughput run (dnsperf -l)
  LAT_SECONDS [5]     seconds per fixed-rate latency run
  LIST_SIZE [1000000] domains in the generated list
  LAT_QPS [10000]     query rate of the latency run (dnsperf -Q)
  IN_FLIGHT [100]     queries in flight (dnsperf -q)
  CLIENTS [4]         dnsperf clients, i.e. source ports (dnsperf -c)
  CACHED_NAMES [10000]  distinct names in the cached corpus
  BLOCKED_NAMES [100000] names sampled from the generated list for its blocked corpus
  PORT_BASE [15350]   nxguard on PORT_BASE, Unbound +1, upstream +2, nxguard metrics +3,
                      dnsdist +4
  SERVER_CPU [1]  CLIENT_CPU [0]   cores for the servers and for dnsperf + upstream
  NXGUARD_BIN         use this nxguard binary instead of `cargo build --release`
EOF
}

QUICK=0
SCALING=0
BUSY=0
BUSY_ONLY=0
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --scaling) SCALING=1 ;;
        --busy) BUSY=1 ;;
        --busy-only) BUSY=1 BUSY_ONLY=1 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "load.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done
if ((SCALING && BUSY_ONLY)); then
    echo "load.sh: --busy-only skips the nxguard/Unbound runs, --scaling among them; use --busy" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/unbound.sh
source "$ROOT/benches/unbound.sh"
# shellcheck source=benches/dnsdist.sh
source "$ROOT/benches/dnsdist.sh"
if ((QUICK)); then
    DURATION=${DURATION:-2}
    LAT_SECONDS=${LAT_SECONDS:-1}
    LIST_SIZE=${LIST_SIZE:-100000}
else
    DURATION=${DURATION:-10}
    LAT_SECONDS=${LAT_SECONDS:-5}
    LIST_SIZE=${LIST_SIZE:-1000000}
fi
LAT_QPS=${LAT_QPS:-10000}
IN_FLIGHT=${IN_FLIGHT:-100}
CLIENTS=${CLIENTS:-4}
CACHED_NAMES=${CACHED_NAMES:-10000}
BLOCKED_NAMES=${BLOCKED_NAMES:-100000}
PORT_BASE=${PORT_BASE:-15350}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
NX_PORT=$PORT_BASE
UB_PORT=$((PORT_BASE + 1))
AUTH_PORT=$((PORT_BASE + 2))
METRICS_PORT=$((PORT_BASE + 3))
DD_PORT=$((PORT_BASE + 4))
# Miss runs read each name once (dnsperf -n 1) so that no name repeats; this many names bound
# the run at 150k q/s. A faster server ends the run early; q/s stays right (dnsperf's run time).
MISS_NAMES=$((DURATION * 150000))
MISS_LAT_NAMES=$((LAT_SECONDS * LAT_QPS + 1000))
SEED=20240601

die() {
    printf 'load.sh: error: %b\n' "$*" >&2
    exit 1
}
note() { echo "== [$(date +%T)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes: every PID started here is recorded and stopped on exit, by PID only.

PIDS=()
WORK=""
declare -A READY_RSS=() # RSS in MB right after the first answer, by PID

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

forget_pid() {
    local kept=() i
    for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || kept+=("$i"); done
    PIDS=("${kept[@]}")
}

# run_tracked CMD...: runs CMD to completion like a foreground command, but as a tracked
# background job, because bash runs a signal trap only after the foreground command ends (a
# Ctrl-C would otherwise wait out a whole dnsperf run).
run_tracked() {
    "$@" &
    local pid=$! status=0
    PIDS+=("$pid")
    wait "$pid" || status=$?
    forget_pid "$pid"
    return "$status"
}

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if ((KEEP)); then note "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "load.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools

ensure_tools() {
    local missing=()
    command -v dnsperf >/dev/null || missing+=(dnsperf)
    command -v unbound >/dev/null || missing+=(unbound)
    command -v unbound-checkconf >/dev/null || missing+=(unbound)
    command -v dig >/dev/null || missing+=(dnsutils)
    command -v dnsdist >/dev/null || missing+=(dnsdist)
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install them with apt-get, or install them yourself"
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu expected)"
        note "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    local tool
    for tool in dnsperf unbound unbound-checkconf dnsdist dig taskset renice timeout awk sort getconf; do
        command -v "$tool" >/dev/null || die "required tool '$tool' not found"
    done
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
    local cpus
    cpus=$(nproc)
    ((cpus >= 2)) || die "needs at least 2 CPU cores (found $cpus): servers are pinned apart from dnsperf"
    ((SERVER_CPU < cpus && CLIENT_CPU < cpus)) || die "SERVER_CPU/CLIENT_CPU must be below $cpus"
}

build_nxguard() {
    if [[ -n ${NXGUARD_BIN:-} ]]; then
        [[ -x $NXGUARD_BIN ]] || die "NXGUARD_BIN=$NXGUARD_BIN is not an executable"
        NXGUARD=$NXGUARD_BIN
        NXGUARD_ORIGIN="prebuilt $NXGUARD_BIN"
        note "using $NXGUARD_ORIGIN"
        return
    fi
    NXGUARD_ORIGIN="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock domains 2>/dev/null ||
        NXGUARD_ORIGIN+=" + uncommitted changes"
    note "building nxguard (cargo build --release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    NXGUARD=${CARGO_TARGET_DIR:-$ROOT/target}/release/nxguard
    [[ -x $NXGUARD ]] || die "no binary at $NXGUARD after the build"
}

# ---------------------------------------------------------------------------------------------
# Corpora and lists. Query files are dnsperf input: "name type" per line.

# Deterministic shuffle (awk's rand with a fixed seed).
shuffle() {
    awk -v s="$SEED" 'BEGIN { srand(s) } { printf "%.12f\t%s\n", rand(), $0 }' |
        LC_ALL=C sort -k1,1 | cut -f2-
}

# Shipped app lists -> "domain exact(0|1)", one per unique domain.
app_domains() {
    awk '
        /^[[:space:]]*(#|@|$)/ { next }
        { body = $0; sub(/#.*/, "", body); n = split(body, w, " ")
          ex = 0; for (i = 2; i <= n; i++) if (w[i] == "exact") ex = 1
          if (n > 0) print w[1], ex }
    ' "$ROOT"/domains/*.txt | LC_ALL=C sort -u -k1,1
}

# Unbound local-zones. A plain entry blocks the name and its subdomains, as in nxguard. Unbound
# has no exact-name NXDOMAIN, so an `exact` entry becomes a suffix block too; the corpora only ask
# exact entries by their own name, so the answers are the same.
unbound_zones() {
    echo "server:"
    awk '{ printf "  local-zone: \"%s.\" always_nxdomain\n", $1 }'
}

# Blocked names for a list "domain exact": the name itself, and for suffix entries a www name
# and a deep name, which walk the matcher further.
blocked_queries() {
    awk '{ print $1 " A"; if ($2 == 0) { print "www." $1 " A"; print "a1.b2.c3." $1 " A" } }'
}

generate_big_list() {
    local n=$1 out=$2
    awk -v n="$n" -v s="$SEED" 'BEGIN {
        srand(s); split("com net org io info cn co xyz app dev nl de", tld, " ")
        chars = "abcdefghijklmnopqrstuvwxyz0123456789"
        for (i = 0; i < n; i++) {
            len = 5 + int(rand() * 8); label = substr(chars, 1 + int(rand() * 26), 1)
            for (k = 1; k < len; k++) label = label substr(chars, 1 + int(rand() * 36), 1)
            name = sprintf("%s-%x.%s", label, i, tld[1 + int(rand() * 12)])
            if (rand() < 0.3) name = "t" int(rand() * 100) "." name
            print name
        }
    }' | LC_ALL=C sort -u >"$out"
}

make_corpora() {
    note "generating corpora and lists in $WORK"
    local size_label=$1
    mkdir -p "$WORK/q" "$WORK/big"

    app_domains >"$WORK/app_domains.txt"
    unbound_zones <"$WORK/app_domains.txt" >"$WORK/unbound_apps.conf"
    blocked_queries <"$WORK/app_domains.txt" | shuffle >"$WORK/q/blocked_apps.txt"

    generate_big_list "$LIST_SIZE" "$WORK/big_domains.txt"
    {
        echo "# Generated by benches/load.sh: $(wc -l <"$WORK/big_domains.txt") synthetic domains."
        echo "@app Bench $size_label"
        echo "@vendor Synthetic"
        echo "@source bench generated by benches/load.sh"
        awk '{ print $1 " web # bench:" }' "$WORK/big_domains.txt"
    } >"$WORK/big/bench.txt"
    unbound_zones <"$WORK/big_domains.txt" >"$WORK/unbound_big.conf"
    # No `head`: an early close would SIGPIPE the pipeline, which pipefail turns into a failure.
    shuffle <"$WORK/big_domains.txt" |
        awk -v n="$BLOCKED_NAMES" 'NR <= n { r = NR % 3; print (r == 0 ? $1 : r == 1 ? "www." $1 : "a1.b2." $1) " A" }' \
            >"$WORK/q/blocked_big.txt"

    awk -v n="$CACHED_NAMES" 'BEGIN { for (i = 1; i <= n; i++) print "host" i ".bench.test A" }' |
        shuffle >"$WORK/q/cached.txt"
    local list
    for list in apps big; do
        # 90 % cached, 10 % blocked: every tenth query is blocked.
        awk -v total=$((CACHED_NAMES * 10)) '
            NR == FNR { b[nb++] = $0; next } { c[nc++] = $0 }
            END { for (i = 0; i < total; i++) print (i % 10 == 9 ? b[int(i / 10) % nb] : c[i % nc]) }
        ' "$WORK/q/blocked_$list.txt" "$WORK/q/cached.txt" >"$WORK/q/mixed_$list.txt"
    done
    # Never-asked names; the upstream answers every name under bench.test.
    awk -v n="$MISS_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "m%x.miss.bench.test A\n", i }' \
        >"$WORK/q/miss.txt"
    awk -v n="$MISS_LAT_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "l%x.miss.bench.test A\n", i }' \
        >"$WORK/q/miss_lat.txt"
    note "lists: apps $(wc -l <"$WORK/app_domains.txt") domains, $size_label $(wc -l <"$WORK/big_domains.txt") domains"
}

# ---------------------------------------------------------------------------------------------
# Configs

# write_nxguard_conf FILE WORKERS DOMAINS_DIR
write_nxguard_conf() {
    cat >"$1" <<EOF
[server]
udp = ["127.0.0.1:$NX_PORT"]
tcp = ["127.0.0.1:$NX_PORT"]
workers = $2

[access]
allow = ["127.0.0.0/8"]

[limits]
# All load comes from one address; the default per-client limit (200 q/s) would answer nearly
# every query with an empty TC=1 reply, which dnsperf counts as NOERROR.
client_qps = 0

[upstream]
timeout_ms = 1500
servers = [{ address = "127.0.0.1:$AUTH_PORT", protocol = "udp" }]

[cache]
max_entries = 5000000

[policy]
domains_dir = "$3"

[metrics]
# Scraped between runs for the outcome counters (the endpoint idles during the load).
listen = "127.0.0.1:$METRICS_PORT"

[log]
# LogConfig::filter turns this into "warn,nxguard=warn": the per-block attempt events (target
# nxguard::attempt, level info) are not written during the load.
level = "warn"
EOF
}

# write_unbound_conf FILE ZONES_FILE
write_unbound_conf() {
    {
        unbound_server "$UB_PORT" "$WORK"
        cat <<EOF
  so-reuseport: yes
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  qname-minimisation: no
  prefetch: no
  msg-cache-size: 256m
  rrset-cache-size: 512m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  local-zone: "test." nodefault
include: "$2"
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$AUTH_PORT
EOF
    } >"$1"
}

# ---------------------------------------------------------------------------------------------
# Running and measuring

START_NS=0
LAST_PID=0

# start NAME CPUS CMD...: starts CMD pinned to CPUS ("" = unpinned), logs to $WORK/NAME.log.
start() {
    local name=$1 cpus=$2
    shift 2
    START_NS=$(date +%s%N)
    if [[ -n $cpus ]]; then
        taskset -c "$cpus" "$@" >"$WORK/$name.log" 2>&1 &
    else
        "$@" >"$WORK/$name.log" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_ready NAME PID PORT QNAME: seconds from start to the first answer, polled with dig.
wait_ready() {
    local name=$1 pid=$2 port=$3 qname=$4 deadline now answer
    deadline=$(($(date +%s) + READY_TIMEOUT_S))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$WORK/$name.log" >&2
            die "$name exited before answering (log above)"
        fi
        answer=$(dig +tries=1 +time=2 -p "$port" @127.0.0.1 "$qname" A 2>/dev/null || true)
        if [[ $answer == *"status: "* ]]; then
            now=$(date +%s%N)
            awk -v d=$((now - START_NS)) 'BEGIN { printf "%.2f", d / 1e9 }'
            return
        fi
        (($(date +%s) < deadline)) || die "$name did not answer on port $port within ${READY_TIMEOUT_S}s"
        sleep 0.01
    done
}

# cpu_ticks PID: "user system" clock ticks so far, all threads.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }
# foreign_ticks: "pid ticks" (user + system so far) of every process outside this script's process
# group, kernel threads left out: what else ran on the machine.
foreign_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v g="$MY_PGRP" '{ pid = $1; sub(/^.*\) /, ""); if ($3 != g && $3 != 0) print pid, $12 + $13 }'
}

# sched_ns PID: "running waiting" nanoseconds so far, summed over the process's live threads
# (/proc/PID/task/*/schedstat): time on a core, and time runnable but waiting for one.
sched_ns() {
    { cat /proc/"$1"/task/*/schedstat 2>/dev/null || true; } | awk '{ r += $1; w += $2 } END { printf "%.0f %.0f\n", r, w }'
}
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# dnsperf_stats FILE: "completed lost qps avg_us noerror nxdomain runtime_s resp_bytes" from
# dnsperf output.
dnsperf_stats() {
    awk '
        /Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 }
        /Queries per second:/ { q = $4 } /Average Latency/ { a = $4 * 1e6 }
        /Run time \(s\):/ { t = $4 } /Average packet size:/ { b = $NF }
        /Response codes:/ { s = $0; sub(/.*codes: */, "", s); n = split(s, p, ", ")
            for (i = 1; i <= n; i++) { split(p[i], f, " "); r[f[1]] = f[2] } }
        END { printf "%d %d %.0f %.0f %d %d %s %s\n", c, l, q, a, r["NOERROR"], r["NXDOMAIN"],
              (t == "" ? 0 : t), (b == "" ? "-" : b) }
    ' "$1"
}

# percentiles FILE: "p50_us p99_us p99.9_us max_us answers_over_1ms" from dnsperf -v lines
# ("> RCODE name type seconds").
percentiles() {
    awk '/^> / { print $NF * 1e6 }' "$1" | LC_ALL=C sort -g |
        awk '{ v[NR] = $1; if ($1 > 1000) over++ } END {
            if (NR == 0) { print "- - - - -"; exit }
            i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999); i999 = int(NR * 0.999 + 0.999)
            printf "%.0f %.0f %.0f %.0f %d\n", v[i50], v[i99], v[i999], v[NR], over }'
}

CLIENT_PIN=()
ROWS=""
OUTCOMES=""

# nx_metrics: the text of nxguard's metrics endpoint (empty when it does not answer).
nx_metrics() {
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$METRICS_PORT && \
        printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null || true
}

# metric TEXT NAME [LABEL]: the sum of NAME's samples in TEXT (nx_metrics output), only those
# whose labels contain LABEL when it is given; 0 when there are none.
metric() {
    awk -v n="$2" -v l="${3:-}" '
        ($1 == n && l == "") || (index($1, n "{") == 1 && index($1, l) > 0) { s += $2 }
        END { printf "%.0f\n", s }' <<<"$1"
}

# nx_outcomes: nxguard's query counters by outcome ("outcome count" lines, both transports).
nx_outcomes() {
    nx_metrics |
        awk -F'[{}]' '/^nxguard_queries_total[{]/ {
            o = $2; sub(/.*outcome="/, "", o); sub(/".*/, "", o); n[o] += $3 }
            END { for (o in n) print o, n[o] }' | LC_ALL=C sort || true
}

# outcome_delta BEFORE AFTER: "outcome=count" for every counter that moved.
outcome_delta() {
    awk 'NR == FNR { b[$1] = $2; next } $2 - b[$1] > 0 { printf "%s%s=%d", sep, $1, $2 - b[$1]; sep = " " }
        END { print "" }' <(echo "$1") <(echo "$2")
}

# measure SERVER LIST SCENARIO PID PORT LOAD_S QUERY_FILE [LAT_FILE]
measure() {
    local server=$1 list=$2 scenario=$3 pid=$4 port=$5 load_s=$6 qfile=$7 lfile=${8:-$7}
    local raw="$WORK/raw/$server.$list.$scenario" once=() before="" after=""
    [[ $scenario == miss ]] && once=(-n 1)
    if ! kill -0 "$pid" 2>/dev/null; then
        printf '%s\t%s\t%s\tDIED\n' "$server" "$list" "$scenario" >>"$ROWS"
        return
    fi
    [[ $server == nxguard* ]] && before=$(nx_outcomes)
    local t0 t1 u0 s0 u1 s1
    read -r u0 s0 <<<"$(cpu_ticks "$pid")"
    t0=$(date +%s%N)
    run_tracked "${CLIENT_PIN[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$qfile" -q "$IN_FLIGHT" \
        -c "$CLIENTS" -l "$DURATION" "${once[@]}" >"$raw.out" 2>&1 || true
    t1=$(date +%s%N)
    if ! kill -0 "$pid" 2>/dev/null; then
        printf '%s\t%s\t%s\tDIED\n' "$server" "$list" "$scenario" >>"$ROWS"
        note "$server died during $list/$scenario; log tail:"
        tail -n 20 "$WORK/$server.$list.log" >&2 || true
        return
    fi
    read -r u1 s1 <<<"$(cpu_ticks "$pid")"
    local rss
    rss=$(rss_mb "$pid")
    if [[ $server == nxguard* ]]; then
        after=$(nx_outcomes)
        echo "$server $list $scenario: $(outcome_delta "$before" "$after")" >>"$OUTCOMES"
    fi
    run_tracked "${CLIENT_PIN[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$lfile" -q "$IN_FLIGHT" \
        -c "$CLIENTS" -Q "$LAT_QPS" -l "$LAT_SECONDS" "${once[@]}" -v >"$raw.lat" 2>&1 || true
    local completed lost qps avg noerror nxdomain runtime resp p50 p99
    read -r completed lost qps avg noerror nxdomain runtime resp <<<"$(dnsperf_stats "$raw.out")"
    read -r p50 p99 _ <<<"$(percentiles "$raw.lat")"
    awk -v OFS='\t' -v s="$server" -v l="$list" -v sc="$scenario" -v q="$qps" -v c="$completed" \
        -v lost="$lost" -v avg="$avg" -v p50="$p50" -v p99="$p99" -v rss0="${READY_RSS[$pid]:--}" -v rss="$rss" -v load="$load_s" \
        -v ok="$noerror" -v nx="$nxdomain" -v resp="$resp" -v ticks=$((u1 + s1 - u0 - s0)) -v uticks=$((u1 - u0)) -v hz="$CLK_TCK" \
        -v wall=$((t1 - t0)) 'BEGIN {
            cpu_s = ticks / hz; usr_s = uticks / hz
            print s, l, sc, q, sprintf("%.0f", 100 * cpu_s / (wall / 1e9)),
                (c > 0 ? sprintf("%.1f", cpu_s * 1e6 / c) : "-"), (c > 0 ? sprintf("%.1f", usr_s * 1e6 / c) : "-"), avg, p50, p99, rss0, rss, load, lost,
                (c > 0 ? sprintf("%.0f", 100 * nx / c) : "-"), c - ok - nx, resp
        }' >>"$ROWS"
    note "$(tail -n 1 "$ROWS" | tr '\t' ' ')"
}

# prime PORT FILE: asks every name once so that the cached scenarios hit the cache.
prime() {
    run_tracked "${CLIENT_PIN[@]}" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -q "$IN_FLIGHT" -c "$CLIENTS" \
        -n 1 -l 60 >"$WORK/raw/prime.$1.out" 2>&1 || true
    local completed
    read -r completed _ <<<"$(dnsperf_stats "$WORK/raw/prime.$1.out")"
    [[ $completed -gt 0 ]] || die "priming on port $1 got no answers; see $WORK/raw/prime.$1.out"
}

# sanity NAME PORT BLOCKED_NAME: one cached-zone name answers A, one blocked name NXDOMAIN.
sanity() {
    local answer
    answer=$(dig +noedns +tries=1 +time=2 -p "$2" @127.0.0.1 host1.bench.test A 2>&1 || true)
    grep -q 'status: NOERROR' <<<"$answer" && grep -q 'ANSWER: 1' <<<"$answer" ||
        die "$1 does not answer host1.bench.test through the upstream:\n$answer"
    answer=$(dig +noedns +tries=1 +time=2 -p "$2" @127.0.0.1 "$3" A 2>&1 || true)
    grep -q 'status: NXDOMAIN' <<<"$answer" || die "$1 does not block $3:\n$answer"
}

# run_pair LIST LIST_LABEL: nxguard, Unbound and dnsdist on one list, scenarios interleaved.
run_pair() {
    local list=$1 label=$2 nx_conf="$WORK/nxguard.$1.toml" ub_conf="$WORK/unbound.$1.conf"
    local dd_conf="$WORK/dnsdist.$1.conf" dir probe zones
    if [[ $list == apps ]]; then
        dir="$ROOT/domains" zones="$WORK/unbound_apps.conf"
        write_dnsdist_conf "$dd_conf" "$DD_PORT" "$AUTH_PORT" "$WORK/app_domains.txt"
    else
        dir="$WORK/big" zones="$WORK/unbound_big.conf"
        write_dnsdist_conf "$dd_conf" "$DD_PORT" "$AUTH_PORT" "$WORK/big_domains.txt"
    fi
    probe=$(awk 'NR == 1 { print $1; exit }' "$WORK/q/blocked_$list.txt")
    write_nxguard_conf "$nx_conf" 1 "$dir"
    write_unbound_conf "$ub_conf" "$zones"
    note "checking configs ($label)"
    timeout "$READY_TIMEOUT_S" "$NXGUARD" check --config "$nx_conf" >&2 ||
        die "nxguard check failed (or ran over ${READY_TIMEOUT_S}s) for $nx_conf"
    unbound-checkconf "$ub_conf" >&2 || die "unbound-checkconf failed for $ub_conf"
    dnsdist --check-config -C "$dd_conf" >&2 || die "dnsdist --check-config failed for $dd_conf"

    note "starting nxguard ($label) on core $SERVER_CPU"
    start "nxguard.$label" "$SERVER_CPU" "$NXGUARD" serve --config "$nx_conf"
    local nx_pid=$LAST_PID nx_load
    nx_load=$(wait_ready "nxguard.$label" "$nx_pid" "$NX_PORT" "$probe")
    READY_RSS[$nx_pid]=$(rss_mb "$nx_pid")
    note "starting unbound ($label) on core $SERVER_CPU"
    start "unbound.$label" "$SERVER_CPU" unbound -d -c "$ub_conf"
    local ub_pid=$LAST_PID ub_load
    ub_load=$(wait_ready "unbound.$label" "$ub_pid" "$UB_PORT" "$probe")
    READY_RSS[$ub_pid]=$(rss_mb "$ub_pid")
    note "starting dnsdist ($label) on core $SERVER_CPU"
    start "dnsdist.$label" "$SERVER_CPU" dnsdist --supervised --disable-syslog -C "$dd_conf"
    local dd_pid=$LAST_PID dd_load
    dd_load=$(wait_ready "dnsdist.$label" "$dd_pid" "$DD_PORT" "$probe")
    READY_RSS[$dd_pid]=$(rss_mb "$dd_pid")
    note "ready: nxguard ${nx_load}s, unbound ${ub_load}s, dnsdist ${dd_load}s"
    sanity nxguard "$NX_PORT" "$probe"
    sanity unbound "$UB_PORT" "$probe"
    sanity dnsdist "$DD_PORT" "$probe"

    prime "$NX_PORT" "$WORK/q/cached.txt"
    prime "$UB_PORT" "$WORK/q/cached.txt"
    prime "$DD_PORT" "$WORK/q/cached.txt"
    local scenario qfile lfile
    for scenario in cached blocked mixed miss; do
        case $scenario in
            cached) qfile=$WORK/q/cached.txt lfile=$qfile ;;
            blocked) qfile=$WORK/q/blocked_$list.txt lfile=$qfile ;;
            mixed) qfile=$WORK/q/mixed_$list.txt lfile=$qfile ;;
            miss) qfile=$WORK/q/miss.txt lfile=$WORK/q/miss_lat.txt ;;
        esac
        measure nxguard "$label" "$scenario" "$nx_pid" "$NX_PORT" "$nx_load" "$qfile" "$lfile"
        measure unbound "$label" "$scenario" "$ub_pid" "$UB_PORT" "$ub_load" "$qfile" "$lfile"
        measure dnsdist "$label" "$scenario" "$dd_pid" "$DD_PORT" "$dd_load" "$qfile" "$lfile"
    done
    stop_pid "$nx_pid"
    stop_pid "$ub_pid"
    stop_pid "$dd_pid"
}

# run_scaling: nxguard on the app list, workers=1 on one core vs workers=2 on two cores.
run_scaling() {
    local conf="$WORK/nxguard.scaling.toml" probe workers cpus label pid load scenario qfile lfile
    probe=$(awk 'NR == 1 { print $1; exit }' "$WORK/q/blocked_apps.txt")
    for workers in 1 2; do
        if ((workers == 1)); then
            cpus=$SERVER_CPU label="nxguard-w1" CLIENT_PIN=(taskset -c "$CLIENT_CPU")
        else
            cpus="" label="nxguard-w2" CLIENT_PIN=()
        fi
        write_nxguard_conf "$conf" "$workers" "$ROOT/domains"
        timeout "$READY_TIMEOUT_S" "$NXGUARD" check --config "$conf" >/dev/null ||
            die "nxguard check failed (or ran over ${READY_TIMEOUT_S}s) for $conf"
        note "starting $label (${cpus:-all cores})"
        start "$label.apps" "$cpus" "$NXGUARD" serve --config "$conf"
        pid=$LAST_PID
        load=$(wait_ready "$label.apps" "$pid" "$NX_PORT" "$probe")
        READY_RSS[$pid]=$(rss_mb "$pid")
        sanity "$label" "$NX_PORT" "$probe"
        prime "$NX_PORT" "$WORK/q/cached.txt"
        for scenario in cached blocked mixed miss; do
            case $scenario in
                cached) qfile=$WORK/q/cached.txt lfile=$qfile ;;
                blocked) qfile=$WORK/q/blocked_apps.txt lfile=$qfile ;;
                mixed) qfile=$WORK/q/mixed_apps.txt lfile=$qfile ;;
                miss) qfile=$WORK/q/miss.txt lfile=$WORK/q/miss_lat.txt ;;
            esac
            measure "$label" apps "$scenario" "$pid" "$NX_PORT" "$load" "$qfile" "$lfile"
        done
        stop_pid "$pid"
    done
    CLIENT_PIN=(taskset -c "$CLIENT_CPU")
}

# ---------------------------------------------------------------------------------------------
# Busy section (--busy, --busy-only): fixed-rate latency of one nxguard with an attempt store,
# while the store is written and read and while the big list reloads.

BUSY_PID=0
BUSY_NAME=""
MY_PGRP=$(awk '{ sub(/^.*\) /, ""); print $3 }' /proc/$$/stat)
BUSY_CONF=""
BUSY_LOG=""
BUSY_ROWS=""
BUSY_NOTES=""

# report_loop: `nxguard report` over the busy server's store, again and again; one line per run
# in BUSY_LOG: "exit_status milliseconds".
report_loop() {
    local child=0 t0 status
    trap '((child)) && kill -TERM "$child" 2>/dev/null; wait 2>/dev/null; exit 0' TERM
    while :; do
        t0=$(date +%s%N)
        "$NXGUARD" report --config "$BUSY_CONF" --format json >/dev/null 2>>"$BUSY_LOG.err" &
        child=$!
        status=0
        wait "$child" || status=$?
        child=0
        echo "$status $((($(date +%s%N) - t0) / 1000000))" >>"$BUSY_LOG"
    done
}

# hup_loop: SIGHUP to the busy server 0.5 s from now, then every second; one line per signal in
# BUSY_LOG.
hup_loop() {
    local nap=0
    trap '((nap)) && kill -TERM "$nap" 2>/dev/null; wait 2>/dev/null; exit 0' TERM
    sleep 0.5 &
    nap=$!
    wait "$nap"
    while kill -HUP "$BUSY_PID" 2>/dev/null; do
        echo hup >>"$BUSY_LOG"
        sleep 1 &
        nap=$!
        wait "$nap"
    done
}

# reloads_done: successful plus failed reloads so far.
reloads_done() {
    local text
    text=$(nx_metrics)
    echo $(($(metric "$text" nxguard_reloads_total 'result="ok"') + $(metric "$text" nxguard_reloads_total 'result="failed"')))
}

# reload_seconds: seconds from a SIGHUP to the reload counter moving, polled every 10 ms.
reload_seconds() {
    local before t0 deadline
    before=$(reloads_done)
    t0=$(date +%s%N)
    kill -HUP "$BUSY_PID"
    deadline=$((t0 + 60 * 1000000000))
    while (($(reloads_done) == before)); do
        kill -0 "$BUSY_PID" 2>/dev/null || die "nxguard died during a reload; see $WORK/$BUSY_NAME.log"
        (($(date +%s%N) < deadline)) || die "nxguard did not finish a reload within 60 s"
        sleep 0.01
    done
    awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.3f", d / 1e9 }'
}

# settle SIGNALS_SENT RELOADS_BEFORE: waits (at most 10 s) until the store has committed what it
# holds and every SIGHUP sent has been handled, so that the counters read next are complete.
settle() {
    local deadline=$(($(date +%s) + 10)) text
    while (($(date +%s) < deadline)); do
        text=$(nx_metrics)
        (($(metric "$text" nxguard_store_pending) == 0 && $(metric "$text" nxguard_attempts_queue_depth) == 0)) &&
            (($(metric "$text" nxguard_reloads_total) - $2 >= $1)) && return
        sleep 0.1
    done
}

# busy_run CONDITION QUERY_FILE [LOAD]: one fixed-rate latency run against the busy server,
# with the function LOAD running in the background on CLIENT_CPU meanwhile; one row in BUSY_ROWS.
busy_run() {
    local condition=$1 qfile=$2 load=${3:-} raw="$WORK/raw/busy.$1" before after load_pid=""
    if ! kill -0 "$BUSY_PID" 2>/dev/null; then
        printf '%s\tDIED\n' "$condition" >>"$BUSY_ROWS"
        return
    fi
    BUSY_LOG="$raw.load"
    : >"$BUSY_LOG"
    before=$(nx_metrics)
    local run0 wait0 run1 wait1 t0 t1 others0 others
    read -r run0 wait0 <<<"$(sched_ns "$BUSY_PID")"
    others0=$(foreign_ticks)
    t0=$(date +%s%N)
    if [[ -n $load ]]; then
        # Niced, so that dnsperf, which shares the core, still gets it when it has work and its
        # timestamps stay those of the answers.
        (
            taskset -pc "$CLIENT_CPU" "$BASHPID" >/dev/null
            renice -n 19 -p "$BASHPID" >/dev/null
            "$load"
        ) &
        load_pid=$!
        PIDS+=("$load_pid")
    fi
    run_tracked "${CLIENT_PIN[@]}" dnsperf -s 127.0.0.1 -p "$NX_PORT" -d "$qfile" -q "$IN_FLIGHT" \
        -c "$CLIENTS" -Q "$LAT_QPS" -l "$LAT_SECONDS" -v >"$raw.lat" 2>&1 || true
    t1=$(date +%s%N)
    read -r run1 wait1 <<<"$(sched_ns "$BUSY_PID")"
    # CPU ticks of other processes during the run (one that ended meanwhile is missed).
    others=$(awk 'NR == FNR { b[$1] = $2; next } { s += $2 - b[$1] } END { printf "%.0f\n", s }' \
        <(echo "$others0") <(foreign_ticks))
    if [[ -n $load_pid ]]; then stop_pid "$load_pid"; fi
    if ! kill -0 "$BUSY_PID" 2>/dev/null; then
        printf '%s\tDIED\n' "$condition" >>"$BUSY_ROWS"
        note "nxguard died during busy/$condition; log tail:"
        tail -n 20 "$WORK/$BUSY_NAME.log" >&2 || true
        return
    fi
    local hups
    hups=$(grep -c hup "$BUSY_LOG" || true)
    settle "$hups" "$(metric "$before" nxguard_reloads_total)"
    after=$(nx_metrics)
    if [[ -z $after ]]; then
        printf '%s\tDIED\n' "$condition" >>"$BUSY_ROWS"
        return
    fi
    local completed lost noerror nxdomain p50 p99 p999 max over stored dropped errors
    read -r completed lost _ _ noerror nxdomain _ _ <<<"$(dnsperf_stats "$raw.lat")"
    read -r p50 p99 p999 max over <<<"$(percentiles "$raw.lat")"
    stored=$(($(metric "$after" nxguard_store_written_total) - $(metric "$before" nxguard_store_written_total)))
    dropped=$(($(metric "$after" nxguard_store_dropped_total) + $(metric "$after" nxguard_attempts_dropped_total) -
        $(metric "$before" nxguard_store_dropped_total) - $(metric "$before" nxguard_attempts_dropped_total)))
    errors=$(($(metric "$after" nxguard_store_errors_total) - $(metric "$before" nxguard_store_errors_total)))
    awk -v OFS='\t' -v cond="$condition" -v c="$completed" -v lost="$lost" -v ok="$noerror" -v nx="$nxdomain" \
        -v p50="$p50" -v p99="$p99" -v p999="$p999" -v max="$max" -v over="$over" -v stored="$stored" \
        -v dropped="$dropped" -v errors="$errors" -v run=$((run1 - run0)) -v wait=$((wait1 - wait0)) \
        -v wall=$((t1 - t0)) -v others="$others" -v hz="$CLK_TCK" 'BEGIN {
            print cond, c, lost, (c > 0 ? sprintf("%.0f", 100 * nx / c) : "-"), c - ok - nx,
                p50, p99, p999, max, over, stored, dropped, errors,
                sprintf("%.0f", 100 * run / wall), sprintf("%.1f", wait / 1e6), sprintf("%.0f", 100 * others / hz / (wall / 1e9)) }' >>"$BUSY_ROWS"
    note "busy: $(tail -n 1 "$BUSY_ROWS" | tr '\t' ' ')"
    case $condition in
        store-report)
            LC_ALL=C sort -k2,2n "$BUSY_LOG" | awk '{ n++; if ($1 != 0) failed++; ms[n] = $2 } END {
                if (n == 0) { print "store-report: no report finished during the run"; exit }
                printf "store-report: %d reports ran during the run (%d failed), %d ms each (median)\n",
                    n, failed, ms[int((n + 1) / 2)] }' >>"$BUSY_NOTES"
            if [[ -s $BUSY_LOG.err ]]; then
                echo "  first report error: $(head -n 1 "$BUSY_LOG.err" | cut -c1-200)" >>"$BUSY_NOTES"
            fi
            ;;
        reload)
            echo "reload: $hups SIGHUP sent during the run, $(($(metric "$after" nxguard_reloads_total 'result="ok"') -
                $(metric "$before" nxguard_reloads_total 'result="ok"'))) reloads ok, $(($(metric "$after" nxguard_reloads_total 'result="failed"') -
                $(metric "$before" nxguard_reloads_total 'result="failed"'))) failed (nxguard_reloads_total)" >>"$BUSY_NOTES"
            ;;
    esac
}

# start_busy NAME CONF: starts the busy section's nxguard (pinned, its log in NAME.log), checks
# its answers and primes its cache; sets BUSY_PID and BUSY_NAME.
start_busy() {
    local name=$1 conf=$2 probe load
    probe=$(awk 'NR == 1 { print $1; exit }' "$WORK/q/blocked_big.txt")
    timeout "$READY_TIMEOUT_S" "$NXGUARD" check --config "$conf" >&2 ||
        die "nxguard check failed (or ran over ${READY_TIMEOUT_S}s) for $conf"
    note "starting $name on core $SERVER_CPU"
    start "$name" "$SERVER_CPU" "$NXGUARD" serve --config "$conf"
    BUSY_PID=$LAST_PID BUSY_NAME=$name
    load=$(wait_ready "$name" "$BUSY_PID" "$NX_PORT" "$probe")
    note "ready in ${load}s"
    sanity nxguard "$NX_PORT" "$probe"
    prime "$NX_PORT" "$WORK/q/cached.txt"
}

# run_busy LIST_LABEL: nxguard (workers = 1, pinned) on the generated list: once without an
# attempt store for a baseline, then with one, under each busy condition in turn.
run_busy() {
    local label=$1 conf="$WORK/nxguard.busy.toml" i times=""
    write_nxguard_conf "$WORK/nxguard.busy-nostore.toml" 1 "$WORK/big"
    start_busy nxguard.busy-nostore "$WORK/nxguard.busy-nostore.toml"
    busy_run no-store "$WORK/q/mixed_big.txt"
    stop_pid "$BUSY_PID"

    BUSY_CONF=$conf
    write_nxguard_conf "$conf" 1 "$WORK/big"
    cat >>"$conf" <<EOC

[store]
# Every blocked query writes an attempt record (SQLite, WAL, one writer thread).
path = "$WORK/attempts.sqlite"
EOC
    start_busy nxguard.busy "$conf"
    busy_run idle-store "$WORK/q/mixed_big.txt"
    busy_run store-blocked "$WORK/q/blocked_big.txt"
    busy_run store-report "$WORK/q/mixed_big.txt" report_loop
    if kill -0 "$BUSY_PID" 2>/dev/null; then
        for i in 1 2 3; do
            times+=" $(reload_seconds)"
            sleep 0.2
        done
        echo "reload of the $label list on the idle server (SIGHUP until nxguard_reloads_total moves, polled every 10 ms), 3 times:$times s" >>"$BUSY_NOTES"
        note "reload times:$times s"
    fi
    busy_run reload "$WORK/q/mixed_big.txt" hup_loop
    stop_pid "$BUSY_PID"
}

# busy_checks: rows with lost or failed answers, unexpected NXDOMAIN shares, attempt records
# the store lost or could not write, a p99 above the 0.15 ms target, or other processes busy on
# the machine during the run.
busy_checks() {
    awk -F'\t' '
        $2 == "DIED" { print $1 ": the server died"; next }
        { want = ($1 == "store-blocked" ? 100 : 10)
          if ($4 != "-" && ($4 < want - 1 || $4 > want + 1)) print $1 ": " $4 "% NXDOMAIN, expected " want "%"
          if ($3 > 0) print $1 ": " $3 " queries lost"
          if ($5 > 0) print $1 ": " $5 " answers neither NOERROR nor NXDOMAIN"
          if ($12 > 0) print $1 ": " $12 " attempt records dropped"
          if ($13 > 0) print $1 ": " $13 " failed store writes"
          if ($7 != "-" && $7 > 150) print $1 ": p99 " $7 " us, above the 150 us target"
          if ($16 > 10) print $1 ": other processes used " $16 "% of a core meanwhile; their scheduling may be in the latencies" }
    ' "$BUSY_ROWS"
}

print_busy() {
    {
        printf 'condition\tanswered\tlost\tnx%%\tfail\tp50_us\tp99_us\tp99.9_us\tmax_us\tover_1ms\tstored\tdropped\tst_err\tcpu%%\twait_ms\tothers%%\n'
        cat "$BUSY_ROWS"
    } | align 1
}

# ---------------------------------------------------------------------------------------------
# Report

# align LEFT: tab-separated lines as a table, the first LEFT columns left-aligned, the rest right.
align() {
    awk -F'\t' -v left="$1" '
        { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
          if (NF > nf) nf = NF }
        END { for (r = 1; r <= NR; r++) { line = ""
                for (i = 1; i <= nf; i++) {
                    v = cell[r, i]
                    line = line (i <= left ? sprintf("%-" w[i] "s", v) : sprintf("%" w[i] "s", v)) (i < nf ? "  " : "") }
                sub(/ +$/, "", line); print line } }'
}

print_table() {
    {
        printf 'server\tlist\tscenario\tq/s\tcpu%%\tcpu_us/q\tusr_us/q\tavg_us\tp50_us\tp99_us\trss0_MB\trss_MB\tload_s\tlost\tnx%%\tfail\tresp_B\n'
        cat "$ROWS"
    } | align 3
}

# checks: rows whose answers are not what the scenario expects (blocked: all NXDOMAIN, mixed:
# 10 %, cached and miss: none), with lost or failed queries, or where the pinned server did not
# use its core (then something else limited the run).
checks() {
    awk -F'\t' '
        $4 == "DIED" { print $1 " " $2 " " $3 ": the server died"; next }
        { want = ($3 == "blocked" ? 100 : $3 == "mixed" ? 10 : 0)
          if ($15 != "-" && ($15 < want - 1 || $15 > want + 1)) print $1 " " $2 " " $3 ": " $15 "% NXDOMAIN, expected " want "%"
          if ($14 > 0) print $1 " " $2 " " $3 ": " $14 " queries lost"
          if ($16 > 0) print $1 " " $2 " " $3 ": " $16 " answers neither NOERROR nor NXDOMAIN (see raw dnsperf output)"
          if ($1 != "nxguard-w2" && $5 < 80) print $1 " " $2 " " $3 ": server CPU " $5 "%, so the server was not the limit (another process on its core, or dnsperf); q/s understates it" }
    ' "$ROWS"
}

log_findings() {
    local log count
    for log in "$WORK"/nxguard*.log; do
        [[ -e $log ]] || continue
        count=$(grep -c -E 'WARN|ERROR|panicked' "$log" || true)
        if ((count > 0)); then
            echo "$(basename "$log"): $count warning/error line(s), first ones:"
            # Without a terminal nxguard still colours its log; strip the escapes.
            grep -m 5 -E 'WARN|ERROR|panicked' "$log" | sed 's/\x1b\[[0-9;]*m//g; s/^/  /' | cut -c1-300
        fi
    done
}

main() {
    ensure_tools
    build_nxguard
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/nxguard-load.XXXXXX")
    ROWS="$WORK/rows.tsv"
    OUTCOMES="$WORK/outcomes.txt"
    BUSY_ROWS="$WORK/busy_rows.tsv"
    BUSY_NOTES="$WORK/busy_notes.txt"
    mkdir -p "$WORK/raw"
    : >"$ROWS"
    : >"$OUTCOMES"
    : >"$BUSY_ROWS"
    : >"$BUSY_NOTES"
    CLK_TCK=$(getconf CLK_TCK)
    CLIENT_PIN=(taskset -c "$CLIENT_CPU")
    local size_label
    case $LIST_SIZE in
        1000000) size_label=1M ;;
        *000000) size_label=$((LIST_SIZE / 1000000))M ;;
        *000) size_label=$((LIST_SIZE / 1000))k ;;
        *) size_label=$LIST_SIZE ;;
    esac
    make_corpora "$size_label"

    write_upstream_conf "$WORK/upstream.conf" "$AUTH_PORT" "$WORK"
    unbound-checkconf "$WORK/upstream.conf" >/dev/null || die "unbound-checkconf failed for the upstream"
    note "starting the upstream (unbound authoritative for bench.test) on port $AUTH_PORT"
    start upstream "$CLIENT_CPU" unbound -d -c "$WORK/upstream.conf"
    local up_pid=$LAST_PID
    wait_ready upstream "$up_pid" "$AUTH_PORT" host1.bench.test >/dev/null

    if ((!BUSY_ONLY)); then
        run_pair apps apps
        run_pair big "$size_label"
    fi
    if ((SCALING)); then
        # Both cores for nxguard: the upstream must not stay pinned to the client core.
        stop_pid "$up_pid"
        start upstream "" unbound -d -c "$WORK/upstream.conf"
        up_pid=$LAST_PID
        wait_ready upstream "$up_pid" "$AUTH_PORT" host1.bench.test >/dev/null
        run_scaling
        if ((BUSY)); then
            stop_pid "$up_pid"
            start upstream "$CLIENT_CPU" unbound -d -c "$WORK/upstream.conf"
            up_pid=$LAST_PID
            wait_ready upstream "$up_pid" "$AUTH_PORT" host1.bench.test >/dev/null
        fi
    fi
    if ((BUSY)); then
        run_busy "$size_label"
    fi

    # A --quick run does not overwrite the figures of the last full run, nor does a --busy-only
    # run, which has no main table.
    local out="$ROOT/benches/results/latest" findings problems busy_problems
    ((BUSY_ONLY)) && out+="-busy"
    ((QUICK)) && out+="-quick"
    out+=".txt"
    mkdir -p "$ROOT/benches/results"
    findings=$(log_findings)
    problems=$(checks)
    busy_problems=$(busy_checks)
    {
        echo "nxguard load benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "command: bash benches/load.sh $*"
        echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
        echo "nxguard: $NXGUARD_ORIGIN; $(unbound -V | awk 'NR == 1 { print "unbound " $2 }'), $(dnsdist --version 2>&1 | awk 'NR == 1 { print "dnsdist " $2 }'), $(dnsperf -h 2>&1 | awk '/^Version/ { print "dnsperf " $2 }')"
        echo "runs: ${DURATION}s at -q $IN_FLIGHT -c $CLIENTS; latency: ${LAT_SECONDS}s at -Q $LAT_QPS; servers on core $SERVER_CPU, dnsperf and upstream on core $CLIENT_CPU (nxguard-w2: all unpinned)"
        if ((!BUSY_ONLY)); then
            echo
            print_table
            echo
            echo "nxguard outcome counters per throughput run (from /metrics):"
            sed 's/^/  /' "$OUTCOMES"
            echo
            if [[ -n $problems ]]; then
                echo "checks: PROBLEMS"
                echo "$problems" | sed 's/^/  /'
            else
                echo "checks: every run got the expected answers, nothing lost or failed, every pinned server used its core"
            fi
        fi
        if ((BUSY)); then
            echo
            echo "busy: nxguard (workers = 1) on the $size_label list, ${LAT_SECONDS}s per condition at -Q $LAT_QPS; no-store on a server of its own, the rest on one server with the attempt store"
            print_busy
            echo
            cat "$BUSY_NOTES"
            if [[ -n $busy_problems ]]; then
                echo "busy checks: PROBLEMS"
                echo "$busy_problems" | sed 's/^/  /'
            else
                echo "busy checks: expected answers, nothing lost, failed or dropped, every p99 within 150 us"
            fi
        fi
        if [[ -n $findings ]]; then
            echo
            echo "$findings"
        fi
    } | tee "$out"
    note "written to $out"
}

main "$@"
