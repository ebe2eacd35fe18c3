#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use is reachable; start the local cluster if not.
# BELFRY_TEST_DATABASE_URL points the tests at another server instead.
set -euo pipefail
if [[ -n "${BELFRY_TEST_DATABASE_URL:-}" ]]; then exit 0; fi
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ready && exit 0
if command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  echo "starting PostgreSQL ${version:-15} (main)..." >&2
  pg_ctlcluster --skip-systemctl-redirect "${version:-15}" main start || true
fi
for _ in $(seq 1 30); do ready && exit 0; sleep 0.5; done
echo "PostgreSQL is not reachable on 127.0.0.1:5432: install and start it" \
     "(Debian: apt-get install postgresql; pg_ctlcluster --skip-systemctl-redirect 15 main start)" \
     "or set BELFRY_TEST_DATABASE_URL=postgresql://user@host:port/db" >&2
exit 1
