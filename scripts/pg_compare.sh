#!/usr/bin/env bash
# pg_compare.sh — the same single-document insert and update workload on PostgreSQL 15 and
# on Quill, in one run, on this machine's disk.
#
#   PG plain:  a JSONB table, no history (the floor).                  scripts/pg/schema_plain.sql
#   PG audit:  JSONB table + trigger-maintained history table, the recipe AWS recommended as
#              QLDB's replacement.                                     scripts/pg/schema_audit.sql
#   PG chain:  the audit table plus a SHA-256 hash chain over the history rows (chain head
#              locked FOR UPDATE, so writers serialise as a real chain must).
#                                                                      scripts/pg/schema_chain.sql
#   Quill wire:       `quill serve` (SigV4 on: --auth credentials) driven over TCP by
#                     `quill bench wire` in a separate process, signing every request as a driver
#                     does: StartTransaction, one statement, CommitTransaction per transaction;
#                     with its embedded storage, then with its ledgers in PostgreSQL (--storage,
#                     a database on the same cluster) behind one and behind two servers.
#   Quill in-process: `quill bench workload` (the engine alone, no protocol).
#
# With --dmv, instead: the QLDB vehicle-registration sample's mixed workload (indexed lookups,
# ownership transfers, secondary owners, history reads; see crates/quill/src/bench/dmv.rs) on
# the audit-table recipe (scripts/pg/schema_dmv.sql, one pgbench script per transaction kind,
# scripts/pg/dmv_*.sql, weighted as the bench's mix) and through Quill's wire protocol
# (`quill serve --auth credentials` driven by `quill bench dmv`, SigV4 on), PRELOAD each of
# persons, vehicles, registrations and licences: tx/s and p50/p99 per kind and in total.
#
# PostgreSQL is driven by pgbench over TCP (127.0.0.1), one connection per client, each
# transaction one autocommitted statement. Both run with fsync on and acknowledge only durable
# commits. The wire table (like for like: both over the loopback network) comes first, at
# every client count of CLIENTS_LIST; the in-process table, at CLIENTS writers, second.
#
# Usage: scripts/pg_compare.sh [--wire | --in-process | --dmv]   (default: wire and in-process)
#
# PostgreSQL runs with fsync=on and synchronous_commit=on. It is initialised in a temporary
# directory, listens on 127.0.0.1:$PG_PORT only, and is stopped and removed at exit.
#
# Environment (all optional):
#   RUN_SECONDS   seconds per measurement (default 10)
#   CLIENTS_LIST  client counts of the wire table (default "1 8 32 64")
#   CLIENTS       writers of the in-process table (default 32)
#   PRELOAD       documents loaded before the update runs (default 10000)
#   PG_PORT       PostgreSQL port (default 55432)
#   QUILL_BIN     quill binary (default target/release/quill, built if missing)
set -euo pipefail

MODE=both
case "${1:-}" in
    "") ;;
    --wire) MODE=wire ;;
    --in-process) MODE=in-process ;;
    --dmv) MODE=dmv ;;
    *) echo "usage: $0 [--wire | --in-process | --dmv]" >&2; exit 2 ;;
esac
RUN_SECONDS=${RUN_SECONDS:-10}
CLIENTS=${CLIENTS:-32}
CLIENTS_LIST=${CLIENTS_LIST:-1 8 32 64}
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
QUILL_PIDS=()
stop_quill() {
    local pid
    for pid in "${QUILL_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${QUILL_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    QUILL_PIDS=()
}

