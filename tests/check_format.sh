#!/bin/sh
# Fails when a C++ file of the tree is not formatted as .clang-format says
# (clang-format --dry-run -Werror names each file and line). Generated code
# (runtime/etcd/etcdpb) is left out. Exit 77 (skip) where clang-format is not
# installed; .ci/install-deps installs it, so CI always checks.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v clang-format >/dev/null 2>&1; then
  echo "SKIP: clang-format is not installed (.ci/install-deps installs it)"
  exit 77
fi
cd "$root"
find api runtime proxy workloads tests -path runtime/etcd/etcdpb -prune -o \
  \( -name '*.cc' -o -name '*.h' \) -print | sort | xargs clang-format --dry-run -Werror
echo "every C++ file is formatted"
