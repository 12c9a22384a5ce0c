#!/usr/bin/env bash
# Where a query's time goes: nxguard under perf record (user and kernel, sampled) or under
# callgrind (user-space instructions, counted exactly) on one scenario.
#
#   bash benches/profile.sh perf|callgrind SCENARIO BINARY [QUERIES]
#
# SCENARIO is cached, blocked or miss, with ab.sh's corpora, config and attempt store (STORE=0:
# none). nxguard runs pinned to core 1 with workers = 1, the upstream (a local authoritative
# Unbound) and dnsperf on core 0. perf: dnsperf -q 100 -c 4 for SECONDS (default 5) while
# `perf record -e cpu-clock -g` samples the server; prints the top symbols (self time, user and
# kernel) and keeps perf.data under OUT (default /tmp/nxguard-profile). callgrind: the server
# runs under valgrind; after a warm-up pass the counters are zeroed, QUERIES (default 20000)
# queries are sent at LAT_QPS (default 2000) q/s, and the instructions per query are printed
# with the top functions (inclusive) from callgrind_annotate; callgrind.out stays under OUT.
# A binary built with `--profile bench` (debug info) gives inlined functions their own lines.
# Ports PORT_BASE (default 25370) and PORT_BASE + 2; everything started here is stopped by PID.
set -euo pipefail

if (($# < 3)); then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
TOOL=$1 SCENARIO=$2 BIN=$3 QUERIES=${4:-20000}
PORT_BASE=${PORT_BASE:-25370}
SECONDS_PER_RUN=${SECONDS:-5}
STORE=${STORE:-1}
RATE=${LAT_QPS:-2000}
OUT=${OUT:-/tmp/nxguard-profile}
NX=$PORT_BASE AUTH=$((PORT_BASE + 2))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/unbound.sh
source "$ROOT/benches/unbound.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nxguard-profile.XXXXXX")
mkdir -p "$OUT"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
case $TOOL in perf | callgrind) ;; *) echo "profile.sh: unknown tool $TOOL" >&2; exit 2 ;; esac
case $SCENARIO in cached | blocked | miss) ;; *) echo "profile.sh: unknown scenario $SCENARIO" >&2; exit 2 ;; esac

write_upstream_conf "$WORK/upstream.conf" "$AUTH" "$WORK"
cat >"$WORK/nxguard.toml" <<EOF
[server]
udp = ["127.0.0.1:$NX"]
tcp = ["127.0.0.1:$NX"]
workers = 1
[access]
allow = ["127.0.0.0/8"]
[limits]
client_qps = 0
[upstream]
timeout_ms = 1500
servers = [{ address = "127.0.0.1:$AUTH", protocol = "udp" }]
[cache]
max_entries = 5000000
[log]
level = "warn"
EOF
if ((STORE)); then
    printf '[store]\npath = "%s"\n' "$WORK/attempts.sqlite" >>"$WORK/nxguard.toml"
fi
awk 'BEGIN { for (i = 1; i <= 10000; i++) print "host" i ".bench.test A" }' >"$WORK/cached.txt"
awk '/^[a-z0-9]/ { print "a1.b2." $1 " A" }' "$ROOT"/domains/tiktok.txt "$ROOT"/domains/temu.txt \
    >"$WORK/blocked.txt"
miss_names() {
    awk -v p="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s%x.miss.bench.test A\n", p, i }'
}

taskset -c 0 unbound -d -c "$WORK/upstream.conf" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

start_server() {
    taskset -c 1 "$@" >"$WORK/server.log" 2>&1 &
    SERVER=$!
    PIDS+=("$SERVER")
    for _ in $(seq 600); do
        dig +tries=1 +time=1 -p "$NX" @127.0.0.1 tiktok.com 2>/dev/null | grep -q 'status:' && return
        sleep 0.1
    done
    tail -n 20 "$WORK/server.log" >&2
    echo "profile.sh: the server did not answer" >&2
    exit 1
}

# queries N: a file of N queries of the scenario (cached and blocked repeat their corpus).
queries() {
    case $SCENARIO in
        miss) miss_names "m$2-" "$1" ;;
        *) awk -v n="$1" '{ q[NR] = $0 } END { for (i = 0; i < n; i++) print q[i % NR + 1] }' "$WORK/$SCENARIO.txt" ;;
    esac >"$WORK/run.txt"
}

dnsperf_fixed() {
    taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$WORK/run.txt" -n 1 -q 100 -c 4 -Q "$RATE" -l 600 >"$WORK/$1.out" 2>&1 || true
    awk '/Queries completed:/ { print $3 }' "$WORK/$1.out"
}

if [[ $TOOL == perf ]]; then
    start_server "$BIN" serve --config "$WORK/nxguard.toml"
    [[ $SCENARIO == cached ]] && taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$WORK/cached.txt" -n 1 -q 100 >/dev/null 2>&1
    queries $((SECONDS_PER_RUN * 200000)) 0
    perf record -e cpu-clock -F 4999 -g -p "$SERVER" -o "$OUT/perf.$SCENARIO.data" 2>"$WORK/perf.err" &
    PERF=$!
    taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$WORK/run.txt" -n 1 -q 100 -c 4 -l "$SECONDS_PER_RUN" >"$WORK/load.out" 2>&1 || true
    kill -INT "$PERF"
    wait "$PERF" 2>/dev/null || true
    grep -E 'Queries (completed|per second)' "$WORK/load.out"
    perf report -i "$OUT/perf.$SCENARIO.data" --no-children --sort dso,sym --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -n "${TOP:-45}"
    exit 0
fi

# callgrind: counters off until the warm-up is done.
start_server valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$SCENARIO.out" \
    "$BIN" serve --config "$WORK/nxguard.toml"
queries 2000 w
dnsperf_fixed warm >/dev/null
[[ $SCENARIO == cached ]] && { cp "$WORK/cached.txt" "$WORK/run.txt"; dnsperf_fixed prime >/dev/null; }
queries "$QUERIES" 1
callgrind_control -i on "$SERVER" >/dev/null
done_queries=$(dnsperf_fixed measured)
callgrind_control -i off "$SERVER" >/dev/null
callgrind_control -d "$SERVER" >/dev/null
sleep 1
file=$(ls -t "$OUT"/callgrind."$SCENARIO".out* | head -n 1)
total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
echo "$SCENARIO: $done_queries queries, $total instructions, $((total / done_queries)) per query ($file)"
callgrind_annotate --inclusive=yes "$file" 2>/dev/null | sed -n '/^Ir/,$p' | head -n "${TOP:-45}" | cut -c1-200
