#!/usr/bin/env bash
# Clones this repository's committed HEAD into an empty temporary directory (nothing beside it,
# so no ../shared), runs the test command's setup step (scripts/setup.sh) there, and checks that
# the clone has what the tests read: the Python suite's packages, the QLDB service models, the
# golden vectors. Uncommitted changes are not in the clone: that is the point, a missing file or
# install step cannot hide behind a developer's machine. scripts/test.sh runs it when CI=true.
# It does not build: the clone's setup is all it adds to a CI run (about a minute, from caches).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
head=$(git -C "$repo" rev-parse HEAD)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
clone="$scratch/quill"

fail() {
    echo "fresh clone check: $*" >&2
    exit 1
}

echo "fresh clone check: $head in $clone"
# init.defaultBranch only quiets the hint git prints when the source HEAD is detached.
git -c init.defaultBranch=main clone --quiet --no-checkout "$repo" "$clone"
git -C "$clone" checkout --quiet --detach "$head"

# The caller's environment must not lend the clone anything: no skipped setup, no outside models.
env -u QUILL_SKIP_SETUP -u AWS_DATA_PATH "$clone/scripts/setup.sh"

cd "$clone"
[[ -s testdata/vectors/qldb-cli-examples.ion ]] || fail "testdata/vectors/qldb-cli-examples.ion is missing"
for file in LICENSE.txt NOTICE qldb-session/2019-07-11/service-2.json qldb/2019-01-02/service-2.json; do
    [[ -s testdata/aws-models/$file ]] || fail "testdata/aws-models/$file is missing"
done
.venv/bin/python -c 'import pyqldb, pytest' || fail "the venv lacks pyqldb or pytest"
# HOME too points into the scratch directory: botocore also reads models from ~/.aws/models.
mkdir "$scratch/home"
HOME="$scratch/home" AWS_DATA_PATH="$clone/testdata/aws-models" .venv/bin/python -c '
import boto3
for service in ("qldb", "qldb-session"):
    boto3.client(service, region_name="us-east-1")
' || fail "boto3 cannot load the qldb models from testdata/aws-models"
[[ -f tests/node/node_modules/amazon-qldb-driver-nodejs/package.json ]] ||
    fail "npm ci did not install amazon-qldb-driver-nodejs"
echo "fresh clone check: passed"
