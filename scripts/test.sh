#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, the Rust tests (which start real servers on free
# ports), the conformance suite that drives the server with the real `twilio` Python library (and with
# Schemathesis and Twilio's OpenAPI spec from ../shared/reference, see docs/compatibility.md), the suite that
# drives it with the official `@twilio/conversations` JS SDK (2.6.0 and 3.0.1) under Node, a short run of every
# fuzz target (scripts/fuzz.sh; run it by hand for longer), and the web console's browser tests (Debian's
# Chromium, installed with apt-get when missing, driven by playwright-core).
# It sets up what it needs itself (a Python virtualenv in .venv with the pinned requirements; the npm packages
# pinned by tests/js-sdk/package-lock.json, cached in .cache/npm).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== fuzz targets, briefly"
scripts/fuzz.sh --seconds 10

echo "== conformance suite (twilio Python library)"
cargo build -p palaver --locked
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/conformance/requirements.txt
PALAVER_BIN="$PWD/target/debug/palaver" .venv/bin/python -m pytest tests/conformance -q -p no:cacheprovider
if [[ -n "${PALAVER_TEST_DATABASE_URL:-}" && -n "${PALAVER_TEST_NATS_URL:-}" ]]; then
  echo "== conformance suite against a two-node PostgreSQL + NATS cluster"
  PALAVER_CONFORMANCE_CLUSTER="$PALAVER_TEST_DATABASE_URL" PALAVER_BIN="$PWD/target/debug/palaver" \
    .venv/bin/python -m pytest tests/conformance -q -p no:cacheprovider
elif [[ -n "${CI:-}" ]]; then
  echo "PALAVER_TEST_DATABASE_URL and PALAVER_TEST_NATS_URL must be set in CI" >&2
  exit 1
fi

echo "== JS SDK suite (@twilio/conversations 2.6.0 and 3.0.1)"
PALAVER_BIN="$PWD/target/debug/palaver" tests/js-sdk/run.sh

echo "== web console in Chromium (playwright-core)"
PALAVER_BIN="$PWD/target/debug/palaver" tests/console/run.sh
