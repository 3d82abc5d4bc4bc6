#!/usr/bin/env bash
# Runs the JS SDK suite: the official @twilio/conversations SDK (2.6.0 and 3.0.1), unmodified, against the
# palaver binary.
#
#   tests/js-sdk/run.sh                      # every test file, both SDK versions
#   tests/js-sdk/run.sh test/typing.test.mjs # some files
#   PALAVER_SDK_VERSION=3.0.1 tests/js-sdk/run.sh
#
# Environment: PALAVER_BIN (default <repo>/target/debug/palaver; build it first with `cargo build -p palaver`),
# PALAVER_SDK_VERSION (2.6.0, 3.0.1 or both comma-separated; default both), PALAVER_SDK_LOG (the SDK's log
# level, default silent), PALAVER_TEST_SERVER_LOG (the server's PALAVER_LOG; its stderr is then shown).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PALAVER_BIN="${PALAVER_BIN:-$repo/target/debug/palaver}"

if ! command -v node >/dev/null 2>&1; then
  echo "js-sdk: node is not installed (Node 20 or later is needed)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "js-sdk: Node $(node --version) is too old (20 or later is needed)" >&2
  exit 1
fi
if [ ! -x "$PALAVER_BIN" ]; then
  echo "js-sdk: no server binary at $PALAVER_BIN (run: cargo build -p palaver, or set PALAVER_BIN)" >&2
  exit 1
fi

cd "$here"

# Install the pinned packages only when node_modules is missing or package-lock.json changed since the last
# install (the stamp holds the lock file's hash).
stamp=node_modules/.palaver-install-stamp
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "js-sdk: installing packages (npm ci)"
  npm ci --cache "$repo/.cache/npm" --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

if [ "$#" -eq 0 ]; then
  set -- test/
fi
# --test-force-exit: the SDK leaves timers behind after shutdown() (a reply it still waits for, up to 30 s;
# subscription checks), which would keep each test file's process alive after its last test.
exec node --test --test-concurrency=1 --test-timeout=120000 --test-force-exit "$@"
