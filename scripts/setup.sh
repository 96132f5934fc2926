#!/usr/bin/env bash
# Installs what scripts/test.sh needs, skipping what is already there: a second run takes about
# a second. `scripts/setup.sh` sets up every component; `scripts/setup.sh python node` only those.
#
#   rust    checks for cargo (the toolchain comes from rustup, not from here)
#   python  .venv/ with tests/python/requirements.txt, reinstalled when that file changes
#   node    tests/node/node_modules with `npm ci`, again when package-lock.json changes
#   nats    Debian's nats-server, for the NATS JetStream stream tests and `quill bench stream`
#   postgres  Debian's PostgreSQL server binaries and psql, for the tests that start throwaway
#           clusters (crates/quill-pgtest, tests/python/pg.py) and scripts/pg_compare.sh
#
# Missing Debian packages (python3-venv, nodejs, npm, ...) are installed with apt-get, as root or
# through passwordless sudo; elsewhere the script stops and names them. QUILL_SKIP_SETUP=1 skips
# every step (scripts/test.sh then uses what is there).
#
# A new component is one function `setup_NAME` plus its name in `all_components`: `ensure` the
# Debian packages it needs (as `setup_postgres` does), then its own install step behind a
# `stamp_matches`/`write_stamp` pair (as `setup_python` does).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

all_components=(rust python node nats postgres)

die() {
    echo "setup: $*" >&2
    exit 1
}

apt_updated=false

# apt_install PACKAGE...: installs Debian packages, running `apt-get update` once per run.
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "needs the Debian packages $*: run as root, or install them first (apt-get install $*)"
        fi
    fi
    command -v apt-get >/dev/null || die "needs $* and there is no apt-get here: install them first"
    if ! $apt_updated; then
        "${sudo[@]}" apt-get update -qq
        apt_updated=true
    fi
    echo "setup: apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# ensure CHECK PACKAGE...: when the shell command CHECK fails, installs the Debian PACKAGEs and
# checks again.
ensure() {
    local check=$1
    shift
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    apt_install "$@"
    eval "$check" >/dev/null 2>&1 || die "installed $* but \`$check\` still fails"
}

# Stamps record the hash of the files an install step was made from, inside what it made (so
# deleting that deletes the stamp too).
hash_of() {
    cat "$@" | sha256sum | cut -d' ' -f1
}

stamp_matches() {
    local stamp=$1
    shift
    [[ -f $stamp && "$(<"$stamp")" == "$(hash_of "$@")" ]]
}

write_stamp() {
    local stamp=$1
    shift
    hash_of "$@" >"$stamp"
}

setup_rust() {
    command -v cargo >/dev/null ||
        die "needs the Rust toolchain (cargo): install it with rustup, https://rustup.rs"
}

setup_python() {
    ensure "command -v python3" python3
    ensure "python3 -c 'import ensurepip, venv'" python3-venv
    local requirements=tests/python/requirements.txt stamp=.venv/.setup-stamp
    if .venv/bin/python -c '' 2>/dev/null && stamp_matches "$stamp" "$requirements"; then
        echo "setup: .venv is up to date"
        return
    fi
    echo "setup: .venv from $requirements"
    # --clear: a venv whose interpreter went away (or a half-made one) is rebuilt from scratch.
    if .venv/bin/python -c '' 2>/dev/null; then
        python3 -m venv .venv
    else
        python3 -m venv --clear .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    write_stamp "$stamp" "$requirements"
}

setup_node() {
    ensure "command -v node" nodejs
    ensure "command -v npm" npm
    local lock=tests/node/package-lock.json stamp=tests/node/node_modules/.setup-stamp
    if stamp_matches "$stamp" "$lock"; then
        echo "setup: tests/node/node_modules is up to date"
        return
    fi
    echo "setup: npm ci in tests/node"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
    write_stamp "$stamp" "$lock"
}

setup_nats() {
    # Debian puts it in /usr/sbin, which is not on every user's PATH.
    ensure "command -v nats-server || test -x /usr/sbin/nats-server" nats-server
}

setup_postgres() {
    # The package's server binaries live outside PATH, one directory per major version. Its
    # `postgres` system user runs them when the tests run as root (PostgreSQL refuses root).
    ensure "compgen -G '/usr/lib/postgresql/*/bin/pg_basebackup' && id postgres && command -v psql" postgresql
}

if [[ "${QUILL_SKIP_SETUP:-}" == 1 ]]; then
    echo "setup: skipped (QUILL_SKIP_SETUP=1)"
    exit 0
fi

components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
    components=("${all_components[@]}")
fi
for component in "${components[@]}"; do
    [[ " ${all_components[*]} " == *" $component "* ]] ||
        die "unknown component '$component' (known: ${all_components[*]})"
    "setup_$component"
done
