#!/usr/bin/env bash
# Install what the tests need and run the default (fast) suite.
# Usage: bash tools/run_tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install --quiet -e ".[test]"
# Real data for the data-loader tests (optional: those tests skip without it).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: dataset-fashion-mnist not installed; Fashion-MNIST tests will skip"
fi
python3 -m ruff check tf_gpp tests tools
status=0
python3 -m pytest -q "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "ERROR: pytest collected no tests" >&2
fi
exit "$status"
