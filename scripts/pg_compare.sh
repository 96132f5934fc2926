#!/usr/bin/env bash
# pg_compare.sh — the same single-document insert and update workload on PostgreSQL 15 and
# on Quill, in one run, on this machine's disk, at 32 concurrent clients.
#
#   Variant A: PostgreSQL audit table (JSONB table + trigger-maintained history table), the
#              recipe AWS recommended as QLDB's replacement.           scripts/pg/schema_audit.sql
#   Variant B: variant A plus a SHA-256 hash chain over the history rows (chain head locked
#              FOR UPDATE, so writers serialise as a real chain must). scripts/pg/schema_chain.sql
#   Quill:     `quill bench workload --writers 32 --kind insert|update` (in-process, durable).
#
# PostgreSQL runs with fsync=on and synchronous_commit=on (both durable at acknowledgement,
# like Quill). It is initialised in a temporary directory, listens on 127.0.0.1:$PG_PORT only,
# and is stopped and removed at exit.
#
# Environment (all optional):
#   RUN_SECONDS   seconds per measurement (default 10)
#   CLIENTS       concurrent clients / writers (default 32)
#   PRELOAD       documents loaded before the update runs (default 10000)
#   PG_PORT       PostgreSQL port (default 55432)
#   QUILL_BIN     quill binary (default target/release/quill, built if missing)
set -euo pipefail

RUN_SECONDS=${RUN_SECONDS:-10}
CLIENTS=${CLIENTS:-32}
PRELOAD=${PRELOAD:-10000}
PG_PORT=${PG_PORT:-55432}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQL_DIR="$ROOT/scripts/pg"
QUILL_BIN=${QUILL_BIN:-$ROOT/target/release/quill}

log() { echo "pg_compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- PostgreSQL 15 binaries --------------------------------------------------------------
find_pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/15/bin "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")"; do
        if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! PG_BIN=$(find_pg_bin); then
    log "PostgreSQL 15 not found; installing postgresql-15 from Debian packages"
    apt-get install -y postgresql-15 >&2 || die "apt-get install postgresql-15 failed"
    PG_BIN=$(find_pg_bin) || die "postgresql-15 installed but pg_ctl/initdb/postgres not found"
fi
PG_VERSION=$("$PG_BIN/postgres" --version)
[[ "$PG_VERSION" == *" 15."* ]] || log "warning: expected PostgreSQL 15, found: $PG_VERSION"
PGBENCH="$PG_BIN/pgbench"
[[ -x "$PGBENCH" ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found (package postgresql-contrib / postgresql-15)"
PSQL="$PG_BIN/psql"
[[ -x "$PSQL" ]] || PSQL=$(command -v psql) || die "psql not found"

# initdb refuses to run as root: run the server as an unprivileged user.
as_pg() { "$@"; }
if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        log "creating system user postgres"
        useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    fi
    as_pg() { runuser -u postgres -- "$@"; }
fi

# --- Quill binary -------------------------------------------------------------------------
if [[ ! -x "$QUILL_BIN" ]]; then
    log "building the release quill binary"
    (cd "$ROOT" && cargo build --release -p quill >&2)
fi
# A private copy: other builds in this tree may replace target/release/quill mid-run.
WORK=$(mktemp -d /tmp/pg-compare.XXXXXX)
cp "$QUILL_BIN" "$WORK/quill"
QUILL="$WORK/quill"

# --- PostgreSQL cluster in a temp dir, removed at exit ------------------------------------
PGDATA="$WORK/pgdata"
cleanup() {
    if [[ -f "$PGDATA/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

chmod 755 "$WORK"
mkdir -p "$PGDATA"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PGDATA"; fi
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGDATA -c fsync=on -c synchronous_commit=on -c max_connections=$((CLIENTS + 20))" \
    start >/dev/null
psql_run() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
log "$PG_VERSION on 127.0.0.1:$PG_PORT (fsync=$(psql_run -At -c 'SHOW fsync'), synchronous_commit=$(psql_run -At -c 'SHOW synchronous_commit'))"

for variant in audit chain; do
    psql_run -d postgres -c "CREATE DATABASE $variant" >/dev/null
    psql_run -d "$variant" -f "$SQL_DIR/schema_$variant.sql" >/dev/null
    # Update targets: ids md5(k)::uuid for k in 1..PRELOAD, inserted through the trigger.
    psql_run -d "$variant" -c "INSERT INTO vehicle SELECT md5(k::text)::uuid, jsonb_build_object('VIN', '1N4AL11D' || lpad(k::text, 9, '0'), 'Make', 'Quill', 'Year', 2000 + k % 25, 'Color', 'Red', 'Mileage', k * 7919 % 200000) FROM generate_series(1, $PRELOAD) AS k" >/dev/null
    psql_run -d "$variant" -c "VACUUM ANALYZE" >/dev/null
done

# pgbench's tps (excluding connection time) for one variant and workload.
pg_tps() {
    local database=$1 kind=$2 output
    output=$("$PGBENCH" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" \
        -D preload="$PRELOAD" -f "$SQL_DIR/$kind.sql" "$database" 2>&1) || { echo "$output" >&2; die "pgbench $database $kind failed"; }
    echo "$output" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'
}

# Quill's tx/s for one workload, from its machine-readable line.
quill_line() {
    "$QUILL" bench workload --writers "$CLIENTS" --seconds "$RUN_SECONDS" --kind "$1" --preload "$PRELOAD" --dir "$WORK"
}

declare -A TPS
FSYNC_US=""
for kind in insert update; do
    for variant in audit chain; do
        log "PostgreSQL $variant $kind: $CLIENTS clients, $RUN_SECONDS s"
        TPS[$variant.$kind]=$(pg_tps "$variant" "$kind")
        [[ -n "${TPS[$variant.$kind]}" ]] || die "no tps from pgbench for $variant $kind"
    done
    log "Quill $kind: $CLIENTS writers, $RUN_SECONDS s"
    line=$(quill_line "$kind")
    echo "quill: $line" >&2
    TPS[quill.$kind]=$(sed -n 's/.*tx_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    FSYNC_US+="${FSYNC_US:+, }$kind run $(sed -n 's/.*fsync_p50_us=\([0-9]*\).*/\1/p' <<<"$line") µs"
    [[ -n "${TPS[quill.$kind]}" ]] || die "no tx_per_sec from quill for $kind"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r + 0 >= g) ? "yes" : "NO" }'; }

echo
echo "pg_compare: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$PG_VERSION (fsync=on, synchronous_commit=on); Quill $("$QUILL" --version 2>/dev/null || echo '(version unknown)')"
echo "$CLIENTS clients, $RUN_SECONDS s per run, $PRELOAD preloaded documents; raw fsync p50 (measured by Quill before each of its runs): $FSYNC_US"
echo
echo "| workload | PG audit tx/s | PG hash-chained tx/s | Quill tx/s | Quill / audit (goal ≥ 2) | Quill / chained (goal ≥ 10) |"
echo "|---|---|---|---|---|---|"
for kind in insert update; do
    a=${TPS[audit.$kind]} c=${TPS[chain.$kind]} q=${TPS[quill.$kind]}
    ra=$(ratio "$q" "$a") rc=$(ratio "$q" "$c")
    printf "| %s | %.0f | %.0f | %.0f | %s× (%s) | %s× (%s) |\n" "$kind" "$a" "$c" "$q" "$ra" "$(verdict "$ra" 2)" "$rc" "$(verdict "$rc" 10)"
done
