#!/usr/bin/env bash
# Runs the web console's browser tests: playwright-core driving Debian's Chromium (headless) against the
# palaver binary, with the REST API and `palaver chat` (the Rust SDK) as the other participants.
#
#   tests/console/run.sh                        # every test file
#   PALAVER_BIN=target/release/palaver tests/console/run.sh
#
# Installs what it needs: Chromium with apt-get when /usr/bin/chromium is missing, and the pinned npm
# packages (cached in .cache/npm). Screenshots go to tests/console/artifacts/ (git-ignored).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PALAVER_BIN="${PALAVER_BIN:-$repo/target/debug/palaver}"
export PALAVER_CHROMIUM="${PALAVER_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$PALAVER_BIN" ]; then
  echo "console tests: no server binary at $PALAVER_BIN (run: cargo build -p palaver, or set PALAVER_BIN)" >&2
  exit 1
fi
if [ ! -x "$PALAVER_CHROMIUM" ]; then
  echo "console tests: installing Debian's chromium"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

cd "$here"
stamp=node_modules/.palaver-install-stamp
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "console tests: installing packages (npm ci)"
  npm ci --cache "$repo/.cache/npm" --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi
rm -rf artifacts
mkdir -p artifacts

if [ "$#" -eq 0 ]; then
  set -- test/
fi
exec node --test --test-concurrency=1 --test-timeout=180000 "$@"
