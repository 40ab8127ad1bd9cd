#!/usr/bin/env bash
# Masking on the wire: a ROWS-row SELECT with two masked columns, and a COPY of a table
# whose text is read for content, direct and through Portcullis, in one run.
#
# Starts a private PostgreSQL cluster and a gateway on free loopback ports, loads
# `customers` (id, name, email, password, note: email masked by mask.email, password by
# mask.credentials, note read for content) and `notes` (id, body with an email in every
# tenth row), then times, interleaved, ROUNDS times each:
#   psql -c "SELECT * FROM customers" > /dev/null      direct and through the gateway
#   psql -c "COPY notes TO STDOUT" > /dev/null          direct and through the gateway
# and prints the median wall times, their ratio (SPEC target: <= 1.3x direct) and the
# gateway's peak resident memory (VmHWM), which must stay flat in ROWS.
#
# Environment:
#   ROWS            rows in each table (default 1000000)
#   ROUNDS          measured rounds (default 3; the median is reported)
#   PORTCULLIS_BIN  use this binary instead of `cargo build --release`
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   KEEP_TMP=1      keep the temp dir

set -euo pipefail
ROWS="${ROWS:-1000000}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
ISSUER="https://idp.bench.invalid/"

log() { printf '[mask.sh] %s\n' "$*" >&2; }
die() {
    printf '[mask.sh] ERROR: %s\n' "$*" >&2
    exit 1
}
for v in ROWS ROUNDS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done

as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_BIN="$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
[[ -x "$PG_BIN/initdb" ]] || die "no initdb in $PG_BIN"
PSQL="$PG_BIN/psql"

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
portcullis_binary

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-mask.XXXXXX")"
chmod 0755 "$TMP"
GW_PID=""
PG_STARTED=0
cleanup() { stop_scratch "$TMP/gateway.log"; }
trap cleanup EXIT
start_scratch_postgres

direct() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
log "loading $ROWS rows into customers and notes"
direct -c "CREATE TABLE customers AS SELECT i AS id, 'name ' || i AS name,
             'user' || i || '@example.com' AS email, md5(i::text) AS password,
             'order ' || i || ' shipped' AS note FROM generate_series(1, $ROWS) i" \
    -c "CREATE TABLE notes AS SELECT i AS id, CASE WHEN i % 10 = 0
             THEN 'call user' || i || '@example.com back' ELSE 'nothing to see in row ' || i END AS body
             FROM generate_series(1, $ROWS) i" \
    -c "VACUUM ANALYZE customers" -c "VACUUM ANALYZE notes"

"$BIN" token --generate-key "$TMP/key.pem" 2>/dev/null
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json"
GW_PORT="$(free_port)"
cat >"$TMP/portcullis.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$(free_port)"

[identity]
issuer = "$ISSUER"
audience = "portcullis"
jwks_path = "$TMP/jwks.json"

[audit]
path = "$TMP/audit.duckdb"

[[postgres]]
name = "bench"
listen = "127.0.0.1:$GW_PORT"
upstream = "postgres://postgres@127.0.0.1:$PG_PORT/postgres"
EOF
PORTCULLIS_LOG=warn "$BIN" serve --config "$TMP/portcullis.toml" >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
wait_port "$GW_PORT"
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub bench --groups dev --issuer "$ISSUER" --audience portcullis --ttl 1h)"
gateway() { PGPASSWORD="$TOKEN" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$GW_PORT" -U agent -d bench "$@"; }

# One masked row through the gateway, to show what is measured.
log "through the gateway: $(gateway -At -c "SELECT * FROM customers WHERE id = 10")"
log "through the gateway: $(gateway -At -c "COPY (SELECT * FROM notes WHERE id = 10) TO STDOUT")"

seconds() { # command...
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T=()
for ((r = 1; r <= ROUNDS; r++)); do
    for what in select copy; do
        case $what in
        select) q=(-c "SELECT * FROM customers") ;;
        copy) q=(-c "COPY notes TO STDOUT") ;;
        esac
        T[$what-direct]+="$(seconds direct "${q[@]}") "
        T[$what-gateway]+="$(seconds gateway "${q[@]}") "
    done
    log "round $r done"
done
RSS="$(awk '/VmHWM/ {print $2, $3}' "/proc/$GW_PID/status")"

echo
echo "$ROWS rows, $ROUNDS rounds (median), $(date -u +%F), nproc=$(nproc)"
echo "| query | direct s | through Portcullis s | ratio |"
echo "|---|---|---|---|"
for what in select copy; do
    d="$(median ${T[$what-direct]})"
    g="$(median ${T[$what-gateway]})"
    label="SELECT * FROM customers (email, password masked; note read)"
    [[ $what == copy ]] && label="COPY notes TO STDOUT (body read, 1 in 10 masked)"
    printf '| %s | %.2f | %.2f | %.2f |\n' "$label" "$d" "$g" "$(awk -v g="$g" -v d="$d" 'BEGIN { print g / d }')"
done
echo "gateway peak RSS (VmHWM): $RSS"
echo "target: <= 1.3x direct, memory flat in the number of rows"
