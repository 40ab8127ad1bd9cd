#!/usr/bin/env bash
# Instructions the gateway executes per pgbench transaction, counted by callgrind.
#
# The same binary gives the same count within 0.5% whatever else the machine is doing,
# so two builds can be compared where TPS and the CPU times pgbench.sh reads from /proc
# move by 10-20% between runs. Only user space is counted: the kernel's share (sends,
# receives, wake-ups) is in pgbench.sh's system-time columns, not here.
#
# Starts a private PostgreSQL (trust, fsync off, `pgbench -i -s 1`), then for each of two
# transaction counts, N and 2N, a fresh gateway (default rules, audit durability
# `writes`, PORTCULLIS_LOG=warn) under `valgrind --tool=callgrind --separate-threads=yes`:
# a warm-up of WARMUP transactions, the counters zeroed (`callgrind_control -z`), N (or
# 2N) transactions, the counters dumped (`callgrind_control -d`), then the stop. The
# difference of the two runs over N is the cost per transaction, so what does not grow
# with the transactions cancels out.
#
# The figure is what the threads that ran session code (the tokio workers) executed: the
# relay, judging, the masking plan and the event's hand-off. The audit writer's thread is
# printed too but is not comparable between runs: it commits on a clock (100 ms after a
# batch's first record), and under callgrind a transaction takes about 50 times longer,
# so its batches, and what each costs per event, depend on timing; and valgrind hides the
# CPU's SHA instructions, so the chain's SHA-256 takes its software path.
# `cargo bench --bench audit -- writer` measures the writer per event.
#
# Environment:
#   N               transactions in the shorter run (default 2000)
#   WARMUP          transactions before the counters are zeroed (default 200)
#   SCRIPT          pgbench built-in script (default select-only)
#   MODE            pgbench protocol: simple, extended or prepared (default simple)
#   CLIENTS         pgbench clients (default 1); N must be a multiple of it
#   PORTCULLIS_BIN  use this binary instead of `cargo build --release`
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   KEEP_TMP=1      keep the temp dir (callgrind files, logs)

set -euo pipefail
N="${N:-2000}"
WARMUP="${WARMUP:-200}"
SCRIPT="${SCRIPT:-select-only}"
MODE="${MODE:-simple}"
CLIENTS="${CLIENTS:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
ISSUER="https://idp.bench.invalid/"

log() { printf '[instructions.sh] %s\n' "$*" >&2; }
die() {
    printf '[instructions.sh] ERROR: %s\n' "$*" >&2
    exit 1
}
for v in N WARMUP CLIENTS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((N % CLIENTS == 0 && WARMUP % CLIENTS == 0)) || die "N and WARMUP must be multiples of CLIENTS"
[[ "$MODE" =~ ^(simple|extended|prepared)$ ]] || die "MODE must be simple, extended or prepared"
for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install valgrind)"
done

as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_BIN="$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
[[ -x "$PG_BIN/initdb" ]] || die "no initdb in $PG_BIN"
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
[[ -x "$PGBENCH" ]] || PGBENCH="$(command -v pgbench)" || die "pgbench not found"

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
portcullis_binary

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-instructions.XXXXXX")"
chmod 0755 "$TMP"
GW_PID=""
PG_STARTED=0
cleanup() { stop_scratch "$TMP"/gateway-*.log; }
trap cleanup EXIT
start_scratch_postgres
"$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres >"$TMP/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed"

"$BIN" token --generate-key "$TMP/key.pem" 2>/dev/null
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json"
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub bench --issuer "$ISSUER" --audience portcullis \
    --agent pgbench --ttl 1h)"

# Runs a fresh gateway under callgrind for $1 counted transactions; prints
# "<writer instructions> <other instructions>".
counted_run() {
    local txns="$1" dir="$TMP/run-$1" port
    mkdir -p "$dir"
    port="$(free_port)"
    cat >"$dir/portcullis.toml" <<EOF
[identity]
issuer = "$ISSUER"
audience = "portcullis"
jwks_path = "$TMP/jwks.json"

[audit]
path = "$dir/audit.duckdb"

[[postgres]]
name = "bench"
listen = "127.0.0.1:$port"
upstream = "postgres://postgres@127.0.0.1:$PG_PORT/postgres"
EOF
    PORTCULLIS_LOG=warn valgrind --tool=callgrind --separate-threads=yes --compress-strings=no \
        --callgrind-out-file="$dir/callgrind.out" \
        "$BIN" serve --config "$dir/portcullis.toml" >"$TMP/gateway-$txns.log" 2>&1 &
    GW_PID=$!
    wait_port "$port"
    local bench=("$PGBENCH" -n -b "$SCRIPT" -M "$MODE" -c "$CLIENTS" -h 127.0.0.1 -p "$port" -U agent bench)
    PGPASSWORD="$TOKEN" "${bench[@]}" -t $((WARMUP / CLIENTS)) >"$dir/warmup.log" 2>&1 ||
        die "the warm-up failed: $(tail -n 3 "$dir/warmup.log")"
    callgrind_control -z "$GW_PID" >/dev/null || die "callgrind_control -z failed"
    PGPASSWORD="$TOKEN" "${bench[@]}" -t $((txns / CLIENTS)) >"$dir/pgbench.log" 2>&1 ||
        die "the counted run failed: $(tail -n 3 "$dir/pgbench.log")"
    grep -q "number of transactions actually processed: $txns/$txns" "$dir/pgbench.log" ||
        die "pgbench did not complete $txns transactions (see $dir/pgbench.log)"
    # Counted up to here, before the stop: DuckDB's close runs on whichever thread drops
    # the store last, a worker at times.
    callgrind_control -d "$GW_PID" >/dev/null || die "callgrind_control -d failed"
    kill -TERM "$GW_PID"
    wait "$GW_PID" || die "the gateway did not stop cleanly (see $TMP/gateway-$txns.log)"
    GW_PID=""
    # One dump per thread. The workers' threads are those that ran session code; the
    # writer's, the one that ran its loop.
    local f total writer=0 other=0 dumps=0
    for f in "$dir"/callgrind.out.*; do
        [[ -s "$f" ]] || continue
        dumps=$((dumps + 1))
        total="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f")"
        [[ "$total" =~ ^[0-9]+$ ]] || die "no totals line in $f"
        if grep -q '^fn=.*portcullis::pg::' "$f"; then
            other=$((other + total))
        elif grep -q '^fn=.*portcullis::audit::writer::' "$f"; then
            writer=$((writer + total))
        fi
    done
    ((dumps > 0)) || die "no dump in $dir"
    echo "$writer $other"
}

log "gateway runs under callgrind: $N and $((2 * N)) transactions of -b $SCRIPT -M $MODE -c $CLIENTS"
read -r w1 o1 < <(counted_run "$N")
read -r w2 o2 < <(counted_run $((2 * N)))
per_tx() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }'; }
writer="$(per_tx "$w1" "$w2")"
other="$(per_tx "$o1" "$o2")"
git_rev="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'), git $git_rev, binary $BIN"
echo "command: N=$N WARMUP=$WARMUP SCRIPT=$SCRIPT MODE=$MODE CLIENTS=$CLIENTS benches/instructions.sh"
printf '%-34s %14s   %s\n' "instructions per transaction" "tokio workers" "(writer: timing-dependent)"
printf '%-34s %14s   %s\n' "-b $SCRIPT -M $MODE -c $CLIENTS" "$other" "($writer)"
printf '%-34s %14s   %s\n' "raw totals ($N / $((2 * N)) tx)" "$o1 / $o2" "($w1 / $w2)"
