#!/usr/bin/env bash
# make demo: the hub (sample directory, embedded NATS + SQLite under
# $DATA_DIR) plus two demo messengers, "App A" and "App B", each connected
# through the Bridge Protocol as a bridge of its own operator. Open both
# pages and Element; a message typed in one shows in the others.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
data=${DATA_DIR:-$root/data-demo}
listen=${LISTEN:-127.0.0.1:8008}
server=${SERVER:-localhost}
store=(--data-dir "$data" --server-name "$server")
mkdir -p "$data"

"$bin/eimis-hub" sample "${store[@]}"
for app in a b; do
  "$bin/eimis-hub" operator add "${store[@]}" --id "demo-$app" --name "Demo app ${app^^}" \
    --server "app-$app.demo.invalid" --contact "demo@example.invalid" >/dev/null 2>&1 || true
  if [ ! -s "$data/bridge-$app.token" ]; then
    "$bin/eimis-hub" bridge add "${store[@]}" --operator "demo-$app" --id "demo-$app" \
      | sed -n 's/^token: //p' > "$data/bridge-$app.token"
    chmod 600 "$data/bridge-$app.token"
  fi
done

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
# The demo apps bind their fictional practitioners at start-up, with
# nobody there to type a link code: the demo hub runs with the insecure
# bind option, which a real hub never uses.
"$bin/eimis-hub" serve "${store[@]}" --listen "$listen" --log-level warn --bridge-bind-without-consent-insecure &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://$listen/_eimis/ready" >/dev/null 2>&1 && break; sleep 0.2; done

# App A: two doctors; App B: a doctor and the pharmacist (fictional people
# of the sample directory). Hélène Fontenelle also has a Matrix account
# (password eimis-sample) for Element.
"$bin/eimis-demo" --name "App A" --color "#0063cb" --listen 127.0.0.1:8101 --hub "http://$listen" \
  --token-file "$data/bridge-a.token" --users 810000000017,810000000033 &
pids+=($!)
"$bin/eimis-demo" --name "App B" --color "#18753c" --listen 127.0.0.1:8102 --hub "http://$listen" \
  --token-file "$data/bridge-b.token" --users 810000000090,810000000041 &
pids+=($!)
cat <<MSG

EIMIS demo is running (Ctrl-C stops everything):
  App A    http://127.0.0.1:8101   (Hélène Fontenelle, Zoé Martin-Duchêne)
  App B    http://127.0.0.1:8102   (Anaïs Castelnove, François d'Almeiras)
  Element  homeserver http://$listen, user 810000000025 / eimis-sample
In App A, search "Castelnove" and start a conversation; write; it appears in App B.
MSG
wait
