#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each with libFuzzer for a while; fails on the first crash, leaving
# the input that caused it in .cache/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     default: 60 seconds each, every target
#
# `scripts/test.sh` runs it for a few seconds per target; run it by hand for longer (fuzz/README.md).
#
# It drives libFuzzer itself instead of going through `cargo fuzz`: cargo-fuzz only adds the coverage flags
# below and an explicit `--target` (so that build scripts stay uninstrumented), but installing it is a separate
# build of 72 s of CPU time on a clean checkout (measured; building the targets themselves takes about 90 s),
# and its default AddressSanitizer needs a nightly toolchain while adding nothing for crates that forbid
# `unsafe`. These flags work on the stable toolchain. The targets stay ordinary cargo-fuzz targets:
# `cd fuzz && cargo +nightly fuzz run NAME` works.
#
# New inputs that reach new code go to .cache/fuzz/corpus/<target>/ (git-ignored, kept between runs); the
# committed seeds in fuzz/corpus/<target>/ are only read.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
# What `cargo fuzz build` sets, less the sanitizer; debug assertions and overflow checks stay on so that an
# arithmetic overflow is a crash, as in the test builds.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
# fuzz/ is its own workspace, so it has its own lock file: started from the main one each time, so that each
# crate the two builds share is the version the tests use, and no change of dependencies needs a second lock;
# cargo adds only the fuzzing crates (libfuzzer-sys is pinned in fuzz/Cargo.toml).
cp Cargo.lock fuzz/Cargo.lock
cargo build --manifest-path fuzz/Cargo.toml --release --target "$triple" --target-dir fuzz/target --bins --quiet
unset RUSTFLAGS

status=0
for target in "${targets[@]}"; do
  corpus=".cache/fuzz/corpus/$target"
  artifacts=".cache/fuzz/artifacts/$target"
  log=".cache/fuzz/$target.log"
  mkdir -p "$corpus" "$artifacts" "fuzz/corpus/$target"
  if "fuzz/target/$triple/release/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "fuzz/corpus/$target" >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    echo "fuzz $target: ${runs:-?} runs in ${seconds}s, no crash"
  else
    echo "fuzz $target: CRASH (log $log; reproduce with fuzz/target/$triple/release/$target FILE)" >&2
    grep -v '^#' "$log" | tail -40 >&2
    status=1
  fi
done
exit "$status"
