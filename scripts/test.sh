#!/usr/bin/env bash
# The whole test suite: installs missing packages, builds (normal + ASan/UBSan), runs ctest.
#   unit, integration, crash (kill -9 and simulated power loss), sql (SQLite + a throwaway
#   PostgreSQL) in the normal build; the Node client and the web example (node --test); unit +
#   integration again under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
(cd build && ctest --output-on-failure --timeout 900 -j2)
# The Node client against the stockd just built (its lockfile pins every package).
(cd client/node && npm ci --no-audit --no-fund && npm run build &&
  STOCKD_BIN="$PWD/../../build/bin/stockd" npm test)
# The flash-sale web example end to end (its own PostgreSQL, stockd, the sidecar, Express).
(cd examples/flash-sale-web && npm ci --no-audit --no-fund && npm test)
scripts/build.sh build-asan -DSTOCKD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure --timeout 900 -j2 -L 'unit|integration')
echo "stockd: all tests passed"
