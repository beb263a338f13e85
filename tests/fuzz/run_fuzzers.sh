#!/bin/sh
# Runs every libFuzzer target (tests/fuzz/*_fuzz.cc) for SECONDS each (default
# 30) on a copy of its seed corpus, with ASan+UBSan; exits non-zero if any
# target crashes, leaks, times out or fails an invariant. Builds
# build-fuzz-clang first (configuring it if needed).
#
#   tests/fuzz/run_fuzzers.sh            # 30 s per target (CI, .ci/run: 20 s)
#   tests/fuzz/run_fuzzers.sh 3600       # a longer local run
#   FUZZ_TARGETS="socks5_fuzz" tests/fuzz/run_fuzzers.sh 600
#   FUZZ_KEEP_CORPUS=1 ...               # keep the grown corpora (path printed)
#
# A crash leaves its input as <target>-crash-* in the work dir (printed);
# reproduce with: build-fuzz-clang/tests/fuzz/<target> <that file>
set -eu

seconds="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz-clang}"
jobs="${FUZZ_BUILD_JOBS:-2}"
all_targets="manifest_parser_fuzz object_codec_fuzz chain_verifier_fuzz http1_parser_fuzz
  socks5_fuzz hbone_session_fuzz grpc_request_fuzz"
targets="${FUZZ_TARGETS:-$all_targets}"

if [ ! -f "$build/build.ninja" ]; then
  (cd "$root" && CXX=clang++ meson setup "$build" -Dfuzz=true -Db_lundef=false)
fi
ninja -C "$build" -j "$jobs" fuzzers

# The longest input worth trying per target: what a real message of that
# kind needs, with room to spare (bigger inputs only slow the search).
max_len() {
  case "$1" in
    manifest_parser_fuzz) echo 16384 ;;
    object_codec_fuzz) echo 4096 ;;
    chain_verifier_fuzz) echo 8192 ;;
    http1_parser_fuzz) echo 8192 ;;
    socks5_fuzz) echo 1024 ;;
    hbone_session_fuzz) echo 16384 ;;
    grpc_request_fuzz) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

work="$(mktemp -d "${TMPDIR:-/tmp}/podless-fuzz.XXXXXX")"
[ -n "${FUZZ_KEEP_CORPUS:-}" ] || trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  cp "$here/corpus/$t"/* "$corpus/"
  echo "== $t: ${seconds}s, max_len $(max_len "$t")"
  if (cd "$work" && "$build/tests/fuzz/$t" -max_total_time="$seconds" \
      -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/$t-" "$corpus" >"$work/$t.log" 2>&1); then
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" "$work/$t.log" || true
    echo "   corpus: $(ls "$corpus" | wc -l) inputs"
  else
    echo "FAIL: $t (log: $work/$t.log)"
    grep -E "ERROR:|SUMMARY:|invariant|Test unit written" "$work/$t.log" | head -n 20 || true
    failed="$failed $t"
    trap - EXIT  # keep the artifacts
  fi
done

if [ -n "$failed" ]; then
  echo "fuzzers failed:$failed (artifacts in $work)"
  exit 1
fi
echo "all fuzzers passed ($seconds s each)"
[ -z "${FUZZ_KEEP_CORPUS:-}" ] || echo "grown corpora in $work"