cleanup() {
    stop_quill
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
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGDATA -c fsync=on -c synchronous_commit=on -c max_connections=$(( $(printf '%s\n' $CLIENTS_LIST $CLIENTS | sort -n | tail -1) + 20 ))" \
    start >/dev/null
psql_run() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
log "$PG_VERSION on 127.0.0.1:$PG_PORT (fsync=$(psql_run -At -c 'SHOW fsync'), synchronous_commit=$(psql_run -At -c 'SHOW synchronous_commit'))"

VARIANTS=(plain audit chain)
if [[ $MODE == dmv ]]; then VARIANTS=(); fi
for variant in "${VARIANTS[@]}"; do
    psql_run -d postgres -c "CREATE DATABASE $variant" >/dev/null
    psql_run -d "$variant" -f "$SQL_DIR/schema_$variant.sql" >/dev/null
    # Update targets: ids md5(k)::uuid for k in 1..PRELOAD (through the trigger where there is one).
    psql_run -d "$variant" -c "INSERT INTO vehicle SELECT md5(k::text)::uuid, jsonb_build_object('VIN', '1N4AL11D' || lpad(k::text, 9, '0'), 'Make', 'Quill', 'Year', 2000 + k % 25, 'Color', 'Red', 'Mileage', k * 7919 % 200000) FROM generate_series(1, $PRELOAD) AS k" >/dev/null
    psql_run -d "$variant" -c "VACUUM ANALYZE" >/dev/null
done

# "tps p50_us p99_us" of one pgbench run: tps from pgbench, percentiles from its
# per-transaction log (-l: the third column is the latency in µs).
pg_run() {
    local database=$1 kind=$2 clients=$3 output logs threads
    threads=$(( clients < 2 ? clients : 2 ))
    logs="$WORK/pglog.$database.$kind.$clients"
    output=$("$PGBENCH" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$clients" -j "$threads" -T "$RUN_SECONDS" \
        -l --log-prefix="$logs" -D preload="$PRELOAD" -f "$SQL_DIR/$kind.sql" "$database" 2>&1) || { echo "$output" >&2; die "pgbench $database $kind failed"; }
    local tps
    tps=$(echo "$output" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')
    [[ -n "$tps" ]] || { echo "$output" >&2; die "no tps from pgbench for $database $kind"; }
    cat "$logs".* | awk '{ print $3 }' | sort -n | awk -v tps="$tps" '
        { v[NR] = $1 }
        END { if (NR == 0) { print tps, 0, 0; exit }
              i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
              i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
              print tps, v[i50], v[i99] }'
    rm -f "$logs".*
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r + 0 >= g) ? "yes" : "NO" }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

header() {
    echo
    echo "pg_compare: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "$PG_VERSION (fsync=on, synchronous_commit=on); Quill $("$QUILL" --version 2>/dev/null || echo '(version unknown)')"
}

declare -A TPS P50 P99

# `start_quill LABEL SERVERS [SERVE ARGS]`: starts SERVERS `quill serve` processes (their own
# processes, SigV4 with a generated key pair in QUILL_SECRET, fresh data directories) and sets
# QUILL_ENDPOINTS to their comma-separated URLs.
start_quill() {
    local label=$1 servers=$2 port n
    shift 2
    QUILL_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    QUILL_ENDPOINTS=""
    echo "pgcompare $QUILL_SECRET" >"$WORK/credentials"
    for n in $(seq "$servers"); do
        mkdir -p "$WORK/quill-$label-$n"
        "$QUILL" serve --data-dir "$WORK/quill-$label-$n" --listen 127.0.0.1:0 --auth credentials \
            --credentials "$WORK/credentials" --log-level warn "$@" \
            >"$WORK/serve.$label.$n.out" 2>"$WORK/serve.$label.$n.log" &
        QUILL_PIDS+=($!)
        port=""
        for _ in $(seq 300); do
            port=$(sed -n 's|^quill: listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/serve.$label.$n.out")
            [[ -n "$port" ]] && break
            kill -0 "${QUILL_PIDS[-1]}" 2>/dev/null || { cat "$WORK/serve.$label.$n.log" >&2; die "quill serve ($label) exited"; }
            sleep 0.1
        done
        [[ -n "$port" ]] || die "quill serve ($label) did not report its port"
        QUILL_ENDPOINTS+="${QUILL_ENDPOINTS:+,}http://127.0.0.1:$port"
    done
}

# `quill_wire LABEL SERVERS [SERVE ARGS]`: starts the servers (start_quill), drives them with
# `quill bench wire` (sessions spread over the servers) for inserts and updates, and records
# TPS/P50/P99[LABEL.kind.clients].
quill_wire() {
    local label=$1 servers=$2 kind line clients sessions
    start_quill "$@"
    sessions=$(echo $CLIENTS_LIST | tr ' ' ',')
    for kind in insert update; do
        log "Quill wire ($label, $servers server(s)) $kind: sessions $sessions, $RUN_SECONDS s each (SigV4 on)"
        AWS_ACCESS_KEY_ID=pgcompare AWS_SECRET_ACCESS_KEY=$QUILL_SECRET \
            "$QUILL" bench wire --endpoint "$QUILL_ENDPOINTS" --kind "$kind" --sessions "$sessions" \
            --seconds "$RUN_SECONDS" --preload "$PRELOAD" --ledger "wire$kind" --dir "$WORK" >"$WORK/wire.$label.$kind" \
            || { cat "$WORK/wire.$label.$kind" "$WORK"/serve.$label.*.log >&2; die "quill bench wire $label $kind failed"; }
        grep -v '^wire ' "$WORK/wire.$label.$kind" >&2
        while read -r line; do
            clients=$(sed -n 's/.* sessions=\([0-9]*\).*/\1/p' <<<"$line")
            TPS[$label.$kind.$clients]=$(sed -n 's/.* tx_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
            P50[$label.$kind.$clients]=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
            P99[$label.$kind.$clients]=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
        done < <(grep '^wire ' "$WORK/wire.$label.$kind")
    done
    stop_quill
}

# --- Wire: pgbench over TCP vs quill bench wire against quill serve (SigV4) ---------------
wire_compare() {
    local kind clients variant line
    for kind in insert update; do
        for clients in $CLIENTS_LIST; do
            for variant in "${VARIANTS[@]}"; do
                log "PostgreSQL $variant $kind: $clients clients, $RUN_SECONDS s"
                read -r "TPS[$variant.$kind.$clients]" "P50[$variant.$kind.$clients]" "P99[$variant.$kind.$clients]" \
                    < <(pg_run "$variant" "$kind" "$clients")
            done
        done
    done

    # Quill with its embedded storage, then with its ledgers in PostgreSQL (this same cluster)
    # behind one and behind two `quill serve` processes.
    quill_wire files 1
    psql_run -d postgres -c "CREATE DATABASE quill_one" >/dev/null
    quill_wire pg1 1 --storage "postgresql://postgres@127.0.0.1:$PG_PORT/quill_one"
    psql_run -d postgres -c "CREATE DATABASE quill_two" >/dev/null
    quill_wire pg2 2 --storage "postgresql://postgres@127.0.0.1:$PG_PORT/quill_two"
    # What a block costs PostgreSQL (heap + TOAST + primary key), and the audit recipe's row.
    STORAGE_LINE=$(psql_run -d quill_one -At -F ' ' -c "SELECT count(*), pg_total_relation_size('quill_blocks'), pg_indexes_size('quill_blocks') FROM quill_blocks")
    AUDIT_LINE=$(psql_run -d audit -At -F ' ' -c "SELECT (SELECT count(*) FROM vehicle_history), pg_total_relation_size('vehicle_history') + pg_total_relation_size('vehicle')")

    header
    echo "Through the wire: PostgreSQL via pgbench over TCP; Quill via its QLDB protocol (quill serve --auth credentials,"
    echo "SigV4-signed by quill bench wire in a separate process; 3 requests per transaction). $RUN_SECONDS s per run,"
    echo "$PRELOAD preloaded documents. tx/s and latency p50 / p99 in ms. Goals at 32 clients: Quill ≥ 1.0× audit, ≥ 5× chain;"
    echo "at 1 client: Quill p50 ≤ 1.5× audit p50."
    echo
    echo "| workload | clients | PG plain | PG audit | PG chain | Quill wire (embedded storage) | Quill / audit | Quill / chain | p50 Quill / audit |"
    echo "|---|---|---|---|---|---|---|---|---|"
    local k q a c p ra rc rp
    for kind in insert update; do
        for clients in $CLIENTS_LIST; do
            k=$kind.$clients
            q=${TPS[files.$k]:-0} a=${TPS[audit.$k]} c=${TPS[chain.$k]} p=${TPS[plain.$k]}
            ra=$(ratio "$q" "$a") rc=$(ratio "$q" "$c") rp=$(ratio "${P50[files.$k]:-0}" "${P50[audit.$k]}")
            if [[ $clients == 32 ]]; then
                ra="$ra× ($(verdict "$ra" 1) ≥ 1)" rc="$rc× ($(verdict "$rc" 5) ≥ 5)" rp="$rp×"
            elif [[ $clients == 1 ]]; then
                ra="$ra×" rc="$rc×" rp="$rp× ($(awk -v r="$rp" 'BEGIN { print (r + 0 <= 1.5) ? "yes" : "NO" }') ≤ 1.5)"
            else
                ra="$ra×" rc="$rc×" rp="$rp×"
            fi
            printf "| %s | %s | %.0f (%s / %s) | %.0f (%s / %s) | %.0f (%s / %s) | %.0f (%s / %s) | %s | %s | %s |\n" \
                "$kind" "$clients" \
                "$p" "$(ms "${P50[plain.$k]}")" "$(ms "${P99[plain.$k]}")" \
                "$a" "$(ms "${P50[audit.$k]}")" "$(ms "${P99[audit.$k]}")" \
                "$c" "$(ms "${P50[chain.$k]}")" "$(ms "${P99[chain.$k]}")" \
                "$q" "$(ms "${P50[files.$k]:-0}")" "$(ms "${P99[files.$k]:-0}")" \
                "$ra" "$rc" "$rp"
        done
    done

    local blocks bytes index_bytes history audit_bytes
    read -r blocks bytes index_bytes <<<"$STORAGE_LINE"
    read -r history audit_bytes <<<"$AUDIT_LINE"
    echo
    echo "Storage in PostgreSQL after the runs: Quill $blocks blocks, $bytes bytes ($(( bytes / (blocks > 0 ? blocks : 1) )) per block,"
    echo "primary key $(( index_bytes / (blocks > 0 ? blocks : 1) )) per block); audit recipe $history history rows, $audit_bytes bytes with the current table"
    echo "($(( audit_bytes / (history > 0 ? history : 1) )) per history row)."
    echo
    echo "Quill with its ledgers in PostgreSQL (quill serve --storage, a database on the same cluster as the recipes),"
    echo "behind one and behind two quill serve processes sharing it (sessions spread over both). Same run, same"
    echo "load generator; tx/s and latency p50 / p99 in ms. Goals at 32 clients: ≥ 1.0× audit, ≥ 5× chain."
    echo
    echo "| workload | clients | PG audit | PG chain | Quill on PG, 1 server | Quill on PG, 2 servers | 1 server / audit | 2 servers / audit | 1 server / chain | 2 servers / chain |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    local one two
    for kind in insert update; do
        for clients in $CLIENTS_LIST; do
            k=$kind.$clients
            a=${TPS[audit.$k]} c=${TPS[chain.$k]} one=${TPS[pg1.$k]:-0} two=${TPS[pg2.$k]:-0}
            local r1a r2a r1c r2c
            r1a="$(ratio "$one" "$a")×" r2a="$(ratio "$two" "$a")×" r1c="$(ratio "$one" "$c")×" r2c="$(ratio "$two" "$c")×"
            if [[ $clients == 32 ]]; then
                r1a+=" ($(verdict "${r1a%×}" 1) ≥ 1)" r2a+=" ($(verdict "${r2a%×}" 1) ≥ 1)"
                r1c+=" ($(verdict "${r1c%×}" 5) ≥ 5)" r2c+=" ($(verdict "${r2c%×}" 5) ≥ 5)"
            fi
            printf "| %s | %s | %.0f (%s / %s) | %.0f (%s / %s) | %.0f (%s / %s) | %.0f (%s / %s) | %s | %s | %s | %s |\n" \
                "$kind" "$clients" \
                "$a" "$(ms "${P50[audit.$k]}")" "$(ms "${P99[audit.$k]}")" \
                "$c" "$(ms "${P50[chain.$k]}")" "$(ms "${P99[chain.$k]}")" \
                "$one" "$(ms "${P50[pg1.$k]:-0}")" "$(ms "${P99[pg1.$k]:-0}")" \
                "$two" "$(ms "${P50[pg2.$k]:-0}")" "$(ms "${P99[pg2.$k]:-0}")" \
                "$r1a" "$r2a" "$r1c" "$r2c"
        done
    done
}

# --- In-process: pgbench over TCP vs the engine alone (not like for like) -----------------
in_process_compare() {
    local kind variant line fsync_us=""
    for kind in insert update; do
        for variant in audit chain; do
            log "PostgreSQL $variant $kind: $CLIENTS clients, $RUN_SECONDS s"
            read -r "TPS[$variant.$kind.ip]" _ _ < <(pg_run "$variant" "$kind" "$CLIENTS")
        done
        log "Quill in-process $kind: $CLIENTS writers, $RUN_SECONDS s"
        line=$("$QUILL" bench workload --writers "$CLIENTS" --seconds "$RUN_SECONDS" --kind "$kind" --preload "$PRELOAD" --dir "$WORK")
        echo "quill: $line" >&2
        TPS[quill.$kind.ip]=$(sed -n 's/.*tx_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
        fsync_us+="${fsync_us:+, }$kind run $(sed -n 's/.*fsync_p50_us=\([0-9]*\).*/\1/p' <<<"$line") µs"
        [[ -n "${TPS[quill.$kind.ip]}" ]] || die "no tx_per_sec from quill for $kind"
    done
    header
    echo "In-process (NOT like for like: Quill's engine called directly, PostgreSQL over TCP): $CLIENTS clients,"
    echo "$RUN_SECONDS s per run, $PRELOAD preloaded documents; raw fsync p50 (measured by Quill before each of its runs): $fsync_us"
    echo
    echo "| workload | PG audit tx/s | PG hash-chained tx/s | Quill in-process tx/s | Quill / audit | Quill / chained |"
    echo "|---|---|---|---|---|---|"
    local a c q
    for kind in insert update; do
        a=${TPS[audit.$kind.ip]} c=${TPS[chain.$kind.ip]} q=${TPS[quill.$kind.ip]}
        printf "| %s | %.0f | %.0f | %.0f | %s× | %s× |\n" "$kind" "$a" "$c" "$q" "$(ratio "$q" "$a")" "$(ratio "$q" "$c")"
    done
}

# --- DMV mix: pgbench scripts on the audit recipe vs quill bench dmv (SigV4) ---------------
# Script names, quill bench dmv's kind names, and weights matching its schedule (50/20/15/15 %).
DMV_SCRIPTS=(lookup transfer secondary history)
DMV_KINDS=(lookup transfer secondary-owner history)
DMV_WEIGHTS=(10 4 3 3)

# Lines "KIND tps p50_us p99_us" (each kind, then total) of one pgbench run of the mix at
# CLIENTS clients: tps per kind is the run's tps split by the kind's share of the logged
# transactions; percentiles come from the log's latency (column 3) by script (column 4).
pg_dmv_run() {
    local clients=$1 output logs threads tps i kind scripts=()
    threads=$(( clients < 2 ? clients : 2 ))
    logs="$WORK/pglog.dmv.$clients"
    for i in "${!DMV_SCRIPTS[@]}"; do scripts+=(-f "$SQL_DIR/dmv_${DMV_SCRIPTS[$i]}.sql@${DMV_WEIGHTS[$i]}"); done
    output=$("$PGBENCH" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$clients" -j "$threads" -T "$RUN_SECONDS" \
        -l --log-prefix="$logs" -D preload="$PRELOAD" "${scripts[@]}" dmv 2>&1) || { echo "$output" >&2; die "pgbench dmv failed"; }
    tps=$(echo "$output" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')
    [[ -n "$tps" ]] || { echo "$output" >&2; die "no tps from pgbench for dmv"; }
    cat "$logs".* >"$logs.all"
    for i in "${!DMV_KINDS[@]}" total; do
        if [[ $i == total ]]; then kind=total; else kind=${DMV_KINDS[$i]}; fi
        awk -v s="$i" 's == "total" || $4 == s { print $3 }' "$logs.all" | sort -n |
            awk -v kind="$kind" -v tps="$tps" -v all="$(wc -l <"$logs.all")" '
                { v[NR] = $1 }
                END { if (NR == 0) { print kind, 0, 0, 0; exit }
                      i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
                      i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
                      print kind, tps * NR / all, v[i50], v[i99] }'
    done
    rm -f "$logs".*
}

dmv_compare() {
    local clients kind line sessions k q p p50 p99
    declare -A OCC
    psql_run -d postgres -c "CREATE DATABASE dmv" >/dev/null
    psql_run -d dmv -f "$SQL_DIR/schema_dmv.sql" >/dev/null
    psql_run -d dmv -v preload="$PRELOAD" -f "$SQL_DIR/dmv_load.sql" >/dev/null
    psql_run -d dmv -c "VACUUM ANALYZE" >/dev/null
    for clients in $CLIENTS_LIST; do
        log "PostgreSQL audit DMV mix: $clients clients, $RUN_SECONDS s"
        while read -r kind q p50 p99; do
            TPS[pg.$kind.$clients]=$q P50[pg.$kind.$clients]=$p50 P99[pg.$kind.$clients]=$p99
        done < <(pg_dmv_run "$clients")
    done

    start_quill dmv 1
    sessions=$(echo $CLIENTS_LIST | tr ' ' ',')
    log "Quill wire DMV mix: sessions $sessions, $RUN_SECONDS s each, $PRELOAD of each document (SigV4 on)"
    AWS_ACCESS_KEY_ID=pgcompare AWS_SECRET_ACCESS_KEY=$QUILL_SECRET \
        "$QUILL" bench dmv --endpoint "$QUILL_ENDPOINTS" --sessions "$sessions" --seconds "$RUN_SECONDS" \
        --preload "$PRELOAD" --ledger dmv --dir "$WORK" >"$WORK/dmv.out" \
        || { cat "$WORK/dmv.out" "$WORK"/serve.dmv.*.log >&2; die "quill bench dmv failed"; }
    stop_quill
    grep -v '^dmv ' "$WORK/dmv.out" >&2
    while read -r line; do
        clients=$(sed -n 's/.* sessions=\([0-9]*\).*/\1/p' <<<"$line")
        kind=$(sed -n 's/.* kind=\([a-z-]*\).*/\1/p' <<<"$line")
        TPS[quill.$kind.$clients]=$(sed -n 's/.* tx_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
        P50[quill.$kind.$clients]=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
        P99[quill.$kind.$clients]=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
        OCC[$kind.$clients]=$(sed -n 's/.* occ=\([0-9]*\).*/\1/p' <<<"$line")
    done < <(grep '^dmv ' "$WORK/dmv.out")

    header
    echo "DMV mix through the wire: PostgreSQL's audit-table recipe (schema_dmv.sql: four JSONB tables, expression"
    echo "indexes, trigger-maintained history) via pgbench over TCP, READ COMMITTED with the registration row locked"
    echo "FOR UPDATE by the writing transactions; Quill via its QLDB protocol (quill serve --auth credentials, SigV4-signed"
    echo "by quill bench dmv in a separate process, serializable OCC, conflicts retried and counted). $RUN_SECONDS s per run,"
    echo "$PRELOAD each of persons, vehicles, registrations, licences. Mix: lookup 50 %, transfer 20 %,"
    echo "secondary-owner 15 %, history 15 %. tx/s and latency p50 / p99 in ms."
    echo
    echo "| clients | transaction | PG audit | Quill wire | Quill / PG audit | Quill OCC retries |"
    echo "|---|---|---|---|---|---|"
    for clients in $CLIENTS_LIST; do
        for kind in "${DMV_KINDS[@]}" total; do
            k=$kind.$clients
            q=${TPS[quill.$k]:-0} p=${TPS[pg.$k]:-0}
            printf "| %s | %s | %.0f (%s / %s) | %.0f (%s / %s) | %s× | %s |\n" "$clients" "$kind" \
                "$p" "$(ms "${P50[pg.$k]:-0}")" "$(ms "${P99[pg.$k]:-0}")" \
                "$q" "$(ms "${P50[quill.$k]:-0}")" "$(ms "${P99[quill.$k]:-0}")" \
                "$(ratio "$q" "$p")" "${OCC[$k]:-0}"
        done
    done
}

case $MODE in
    dmv) dmv_compare ;;
    wire) wire_compare ;;
    in-process) in_process_compare ;;
    both) wire_compare; in_process_compare ;;
esac
