#!/usr/bin/env bash
# A/B comparison of nxguard binaries (and of Unbound, dnsdist and a do-nothing responder) on
# one scenario, interleaved, for judging one change.
#
#   bash benches/ab.sh SCENARIO SECONDS SERVER...
#
# SCENARIO is cached, blocked (the shipped lists) or miss (every query a new name, forwarded).
# A SERVER is an nxguard binary, `unbound`, `dnsdist`, or the do-nothing responder's binary
# (benches/null_responder.rs, recognised by its name). Each round starts every server in turn
# pinned to core 1 (nxguard workers = 1), with dnsperf and a local authoritative Unbound (the
# upstream, as in load.sh) on core 0, runs dnsperf -q 100 -c 4 for SECONDS and prints one line
# per server: q/s, CPU µs per query split into user and system, RSS, lost queries and how busy
# each core was. Servers alternate within a round, so a noisy neighbour hits all of them;
# repeat rounds (ROUNDS, default 2) and compare like with like. nxguard records every blocked
# attempt in an SQLite store (STORE=0: no store). LAT_QPS=10000 adds a fixed-rate run of
# LAT_SECONDS (default 3) and its p50/p99. SYSCALLS=1 counts the server's system calls per query
# with perf stat (needs linux-perf). Needs dnsperf, unbound, dnsdist and dig (see load.sh).
# Ports PORT_BASE (the server) and PORT_BASE + 2 (upstream), default 25350; everything it starts
# is stopped by PID on exit.
set -euo pipefail

