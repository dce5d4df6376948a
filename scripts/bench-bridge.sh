#!/usr/bin/env bash
# Runs one Bridge Protocol benchmark scenario against a fresh hub (fresh
# data directory, and for PostgreSQL a fresh throwaway server with fsync
# and synchronous_commit on), so runs do not influence each other. Two
# operators (vendora, vendorb) each get one bridge (app A, app B) through
# the CLI; eimis-bench --mode bridge connects both with the Go SDK.
#
#   scripts/bench-bridge.sh sqlite|postgres a|b|c|m [extra eimis-bench flags]
#
# a: 1 room (1 user on A, 1 on B), one message at a time, A -> hub -> B
# b: 200 rooms, open loop at 1,000 messages/s for 30 s
# c: 200 rooms, closed loop with 64 senders for 30 s (max sustained rate)
# m: bind 100,000 practitioners on bridge A; the hub's heap and RSS
#    (/metrics, after a forced GC) before and after -> bytes per bound user
set -euo pipefail
dialect=${1:?sqlite or postgres}
scenario=${2:?a, b, c or m}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=auto
work=$(mktemp -d /tmp/eimis-bench-bridge.XXXXXX)
hub_pid=""
pg_bin=""
cleanup() {
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null
  if [ -n "$pg_bin" ]; then as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case $scenario in
  a) load=(--rooms 1 --rate 0 --concurrency 1 --messages 3000); people=1000 ;;
  b) load=(--rooms 200 --rate 1000 --duration 30s); people=1000 ;;
  c) load=(--rooms 200 --rate 0 --concurrency 64 --duration 30s); people=1000 ;;
  m) load=(--bind-users 100000 --setup-concurrency 64); people=101000 ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac

(cd "$root" && go build -o "$work/bin/" ./cmd/eimis-hub ./cmd/eimis-bench)
port=$(free_port)
pprof_port=$(free_port)
# Rate limits off: the benchmark binds and sends at machine speed. The
# bench binds thousands of synthetic practitioners, who cannot each type a
# link code: the hub runs with the insecure bind option, which is what it
# measures too (a consented bind costs one more indexed delete).
args=(serve --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level warn --rate-limits=false --bridge-bind-without-consent-insecure)

if [ "$dialect" = postgres ]; then
  pg_bin=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
  mkdir -p "$work/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
  as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
  pgport=$(free_port)
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w start \
    -o "-p $pgport -k $work/pg -h 127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB -c max_connections=200" >/dev/null
  args+=(--database "postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable")
fi
store=("${args[@]:1}")

# Only practitioners of the directory can be bound: load synthetic ones,
# the serials eimis-bench --idnat-base 1 binds (room r: 1+2r on A, 2+2r
# on B; scenario m: 1 to 100,000).
"$work/bin/eimis-hub" directory synth --count "$people" --start 1 "$work/directory.txt" >/dev/null
"$work/bin/eimis-hub" directory import "${store[@]}" "$work/directory.txt" >/dev/null

# Two operators of the allow-list, one bridge each.
tokens=()
for op in vendora vendorb; do
  "$work/bin/eimis-hub" operator add "${store[@]}" --id "$op" --name "Vendor ${op#vendor}" \
    --server "$op.example" --contact "security@$op.example" >/dev/null
  tok=$("$work/bin/eimis-hub" bridge add "${store[@]}" --operator "$op" --id "$op-app" | awk '$1 == "token:" {print $2}')
  [ -n "$tok" ] || { echo "bridge add printed no token" >&2; exit 3; }
  tokens+=("$tok")
done

# pprof on its own loopback port lets the memory scenario force a GC
# before each sample (/debug/pprof/heap?gc=1).
EIMIS_PPROF_ADDR="127.0.0.1:$pprof_port" "$work/bin/eimis-hub" "${args[@]}" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$port/_eimis/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "# bridge path: dialect=$dialect scenario=$scenario $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
set +e
"$work/bin/eimis-bench" --mode bridge --hs "http://127.0.0.1:$port" --bridge-tokens "${tokens[0]},${tokens[1]}" \
  --idnat-base 1 --gc-url "http://127.0.0.1:$pprof_port/debug/pprof/heap?gc=1" "${load[@]}" "$@"
code=$?
set -e
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$code" != 0 ]; then
  echo "# eimis-bench exited $code; hub log tail:" >&2
  tail -n 20 "$work/hub.log" >&2 || true
fi
exit "$code"
