#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration and doc tests, debug build), then the
# pyqldb integration suite against the real `quill` binary. Any failure fails the script.
#
# Needs a Python with the packages of tests/python/requirements.txt: `.venv/` at the repository
# root is used when it exists (`.ci/run` creates it), else `$PYTHON` or `python3`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
else
    python="${PYTHON:-python3}"
fi

# Benchmarks print figures and are run on demand (`cargo bench`, `quill bench`); here they are
# only compiled, so they cannot rot.
echo "== cargo test --workspace (lib, bins, tests)"
cargo test --workspace --lib --bins --tests

echo "== cargo build --workspace --benches (compile only)"
cargo build --workspace --benches

echo "== cargo test --workspace --doc"
cargo test --workspace --doc

echo "== cargo build -p quill"
cargo build -p quill

echo "== pytest tests/python"
export QUILL_BIN="$repo/target/debug/quill"
export AWS_DATA_PATH="${AWS_DATA_PATH:-$(cd "$repo/.." && pwd)/shared/aws-models}"
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero code is.
"$python" -m pytest tests/python -q -p no:cacheprovider

echo "== node --test tests/node (the QLDB Node.js driver, unchanged)"
if [[ ! -d "$repo/tests/node/node_modules" ]]; then
    (cd "$repo/tests/node" && npm ci --no-audit --no-fund)
fi
(cd "$repo/tests/node" && QUILL_BIN="$QUILL_BIN" node --test)
