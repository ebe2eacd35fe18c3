#!/usr/bin/env bash
# Install the Debian packages the test suite drives, when they are missing:
#   faketime  - libfaketime, to run a server or a worker with a wrong clock
#   chromium  - the browser the web UI tests drive (Playwright, executable_path)
set -euo pipefail
missing=()
command -v faketime >/dev/null || missing+=(faketime)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "missing packages: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing ${missing[*]}..." >&2
$sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
  || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
