#!/usr/bin/env bash
# ThreadSanitizer run for CI: the proxy's worker threads (--workers, 2 on a
# 2-core runner) under load, through the real binary and the unit tests of
# the pieces the threads share. Fails on any failing test and on any TSan
# report, also one from a process the tests SIGKILL or that exits 0.
#
#   meson setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized
#   tests/tsan_run.sh build-tsan            # builds what it needs (-j2), then runs
#
# Reports go to files (log_path), not to stderr: the e2e harness sends the
# agent's stderr to a log in a temp state dir that it deletes, and a report
# must not depend on how a process ends. exitcode=66 is kept as well, so a
# test that checks the agent's exit status fails on its own too.
#
# tests/tsan.supp, if present, holds suppressions for proven false positives
# (uninstrumented libuv/BoringSSL/nghttp2), each with the reason it is safe.
# About 1 minute of run time on 2 cores, plus the build (2.5 minutes).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR   (a meson build dir configured with -Db_sanitize=thread)" >&2
  exit 2
fi
BUILD="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

ninja -C "$BUILD" -j 2 podless tests/proxy/proxy_tests

# A build without TSan would pass every check below without checking anything.
for exe in podless tests/proxy/proxy_tests; do
  if ! readelf -d "$BUILD/$exe" | grep -q 'libtsan'; then
    echo "tsan_run: $BUILD/$exe is not built with -Db_sanitize=thread" >&2
    exit 2
  fi
done

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/podless-tsan.XXXXXX")"
TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 history_size=4"
TSAN_OPTIONS+=" log_path=$LOGS/tsan"
if [ -f "$ROOT/tests/tsan.supp" ]; then
  TSAN_OPTIONS+=" suppressions=$ROOT/tests/tsan.supp"
fi
export TSAN_OPTIONS
export PODLESS_BIN="$BUILD/podless" PODLESS_SOURCE_ROOT="$ROOT" PODLESS_BUILD_ROOT="$BUILD"

failed=()
run() {
  local name="$1"
  shift
  local start=$SECONDS
  if timeout 300 "$@" >"$LOGS/$name.out" 2>&1; then
    echo "tsan_run: $name ok ($((SECONDS - start)) s)"
  else
    echo "tsan_run: $name FAILED ($((SECONDS - start)) s):"
    tail -n 40 "$LOGS/$name.out"
    failed+=("$name")
  fi
}

# Unit tests: the worker-shared ConnectionLimits, hammered by 8 threads.
# (The StateLock's own tests run in the other stages; every e2e test below
# takes it on every loop turn of every thread.)
run proxy_tests "$BUILD/tests/proxy/proxy_tests"

# End-to-end, through the agent with its default worker threads: the worker
# test itself, HBONE (certificates asked of the main loop), identities and
# policy, plaintext and outbound traffic, exec apps, slow peers (stall
# timers), start/stop, and the soak (20 s of traffic on both workers).
cd "$BUILD"
for t in proxy_workers hbone_full_path proxy_traffic identity_isolation exec_http_server \
  slow_peers agent_lifecycle soak apply_under_traffic; do
  run "$t" /usr/bin/python3 "$ROOT/tests/e2e/$t.py"
done

reports=("$LOGS"/tsan.*)
if [ -e "${reports[0]}" ]; then
  echo "tsan_run: ${#reports[@]} process(es) wrote ThreadSanitizer reports:"
  for report in "${reports[@]}"; do
    echo "===== $report"
    cat "$report"
  done
  grep -h '^WARNING: ThreadSanitizer:\|^SUMMARY: ThreadSanitizer:' "${reports[@]}" | sort | uniq -c
  failed+=("tsan-reports")
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "tsan_run: FAILED: ${failed[*]} (outputs and reports kept in $LOGS)"
  exit 1
fi
rm -rf "$LOGS"
echo "tsan_run: ok, no ThreadSanitizer report"