if (($# < 3)); then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
SCENARIO=$1 SECONDS_PER_RUN=$2
shift 2
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-25350}
STORE=${STORE:-1}
LAT_QPS=${LAT_QPS:-}
LAT_SECONDS=${LAT_SECONDS:-3}
NX=$PORT_BASE AUTH=$((PORT_BASE + 2))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/unbound.sh
source "$ROOT/benches/unbound.sh"
# shellcheck source=benches/dnsdist.sh
source "$ROOT/benches/dnsdist.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nxguard-ab.XXXXXX")
UPSTREAM_PID="" SERVER_PID="" STAT_PID=""
cleanup() {
    local pid
    for pid in $STAT_PID $SERVER_PID $UPSTREAM_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

case $SCENARIO in cached | blocked | miss) ;; *) echo "ab.sh: unknown scenario $SCENARIO" >&2; exit 2 ;; esac

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
# Every listed domain of the shipped lists, for Unbound's and dnsdist's block rules.
awk '/^[a-z0-9]/ { print $1 }' "$ROOT"/domains/*.txt | LC_ALL=C sort -u >"$WORK/domains.txt"
{
    unbound_server "$NX" "$WORK"
    cat <<EOF
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  qname-minimisation: no
  msg-cache-size: 256m
  rrset-cache-size: 512m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  local-zone: "test." nodefault
EOF
    awk '{ printf "  local-zone: \"%s.\" always_nxdomain\n", $1 }' "$WORK/domains.txt"
    cat <<EOF
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$AUTH
EOF
} >"$WORK/unbound.conf"
write_dnsdist_conf "$WORK/dnsdist.conf" "$NX" "$AUTH" "$WORK/domains.txt"
awk 'BEGIN { for (i = 1; i <= 10000; i++) print "host" i ".bench.test A" }' >"$WORK/cached.txt"
awk '/^[a-z0-9]/ { print "a1.b2." $1 " A" }' "$ROOT"/domains/tiktok.txt "$ROOT"/domains/temu.txt \
    >"$WORK/blocked.txt"

taskset -c 0 unbound -d -c "$WORK/upstream.conf" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!

busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
ticks() { awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }

# start_server SERVER: starts it pinned to core 1 on port NX; sets SERVER_PID and LABEL.
start_server() {
    case $1 in
        unbound) LABEL=unbound
            taskset -c 1 unbound -d -c "$WORK/unbound.conf" >"$WORK/server.log" 2>&1 & ;;
        dnsdist) LABEL=dnsdist
            taskset -c 1 dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf" >"$WORK/server.log" 2>&1 & ;;
        *null_responder*) LABEL=null
            taskset -c 1 "$1" --bench "$NX" >"$WORK/server.log" 2>&1 & ;;
        *) LABEL=$(basename "$1")
            taskset -c 1 "$1" serve --config "$WORK/nxguard.toml" >"$WORK/server.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 400); do
        dig +tries=1 +time=1 -p "$NX" @127.0.0.1 tiktok.com 2>/dev/null | grep -q 'status:' && return
        sleep 0.05
    done
    echo "ab.sh: $1 did not answer; its log:" >&2
    tail -n 20 "$WORK/server.log" >&2
    exit 1
}

# latency FILE: "p50_us p99_us" of a fixed-rate run at LAT_QPS (dnsperf -v lines).
latency() {
    taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$1" -q 100 -c 4 -Q "$LAT_QPS" -l "$LAT_SECONDS" "${once[@]}" -v \
        2>/dev/null | awk '/^> / { print $NF * 1e6 }' | LC_ALL=C sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
            printf "%.0f %.0f\n", v[int(NR * 0.5 + 0.999)], v[int(NR * 0.99 + 0.999)] }'
}

for round in $(seq "$ROUNDS"); do
    for server in "$@"; do
        start_server "$server"
        pid=$SERVER_PID
        once=() queries=$WORK/$SCENARIO.txt
        if [[ $SCENARIO == miss ]]; then
            # New names every round and server, so no server sees a name another one cached.
            awk -v r="$round-$LABEL" -v n=$((SECONDS_PER_RUN * 200000)) \
                'BEGIN { for (i = 0; i < n; i++) printf "m%x-%s.miss.bench.test A\n", i, r }' >"$WORK/miss.txt"
            awk -v r="$round-$LABEL" -v n=$((LAT_SECONDS * ${LAT_QPS:-0} + 1000)) \
                'BEGIN { for (i = 0; i < n; i++) printf "l%x-%s.miss.bench.test A\n", i, r }' >"$WORK/miss_lat.txt"
            once=(-n 1)
        fi
        if [[ $SCENARIO == cached ]]; then
            taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$WORK/cached.txt" -n 1 -q 100 >/dev/null 2>&1 || true
        fi
        read -r u0 s0 < <(ticks "$pid")
        read -r b0 i0 < <(busy 0)
        read -r b1 i1 < <(busy 1)
        if [[ ${SYSCALLS:-0} == 1 ]]; then
            perf stat -x, -e "${SYSCALL_EVENTS:-raw_syscalls:sys_enter}" -p "$pid" -o "$WORK/syscalls.csv" &
            STAT_PID=$!
        fi
        taskset -c 0 dnsperf -s 127.0.0.1 -p "$NX" -d "$queries" -q 100 -c 4 -l "$SECONDS_PER_RUN" "${once[@]}" \
            >"$WORK/dnsperf.out" 2>&1 || true
        calls=""
        if [[ -n $STAT_PID ]]; then
            kill -INT "$STAT_PID"
            wait "$STAT_PID" 2>/dev/null || true
            STAT_PID=""
            calls=$(awk -F, '/sys_enter/ { n += $1 } END { print n }' "$WORK/syscalls.csv"); cp "$WORK/syscalls.csv" "/tmp/syscalls.$LABEL.csv"
        fi
        read -r u1 s1 < <(ticks "$pid")
        read -r b0b i0b < <(busy 0)
        read -r b1b i1b < <(busy 1)
        rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
        lat=""
        if [[ -n $LAT_QPS ]]; then
            [[ $SCENARIO == miss ]] && queries=$WORK/miss_lat.txt
            lat=$(latency "$queries")
        fi
        awk -v bin="$LABEL" -v sc="$SCENARIO" -v hz="$(getconf CLK_TCK)" -v u=$((u1 - u0)) \
            -v s=$((s1 - s0)) -v rss="$rss" -v c0=$((b0b - b0)) -v i0=$((i0b - i0)) -v c1=$((b1b - b1)) \
            -v i1=$((i1b - i1)) -v calls="$calls" -v lat="$lat" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
            /Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 } /Queries per second:/ { q = $4 }
            END { printf "%-24s %-7s q/s %7.0f  cpu_us/q %5.1f  usr %4.1f  sys %4.1f  rss %4d MB  lost %d  core0 %3.0f%%  core1 %3.0f%%  load %s",
                bin, sc, q, (u + s) / hz * 1e6 / c, u / hz * 1e6 / c, s / hz * 1e6 / c, rss, l,
                100 * c0 / (c0 + i0), 100 * c1 / (c1 + i1), load
                if (calls != "") printf "  syscalls/q %.2f", calls / c
                if (lat != "") { split(lat, p, " "); printf "  p50 %s us  p99 %s us", p[1], p[2] }
                printf "\n" }' "$WORK/dnsperf.out"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        SERVER_PID=""
    done
done
