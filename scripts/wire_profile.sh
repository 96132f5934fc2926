#!/usr/bin/env bash
# wire_profile.sh — the server's CPU cost per wire transaction, in instructions (callgrind),
# by component. Instruction counts stay repeatable on a loaded machine, unlike wall time.
#
# Runs `quill serve` (SigV4 on) under callgrind with instrumentation off, warms it up with a short
# `quill bench wire` run, then collects only while a second run drives KIND transactions from
# SESSIONS sessions for RUN_SECONDS, and prints instructions per transaction, in total and by
# component (inclusive cost of the functions matching each pattern, from callgrind_annotate).
#
# With CPU=1 the server runs natively instead and the figures are its CPU time (user + system,
# from /proc, so the kernel's share of thread hand-offs and syscalls counts) and its threads'
# context switches per transaction, in total and by thread name; callgrind cannot see that
# share, and runs software SHA-256 (valgrind hides SHA-NI).
#
# Usage: scripts/wire_profile.sh [OUT_DIR]   (default: a temporary directory, kept)
# Environment: QUILL_BIN (default target/release/quill), KIND (insert), SESSIONS (4), RUN_SECONDS (20),
# CPU (unset)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUILL=${QUILL_BIN:-$ROOT/target/release/quill}
KIND=${KIND:-insert}
SESSIONS=${SESSIONS:-4}
SECONDS_RUN=${RUN_SECONDS:-20}
OUT=${1:-$(mktemp -d /tmp/wire-profile.XXXXXX)}
mkdir -p "$OUT/data"
command -v valgrind >/dev/null || { echo "wire_profile: valgrind is not installed" >&2; exit 1; }

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
echo "profile $secret" >"$OUT/credentials"
runner=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out")
[[ -n "${CPU:-}" ]] && runner=()
"${runner[@]}" "$QUILL" serve --data-dir "$OUT/data" --listen 127.0.0.1:0 --auth credentials \
    --credentials "$OUT/credentials" --log-level warn >"$OUT/serve.out" 2>"$OUT/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
