#!/bin/sh
# Full-size runs of every benchmark in tests/bench/, one after the other (they
# share two cores; running them together would measure the contention).
# Each prints "bench <name> ..." lines with its figures and ratios against a
# baseline measured in the same run; the output is also kept in
# <build>/bench-results.txt.
#
#   tests/bench/run_all.sh [BUILD_DIR]        (default: build)
#
# Configure the build with -Dbuildtype=release for meaningful figures.
# density_bench sizes: DENSITY_SIZES (default "10000 100000 1000000").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
out="$build/bench-results.txt"

ninja -C "$build" -j2 podless tests/bench/svid_issuance_bench tests/bench/hbone_throughput_bench \
  tests/bench/svid_loop_bench tests/bench/service_resolve_bench tests/bench/hbone_rr_bench tests/bench/hbone_idle_streams_bench >/dev/null

: >"$out"
run() {
  echo "== $*" | tee -a "$out"
  "$@" 2>&1 | tee -a "$out"
}
unset PODLESS_BENCH_SMOKE
run "$build/tests/bench/svid_issuance_bench"
run "$build/tests/bench/svid_loop_bench"
run "$build/tests/bench/service_resolve_bench"
run "$build/tests/bench/hbone_throughput_bench"
run "$build/tests/bench/hbone_rr_bench"
run "$build/tests/bench/hbone_idle_streams_bench"
PODLESS_BIN="$build/podless" PODLESS_SOURCE_ROOT="$root" \
  run /usr/bin/python3 "$here/density_bench.py" ${DENSITY_SIZES:-10000 100000 1000000}
PODLESS_BIN="$build/podless" PODLESS_SOURCE_ROOT="$root" \
  run /usr/bin/python3 "$here/proxy_workers_bench.py"
for kube in kube_apply_bench kube_watch_bench kube_list_bench; do
  PODLESS_BIN="$build/podless" PODLESS_SOURCE_ROOT="$root" run /usr/bin/python3 "$here/$kube.py"
done
echo "results in $out"
