#!/usr/bin/env bash
# Runs one benchmark scenario against a fresh hub (fresh data directory,
# and for PostgreSQL a fresh throwaway server with fsync and
# synchronous_commit on), so runs do not influence each other.
#
#   scripts/bench.sh sqlite|postgres a|b|c [extra eimis-bench flags]
#
# a: 2 users in 1 room, one message at a time
# b: 200 rooms x 2 members, open loop at 1,000 events/s for 30 s
# c: 200 rooms x 2 members, closed loop with 64 senders for 30 s (max rate)
set -euo pipefail
dialect=${1:?sqlite or postgres}
scenario=${2:?a, b or c}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=auto
work=$(mktemp -d /tmp/eimis-bench.XXXXXX)
secret=bench-secret-$RANDOM$RANDOM
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

(cd "$root" && go build -o "$work/bin/" ./cmd/eimis-hub ./cmd/eimis-bench)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Rate limits off: the benchmark sends at machine speed from one address.
args=(serve --data-dir "$work/data" --listen "127.0.0.1:$port" --registration-shared-secret "$secret" --log-level warn --rate-limits=false)

if [ "$dialect" = postgres ]; then
  pg_bin=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
  mkdir -p "$work/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
  as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w start \
    -o "-p $pgport -k $work/pg -h 127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB -c max_connections=200" >/dev/null
  args+=(--database "postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable")
fi

# The hub admits practitioners of its directory only: load synthetic ones,
# the same serials eimis-bench --idnat-base 1 registers.
"$work/bin/eimis-hub" directory synth --count 1000 --start 1 "$work/directory.txt" >/dev/null
"$work/bin/eimis-hub" directory import "${args[@]:1}" "$work/directory.txt" >/dev/null

"$work/bin/eimis-hub" "${args[@]}" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/_eimis/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

case $scenario in
  a) load=(--users 2 --rooms 1 --members 2 --rate 0 --concurrency 1 --messages 3000) ;;
  b) load=(--users 400 --rooms 200 --members 2 --rate 1000 --duration 30s) ;;
  c) load=(--users 400 --rooms 200 --members 2 --rate 0 --concurrency 64 --duration 30s) ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
echo "# dialect=$dialect scenario=$scenario $(nproc) cores, $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
"$work/bin/eimis-bench" --hs "http://127.0.0.1:$port" --shared-secret "$secret" --idnat-base 1 "${load[@]}" "$@"
