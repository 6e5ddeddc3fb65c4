#!/usr/bin/env bash
# User-space instructions a proxy spends per pgbench -S transaction, counted
# by valgrind's callgrind: unlike CPU time on this shared VM, the count does
# not move with what else the machine is doing (±3 % between runs, from JIT
# and GC timing), so it shows small changes to the relay's per-message cost.
# Kernel work is not counted.
#
#   bench/tools/callgrind-pgbench.sh <port> <command…>
#
# <command…> must start a proxy listening on 127.0.0.1:<port> in front of
# PostgreSQL 127.0.0.1:5432 (database pp_bench, made by `npm run bench --
# pgbench`). Examples, from the repository root after `npm run build`:
#
#   N=node_modules/node/bin/node
#   bench/tools/callgrind-pgbench.sh 7021 $N bin/polyproxy.js --protocol postgres --port 7021 --backend 127.0.0.1:5432 --workers 1 --log-level warn
#   POLYPROXY_DIRECT_IO=0 bench/tools/callgrind-pgbench.sh 7022 $N bin/polyproxy.js --protocol postgres --port 7022 --backend 127.0.0.1:5432 --workers 1 --log-level warn
#   bench/tools/callgrind-pgbench.sh 7023 $N bench/lib/raw-proxy.ts --backend 127.0.0.1:5432 --port 7023
#
# It warms the proxy up (300 transactions per client, so V8 has compiled the
# hot path), zeroes the counters, runs 8 clients × 1,000 transactions and
# prints the instructions per transaction of the whole process (all threads).
set -euo pipefail
port=$1
shift
CLIENTS=8
TX=1000
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
# stdin stays open while this script runs (bench/lib proxies exit when it closes).
mkfifo "$out/stdin"
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" --dump-instr=no "$@" > "$out/proxy.log" 2>&1 < "$out/stdin" &
exec 3> "$out/stdin"
pid=
for _ in $(seq 120); do
  pid=$(ss -ltnpH "sport = :$port" | grep -oP 'pid=\K\d+' | head -1 || true)
  [ -n "$pid" ] && break
  sleep 1
done
[ -n "$pid" ] || { echo "nothing listens on $port after 120 s:" >&2; cat "$out/proxy.log" >&2; exit 1; }
bench() { pgbench -S -n -c $CLIENTS -j 2 -t "$1" -h 127.0.0.1 -p "$port" -U postgres pp_bench; }
bench 300 > /dev/null 2>&1
callgrind_control -z "$pid" > /dev/null 2>&1
bench $TX > "$out/pgbench.log" 2>&1 || { cat "$out/pgbench.log" >&2; exit 1; }
callgrind_control -d "$pid" > /dev/null 2>&1
for _ in $(seq 50); do [ -s "$out/cg.out.1" ] && break; sleep 0.2; done
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out/cg.out.1")
echo "instructions per transaction: $((ir / (CLIENTS * TX))) (user space, $((CLIENTS * TX)) transactions)"
