#!/usr/bin/env bash
# A/B comparison of nxguard binaries on one scenario, interleaved, for judging one change.
#
#   bash benches/ab.sh SCENARIO SECONDS BINARY...
#
# SCENARIO is cached, blocked (the shipped lists) or miss (every query a new name, forwarded).
# Each round starts every binary in turn pinned to core 1 (workers = 1), with dnsperf and a
# local authoritative Unbound (the upstream, as in load.sh) on core 0, runs dnsperf -q 100 -c 4
# for SECONDS and prints one line per binary: q/s, CPU µs per query split into user and
# system, RSS, lost queries and how busy each core was. Binaries alternate within a round, so
# a noisy neighbour hits both; repeat rounds (ROUNDS, default 2) and compare like with like.
# Needs dnsperf, unbound and dig (see load.sh). Ports PORT_BASE (nxguard) and PORT_BASE + 2
# (upstream), default 25350; everything it starts is stopped by PID on exit. SYSCALLS=1 also
# counts the server's system calls per query with perf stat (needs linux-perf): a figure that,
# unlike CPU time, hardly moves with a noisy neighbour.
set -euo pipefail

if (($# < 3)); then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
SCENARIO=$1 SECONDS_PER_RUN=$2
shift 2
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-25350}
NX=$PORT_BASE AUTH=$((PORT_BASE + 2))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/unbound.sh
source "$ROOT/benches/unbound.sh"
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
awk 'BEGIN { for (i = 1; i <= 10000; i++) print "host" i ".bench.test A" }' >"$WORK/cached.txt"
awk '/^[a-z0-9]/ { print "a1.b2." $1 " A" }' "$ROOT"/domains/tiktok.txt "$ROOT"/domains/temu.txt \
    >"$WORK/blocked.txt"

taskset -c 0 unbound -d -c "$WORK/upstream.conf" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!

busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
ticks() { awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
    for bin in "$@"; do
        taskset -c 1 "$bin" serve --config "$WORK/nxguard.toml" >"$WORK/nxguard.log" 2>&1 &
        pid=$!
        SERVER_PID=$pid
        for _ in $(seq 200); do
            dig +tries=1 +time=1 -p "$NX" @127.0.0.1 tiktok.com 2>/dev/null | grep -q 'status:' && break
            sleep 0.05
        done
        once=() queries=$WORK/$SCENARIO.txt
        if [[ $SCENARIO == miss ]]; then
            # New names every round, so no binary sees a name another one cached.
            awk -v r="$round" -v n=$((SECONDS_PER_RUN * 200000)) \
                'BEGIN { for (i = 0; i < n; i++) printf "m%x-%d.miss.bench.test A\n", i, r }' >"$WORK/miss.txt"
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
            calls=$(awk -F, '/sys_enter/ { n += $1 } END { print n }' "$WORK/syscalls.csv"); cp "$WORK/syscalls.csv" "/tmp/syscalls.$(basename "$bin").csv"
        fi
        read -r u1 s1 < <(ticks "$pid")
        read -r b0b i0b < <(busy 0)
        read -r b1b i1b < <(busy 1)
        rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
        awk -v bin="$(basename "$bin")" -v sc="$SCENARIO" -v hz="$(getconf CLK_TCK)" -v u=$((u1 - u0)) \
            -v s=$((s1 - s0)) -v rss="$rss" -v c0=$((b0b - b0)) -v i0=$((i0b - i0)) -v c1=$((b1b - b1)) \
            -v i1=$((i1b - i1)) -v calls="$calls" '
            /Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 } /Queries per second:/ { q = $4 }
            END { printf "%-24s %-7s q/s %7.0f  cpu_us/q %5.1f  usr %4.1f  sys %4.1f  rss %4d MB  lost %d  core0 %3.0f%%  core1 %3.0f%%",
                bin, sc, q, (u + s) / hz * 1e6 / c, u / hz * 1e6 / c, s / hz * 1e6 / c, rss, l,
                100 * c0 / (c0 + i0), 100 * c1 / (c1 + i1)
                if (calls != "") printf "  syscalls/q %.2f", calls / c
                printf "\n" }' "$WORK/dnsperf.out"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        SERVER_PID=""
    done
done