port=""
for _ in $(seq 600); do
    port=$(sed -n 's|^quill: listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$OUT/serve.out")
    [[ -n "$port" ]] && break
    sleep 0.2
done
[[ -n "$port" ]] || { cat "$OUT/serve.log" >&2; exit 1; }
bench() {
    AWS_ACCESS_KEY_ID=profile AWS_SECRET_ACCESS_KEY=$secret "$QUILL" bench wire \
        --endpoint "http://127.0.0.1:$port" --kind "$KIND" --preload 200 --dir "$OUT" "$@"
}
bench --sessions "$SESSIONS" --seconds 3 >"$OUT/warmup.txt"
# utime + stime of the server, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
# Context switches (voluntary + involuntary) of the server's threads alive now: each thread
# hand-off or wait costs one. Threads that exit during the run take theirs with them.
switches() { cat /proc/"$server"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { sum += $2 } END { print sum + 0 }'; }
# The same by thread name (`name voluntary involuntary`, threads of one name summed), to see
# which hand-off or wait the switches come from.
switches_by_thread() {
    for task in /proc/"$server"/task/*; do
        awk -v name="$(cat "$task/comm" 2>/dev/null)" '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print name "\t" v + 0 "\t" n + 0 }' "$task/status" 2>/dev/null
    done | awk -F'\t' '{ v[$1] += $2; n[$1] += $3 } END { for (name in v) print name "\t" v[name] "\t" n[name] }' | sort
}
if [[ -n "${CPU:-}" ]]; then
    before=$(cpu_ticks)
    switches_before=$(switches)
    switches_by_thread >"$OUT/switches-before.tsv"
    # The load generator's CPU too (the subshell's children's times, read after it waited for
    # them): on 2 cores it competes with the server, so its cost per transaction bounds tx/s.
    client_ticks=$(bench --sessions "$SESSIONS" --seconds "$SECONDS_RUN" >"$OUT/bench.txt"; awk '{ print $16 + $17 }' "/proc/$BASHPID/stat")
    after=$(cpu_ticks)
    switches_after=$(switches)
    switches_by_thread >"$OUT/switches-after.tsv"
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
    transactions=$(sed -n 's/^wire .* transactions=\([0-9]*\).*/\1/p' "$OUT/bench.txt")
    tps=$(sed -n 's/^wire .* tx_per_sec=\([0-9.]*\).*/\1/p' "$OUT/bench.txt")
    echo "context switches per transaction by thread (voluntary, involuntary; threads that exited during the run are missing):"
    awk -F'\t' -v n="$transactions" 'NR == FNR { v[$1] = $2; i[$1] = $3; next }
        { dv = $2 - v[$1]; di = $3 - i[$1]; if (dv + di > 0) printf "  %-24s %6.2f %6.2f\n", $1, dv / n, di / n }' \
        "$OUT/switches-before.tsv" "$OUT/switches-after.tsv"
    echo "wire_profile: $KIND, $SESSIONS sessions, $transactions transactions ($tps tx/s), $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$transactions" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }') µs of server CPU and $(awk -v s=$((switches_after - switches_before)) -v n="$transactions" 'BEGIN { printf "%.1f", s / n }') context switches per transaction, load generator $(awk -v t="$client_ticks" -v hz="$(getconf CLK_TCK)" -v n="$transactions" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }') µs of CPU per transaction, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi
callgrind_control -i on "$server" >/dev/null 2>&1
callgrind_control -z "$server" >/dev/null 2>&1
bench --sessions "$SESSIONS" --seconds "$SECONDS_RUN" >"$OUT/bench.txt"
callgrind_control -d "$server" >/dev/null 2>&1
callgrind_control -i off "$server" >/dev/null 2>&1
kill -INT "$server"
wait "$server" 2>/dev/null || true
trap - EXIT

transactions=$(sed -n 's/^wire .* transactions=\([0-9]*\).*/\1/p' "$OUT/bench.txt")
dump=$OUT/callgrind.out.1
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$dump" 2>/dev/null >"$OUT/inclusive.txt"
total=$(sed -n 's/^\([0-9,]*\) (100.0%)  PROGRAM TOTALS.*/\1/p' "$OUT/inclusive.txt" | tr -d ,)
echo "wire_profile: $KIND, $SESSIONS sessions, $transactions transactions, $(awk -v t="$total" -v n="$transactions" 'BEGIN { printf "%.0f", t / n }') instructions per transaction (server total)"
# Components: inclusive instructions of each function, per transaction. A function shows on
# up to two lines, its relative path with the object (` [/path/quill]`) and an absolute path
# without, each with the whole inclusive cost: summing both doubled components, so each
# pattern counts its largest line. A component's patterns (`file:function` strings separated
# by `|`, matched literally) are summed.
component() {
    local label=$1 patterns=$2
    awk -v label="$label" -v patterns="$patterns" -v n="$transactions" '
        BEGIN { count = split(patterns, wanted, "|") }
        /=>/ { next }
        {
            for (i = 1; i <= count; i++) {
                at = index($0, wanted[i])
                if (at == 0) continue
                rest = substr($0, at + length(wanted[i]))
                if (rest == "" || substr(rest, 1, 2) == " [") {
                    cost = $1
                    gsub(",", "", cost)
                    if (cost + 0 > best[i]) best[i] = cost + 0
                }
            }
        }
        END {
            for (i = 1; i <= count; i++) sum += best[i]
            printf "  %-62s %9.0f\n", label, sum / n
        }' "$OUT/inclusive.txt"
}
S=quill-server/src
echo "instructions per transaction, inclusive:"
awk -v t="$total" -v n="$transactions" 'BEGIN { printf "  %-62s %9.0f\n", "server in total (background included)", t / n }'
background=$(awk '/=>/ { next } /quill-server\/src\/tlog.rs:quill_server::tlog::Logs::checkpoint_all( \[|$)|quill-ledger\/src\/commit\/flusher.rs:quill_ledger::commit::flusher::flush_loop( \[|$)/ { gsub(",", "", $1); sum += $1 } END { print sum + 0 }' "$OUT/inclusive.txt")
awk -v t="$total" -v b="$background" -v n="$transactions" 'BEGIN { printf "  %-62s %9.0f\n", "server per request path (total less the two background lines)", (t - b) / n }'
component "HTTP handler on the async workers (inline session commands included)" "$S/server.rs:<F as axum::handler::Handler<(M,T1,T2),S>>::call::{{closure}}"
component "  SigV4 verification (headers, signature, payload hash)" "$S/sigv4.rs:quill_server::sigv4::check_headers|$S/sigv4.rs:quill_server::sigv4::HeaderCheck::verify|$S/sigv4.rs:quill_server::sigv4::check_payload"
component "  JSON request decode (Ion parameters included)" "$S/data_plane.rs:quill_server::data_plane::parse_request"
component "    Ion parameter decode (base64 + Ion binary)" "$S/ion_codec.rs:quill_server::ion_codec::decode_parameter"
component "  JSON response (build + serialise)" "$S/data_plane.rs:quill_server::data_plane::render|serde_json-1.0.154/src/value/mod.rs:<serde_json::value::Value as core::fmt::Display>::fmt"
component "  request id, header copies" "$S/server.rs:quill_server::server::request_id|$S/server.rs:quill_server::server::header_pairs"
component "Session commands (inline on the async workers, or on the blocking pool)" "$S/session.rs:quill_server::session::Sessions::run|$S/session.rs:quill_server::session::Sessions::try_run_inline|$S/session.rs:quill_server::session::PendingCommit::finish::{{closure}}"
component "  StartTransaction" "$S/session.rs:quill_server::session::Sessions::start_transaction"
component "  statement digests (parameters hashed once: CommitDigest, ledger record, inserted data)" "quill-verify/src/hashes.rs:quill_verify::hashes::statement_digest|quill-partiql/src/lib.rs:quill_partiql::HashedStatement::new"
component "  PartiQL execute (parse, eval, writes)" "quill-partiql/src/lib.rs:quill_partiql::execute_with_limits|quill-partiql/src/lib.rs:quill_partiql::execute_hashed"
component "    PartiQL parse" "quill-partiql/src/parser/mod.rs:quill_partiql::parser::parse"
component "    statement recorded by the ledger" "quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::record_statement|quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::record_statement_digest"
component "    engine write (Transaction::insert / update)" "quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::insert|quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::insert_hashed|quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::update"
component "  commit (hashing, sequencing; waits are not instructions)" "$S/session.rs:quill_server::session::Sessions::begin_commit|quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::commit_async::{{closure}}|quill-ledger/src/transaction.rs:quill_ledger::transaction::Transaction::commit"
component "Commit threads (sequencer, syncer)" "quill-ledger/src/commit/pipeline.rs:quill_ledger::commit::pipeline::run|quill-ledger/src/commit/pipeline.rs:quill_ledger::commit::pipeline::sync_loop"
component "Background, per second not per transaction: tlog checkpoints" "$S/tlog.rs:quill_server::tlog::Logs::checkpoint_all"
component "Background: derived-state flusher" "quill-ledger/src/commit/flusher.rs:quill_ledger::commit::flusher::flush_loop"
echo "profile: $OUT/inclusive.txt"
