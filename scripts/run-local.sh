#!/usr/bin/env bash
# `make run`: a single-node Belfry (SQLite + embedded worker) with the example jobs applied.
set -euo pipefail
listen=${1:-127.0.0.1:7711}
url="http://${listen}"
bin=.venv/bin
export BELFRY_SERVER="$url"
"$bin/belfry" server --listen "$listen" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { wait $server; exit 1; }
  sleep 0.1
done
# A restart keeps what was changed since by hand (a pause...): apply refuses to undo it.
"$bin/belfry" apply -f examples/jobs.yaml ||
  echo "examples/jobs.yaml not re-applied; see: $bin/belfry diff -f examples/jobs.yaml"
token_file="${BELFRY_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/belfry}/admin-token"
cat <<MSG

Belfry is running at $url   (API docs: $url/api/v1/docs)
Admin token: in $token_file (printed above on first start); the belfry CLI on this
machine reads it from there, elsewhere set BELFRY_TOKEN.
Try:  $bin/belfry jobs      $bin/belfry runs      $bin/belfry logs <RUN_ID>
Stop with Ctrl-C.
MSG
wait $server
