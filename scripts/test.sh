#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration and doc tests, debug build), then the
# pyqldb and Node.js driver suites against the real `quill` binary, with the embedded storage and
# again with the ledgers in PostgreSQL. Any failure fails the script.
#
# First installs what the tests need (scripts/setup.sh: .venv/, tests/node/node_modules, missing
# Debian packages; quick when all is there; QUILL_SKIP_SETUP=1 skips it). Under CI=true it also
# checks that a fresh clone of the committed HEAD sets itself up (scripts/fresh_clone_check.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== scripts/setup.sh"
scripts/setup.sh

if [[ "${CI:-}" == true ]]; then
    echo "== scripts/fresh_clone_check.sh"
    scripts/fresh_clone_check.sh
fi

# With QUILL_SKIP_SETUP=1 and no .venv, the caller's Python must have the packages.
if [[ -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
else
    python="${PYTHON:-python3}"
fi

# Benchmarks print figures and are run on demand (`cargo bench`, `quill bench`); here they are
# only compiled, so they cannot rot.
echo "== cargo test --workspace (lib, bins, tests)"
# The serializability checker runs on its own below, so its counts are printed.
serializability=a_mixed_concurrent_workload_is_serializable
cargo test --workspace --lib --bins --tests -- --skip "$serializability"

echo "== serializability checker (10,000+ transactions; prints its counts)"
cargo test -p quill-ledger --test serializability "$serializability" -- --exact --nocapture

echo "== cargo build --workspace --benches (compile only)"
cargo build --workspace --benches

echo "== cargo test --workspace --doc"
cargo test --workspace --doc

echo "== cargo build -p quill"
cargo build -p quill

echo "== pytest tests/python"
export QUILL_BIN="$repo/target/debug/quill"
# conftest.py puts the QLDB service models of testdata/aws-models on AWS_DATA_PATH.
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero code is.
"$python" -m pytest tests/python -q -p no:cacheprovider

echo "== pytest tests/python again, every server's ledgers in PostgreSQL (--storage)"
# The suites of the PostgreSQL backend itself ran above; the rest runs against it too (tests of
# the embedded backend's files skip themselves).
QUILL_TEST_BACKEND=postgres "$python" -m pytest tests/python -q -p no:cacheprovider \
    --ignore tests/python/test_postgres_backend.py --ignore tests/python/test_postgres_cluster.py

echo "== node --test tests/node (the QLDB Node.js driver, unchanged)"
(cd "$repo/tests/node" && QUILL_BIN="$QUILL_BIN" node --test)

echo "== node --test tests/node again, ledgers in PostgreSQL (a throwaway cluster)"
(cd "$repo/tests/node" && QUILL_BIN="$QUILL_BIN" "$python" ../python/postgres_cluster.py node --test)
