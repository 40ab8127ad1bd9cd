#!/usr/bin/env bash
# Faults and load (issue 14, item 5): short soaks of the real gateway binary in front of a
# private PostgreSQL cluster, with a table of figures at the end. Each phase takes tens of
# seconds; all of them run against one gateway process (its resident memory is read from
# /proc/<pid>/status, VmRSS), except that `kill` kills it and starts it again.
#
#   sessions  SESSIONS concurrent sessions (pgbench -c, one pg_sleep(HOLD) each, all
#             connected before any starts), ROUNDS times: gateway RSS before, at the peak
#             and 5 s after each round closed
#   stalled   STALLED connections stuck in start-up, a third each silent, cut inside the
#             start-up packet and waiting at the password, held while a normal client
#             connects and runs SELECT 1 over and over for STALL_SECONDS: its latency
#             against a baseline without them, its failures, and how many of the stalled
#             connections the gateway still holds at the end
#   reader    one client sends a ROWS-row query (1 kB rows) and never reads a byte of the
#             answer, for READER_SECONDS: the gateway's RSS, what PostgreSQL waits on, and
#             whether the upstream query ends once that client goes away
#   restart   pgbench -S through the gateway and, beside it, direct while the upstream
#             restarts (pg_ctl restart -m fast): what the clients on each path were told
#             (pgbench's, an idle psql session's, one running pg_sleep), then a new psql
#             session, a new pgbench run and /healthz through the same gateway
#   kill      kill -9 of the gateway under pgbench -M prepared (TPC-B-like writes):
#             pgbench_history rows in the database against allowed `execute` events of
#             its INSERT in the audit store, `portcullis audit verify`, and the gateway
#             started again on the same store
#
# Environment:
#   PHASES          phases to run, in this order (default "sessions stalled reader restart kill")
#   SESSIONS        concurrent sessions (default 500)         HOLD           seconds held (default 10)
#   ROUNDS          rounds of them (default 2)
#   STALLED         stalled connections (default 500)         STALL_SECONDS  (default 20)
#   ROWS            rows of the unread result (default 1000000) READER_SECONDS (default 20)
#   CLIENTS         pgbench clients under load (default 8)    LOAD_SECONDS   pgbench run (default 20)
#   SCALE           pgbench -i scale factor (default 4)
#   GATEWAY_CONFIG  extra lines for the [[postgres]] block, e.g.
#                   $'startup_timeout = "5s"\nmax_startups = 100' (keys the binary must know)
#   PORTCULLIS_BIN  the binary to measure (default: cargo build --release)
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   KEEP_TMP=1      keep the temp dir (configs, logs, the audit store)
#
# Needs bash >= 5, PostgreSQL's server binaries (initdb, pg_ctl), psql, pgbench and ss;
# as root the cluster runs as the `postgres` user (runuser). See benches/README.md.

set -euo pipefail

COMMAND_LINE="$(
    for v in PHASES SESSIONS ROUNDS HOLD STALLED STALL_SECONDS ROWS READER_SECONDS CLIENTS LOAD_SECONDS \
        SCALE GATEWAY_CONFIG PORTCULLIS_BIN; do
        [[ -n "${!v:-}" ]] && printf '%s=%q ' "$v" "${!v}"
    done
    printf '%q' "$0"
)"
PHASES="${PHASES:-sessions stalled reader restart kill}"
SESSIONS="${SESSIONS:-500}"
ROUNDS="${ROUNDS:-2}"
HOLD="${HOLD:-10}"
STALLED="${STALLED:-500}"
STALL_SECONDS="${STALL_SECONDS:-20}"
ROWS="${ROWS:-1000000}"
READER_SECONDS="${READER_SECONDS:-20}"
CLIENTS="${CLIENTS:-8}"
LOAD_SECONDS="${LOAD_SECONDS:-20}"
SCALE="${SCALE:-4}"
GATEWAY_CONFIG="${GATEWAY_CONFIG:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
ISSUER="https://idp.bench.invalid/"
UPSTREAM_PASSWORD="soak-$RANDOM$RANDOM"

log() { printf '[soak.sh] %s\n' "$*" >&2; }
die() {
    printf '[soak.sh] ERROR: %s\n' "$*" >&2
    exit 1
}
for v in SESSIONS ROUNDS HOLD STALLED STALL_SECONDS ROWS READER_SECONDS CLIENTS LOAD_SECONDS SCALE; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for p in $PHASES; do
    [[ " sessions stalled reader restart kill " == *" $p "* ]] || die "unknown phase '$p'"
done
((BASH_VERSINFO[0] >= 5)) || die "bash 5 or later is needed (EPOCHREALTIME)"

as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_BIN="$(pg_config --bindir 2>/dev/null || true)"
[[ -x "$PG_BIN/initdb" ]] || PG_BIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
[[ -x "$PG_BIN/initdb" ]] || die "no initdb (pg_config --bindir, /usr/lib/postgresql/*/bin)"
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
[[ -x "$PGBENCH" ]] || PGBENCH="$(command -v pgbench)" || die "pgbench not found"
command -v ss >/dev/null || die "ss (iproute2) is needed"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$REPO/benches/lib.sh"
portcullis_binary
# pgbench -c 500 and the held connections need descriptors.
ulimit -n "$(ulimit -Hn)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-soak.XXXXXX")"
chmod 0755 "$TMP"
GW_PID=""
PG_STARTED=0
HELD_PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT
    set +e
    for pid in "${HELD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    [[ -n "$GW_PID" ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    ((PG_STARTED)) && as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -m immediate -w stop >/dev/null 2>&1
    if ((rc != 0)); then tail -n 20 "$TMP/gateway.log" "$TMP/postgres.log" >&2 2>/dev/null; fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ---------------------------------------------------------------------------------------
# PostgreSQL: SCRAM over TCP, enough connections for every session
# ---------------------------------------------------------------------------------------
PG_PORT="$(free_port)"
[[ "$(id -u)" == 0 ]] && chown postgres: "$TMP"
as_pg "$PG_BIN/initdb" -D "$TMP/pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-instructions >"$TMP/initdb.log" 2>&1 || die "initdb failed"
cat >>"$TMP/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP'
password_encryption = 'scram-sha-256'
max_connections = $((SESSIONS + 2 * CLIENTS + 20))
fsync = off
EOF
as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/postgres.log" -w -t 60 start >/dev/null ||
    die "pg_ctl start failed"
PG_STARTED=1
su_psql() { as_pg "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP" -p "$PG_PORT" -U postgres -d bench "$@"; }
as_pg "$PSQL" -X -q -h "$TMP" -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE bench LOGIN PASSWORD '$UPSTREAM_PASSWORD'" -c "CREATE DATABASE bench OWNER bench" ||
    die "creating role and database failed"
export PGSSLMODE=disable PGCONNECT_TIMEOUT=10
unset PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE
PGPASSWORD="$UPSTREAM_PASSWORD" "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench \
    >"$TMP/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -n 5 "$TMP/pgbench-init.log")"

# ---------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------
"$BIN" token --generate-key "$TMP/key.pem" 2>/dev/null
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json"
GW_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
cat >"$TMP/portcullis.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$ADMIN_PORT"

[identity]
issuer = "$ISSUER"
audience = "portcullis"
jwks_path = "$TMP/jwks.json"

[audit]
path = "$TMP/audit.duckdb"

[[postgres]]
name = "bench"
listen = "127.0.0.1:$GW_PORT"
upstream = "postgres://bench@127.0.0.1:$PG_PORT/bench?sslmode=disable"
upstream_password_env = "PORTCULLIS_SOAK_UPSTREAM_PASSWORD"
$GATEWAY_CONFIG
EOF
start_gateway() {
    PORTCULLIS_LOG=warn PORTCULLIS_SOAK_UPSTREAM_PASSWORD="$UPSTREAM_PASSWORD" \
        "$BIN" serve --config "$TMP/portcullis.toml" >>"$TMP/gateway.log" 2>&1 &
    GW_PID=$!
    wait_port "$GW_PORT"
}
start_gateway
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub soak --agent soak --issuer "$ISSUER" \
    --audience portcullis --ttl 2h)"
gw_psql() { PGPASSWORD="$TOKEN" "$PSQL" -X -q -At -h 127.0.0.1 -p "$GW_PORT" -U agent -d bench "$@"; }
gw_pgbench() { PGPASSWORD="$TOKEN" "$PGBENCH" -h 127.0.0.1 -p "$GW_PORT" -U agent "$@" bench; }
[[ "$(gw_psql -c "SELECT count(*) FROM pgbench_branches" 2>&1)" == "$SCALE" ]] ||
    die "smoke query through the gateway failed"

# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$GW_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
# Connections the gateway holds open on its listener (its side of them).
gw_conns() { ss -Htn state established "( sport = :$GW_PORT )" | wc -l; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
stats() { # values... -> "median M ms, max X ms (n=N)"
    (($#)) || {
        echo "none"
        return
    }
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        printf "median %.1f ms, max %.1f ms (n=%d)", v[int((NR + 1) / 2)], v[NR], NR }'
}
ROWS_OUT=()
row() { ROWS_OUT+=("| $1 | $2 | $3 |"); } # phase figure value
verdict() { ROWS_OUT+=("| $1 | **verdict** | **$2** |"); }
log "PostgreSQL on $PG_PORT, gateway (pid $GW_PID) on $GW_PORT, $(mib "$(rss_kib)") after one query"

# Timed `SELECT 1` on a new gateway session each time, for SECONDS; appends latencies
# (ms) to the named array and failures to the file $TMP/probe-failures.
probe() { # seconds array-name
    local -n out="$2"
    local end=$((SECONDS + $1)) t0
    while ((SECONDS < end)); do
        t0=$EPOCHREALTIME
        if [[ "$(gw_psql -c "SELECT 1" 2>>"$TMP/probe-failures")" == 1 ]]; then
            out+=("$(ms_since "$t0")")
        else
            echo "(failed after $(ms_since "$t0") ms)" >>"$TMP/probe-failures"
        fi
    done
}
probe_failures() { grep -c '^(failed' "$TMP/probe-failures" 2>/dev/null || true; }

# Wire messages for the raw clients (PostgreSQL "Message Formats"), as printf %b escapes.
be32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
startup_msg() { # user database
    local params="user\\x00$1\\x00database\\x00$2\\x00\\x00"
    printf '%s\\x00\\x03\\x00\\x00%s' "$(be32 $((8 + 17 + ${#1} + ${#2})))" "$params"
}
text_msg() { printf '%s%s%s\\x00' "$1" "$(be32 $((4 + ${#2} + 1)))" "$2"; } # type text

# ---------------------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------------------
phase_sessions() {
    local round peak conns maxconns r out
    # One pg_sleep per client: pgbench connects every client before any starts, so all
    # SESSIONS are open at once for HOLD seconds (a -T run would count the connecting).
    echo "SELECT pg_sleep($HOLD);" >"$TMP/sleep.sql"
    row sessions "gateway RSS before" "$(mib "$(rss_kib)")"
    local afters=() fewest=$SESSIONS
    for ((round = 1; round <= ROUNDS; round++)); do
        log "sessions: round $round, $SESSIONS sessions for ${HOLD}s"
        gw_pgbench -n -c "$SESSIONS" -j 2 -t 1 -f "$TMP/sleep.sql" >"$TMP/sessions-$round.log" 2>&1 &
        local bench=$!
        peak=0 maxconns=0
        while kill -0 "$bench" 2>/dev/null; do
            r="$(rss_kib)"
            ((r > peak)) && peak=$r
            conns="$(gw_conns)"
            ((conns > maxconns)) && maxconns=$conns
            sleep 0.5
        done
        if wait "$bench" && grep -q "^number of transactions actually processed: $SESSIONS/" "$TMP/sessions-$round.log"; then
            out="$SESSIONS sessions ran"
        else out="pgbench failed: $(grep -m1 -i 'error\|abort' "$TMP/sessions-$round.log")"; fi
        sleep 5
        afters+=("$(rss_kib)")
        ((maxconns < fewest)) && fewest=$maxconns
        row sessions "round $round: sessions open at once (gateway side) / pgbench" \
            "$maxconns / $out, $(grep -o 'initial connection time = [0-9.]* ms' "$TMP/sessions-$round.log")"
        row sessions "round $round: gateway RSS at peak / 5 s after close" \
            "$(mib "$peak") / $(mib "${afters[-1]}")"
    done
    local growth=$((afters[-1] - afters[0]))
    row sessions "RSS change after close, round $ROUNDS vs round 1" "$(mib "$growth")"
    # Flat: the last round leaves no more than 5% (at least 2 MiB) behind the first.
    if ((fewest >= SESSIONS && growth <= (afters[0] / 20 > 2048 ? afters[0] / 20 : 2048))); then
        verdict sessions pass
    else verdict sessions "FAIL (sessions at once $fewest, growth $(mib "$growth"))"; fi
}

# ---------------------------------------------------------------------------------------
# stalled
# ---------------------------------------------------------------------------------------
# Opens COUNT connections of one kind and holds them until killed (exec sleep keeps them).
hold_stalled() { # kind count
    local i fd startup
    startup="$(startup_msg agent bench)"
    for ((i = 0; i < $2; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT" || break
        case $1 in
        cut) printf '%b' "${startup:0:32}" >&"$fd" ;; # 8 of its bytes: length, version
        password) printf '%b' "$startup" >&"$fd" ;;
        esac
    done
    echo "$i" >"$TMP/held-$1"
    exec sleep 3600
}
phase_stalled() {
    local base=() during=() kind n=$((STALLED / 3)) held conns dropped
    : >"$TMP/probe-failures"
    log "stalled: baseline, SELECT 1 on a new session for $((STALL_SECONDS / 2))s"
    probe $((STALL_SECONDS / 2)) base
    local base_failures
    base_failures="$(probe_failures)"
    local rss0
    rss0="$(rss_kib)"
    for kind in silent cut password; do
        [[ $kind == password ]] && n=$((STALLED - 2 * (STALLED / 3)))
        hold_stalled "$kind" "$n" &
        HELD_PIDS+=($!)
    done
    for kind in silent cut password; do
        while [[ ! -s "$TMP/held-$kind" ]]; do sleep 0.1; done
    done
    held=$(($(cat "$TMP/held-silent") + $(cat "$TMP/held-cut") + $(cat "$TMP/held-password")))
    sleep 1
    local rss1 conns0
    rss1="$(rss_kib)"
    conns0="$(gw_conns)"
    log "stalled: $held connections opened, the gateway holds $conns0; probing for ${STALL_SECONDS}s"
    : >"$TMP/probe-failures"
    probe "$STALL_SECONDS" during
    conns="$(gw_conns)"
    dropped="$(ss -Htn state close-wait "( dport = :$GW_PORT )" | wc -l)"
    local rss2
    rss2="$(rss_kib)"
    local failures
    failures="$(probe_failures)"
    kill "${HELD_PIDS[@]}" 2>/dev/null
    wait "${HELD_PIDS[@]}" 2>/dev/null || true
    HELD_PIDS=()
    sleep 3
    local config="${GATEWAY_CONFIG:-(none: defaults of the binary)}"
    row stalled "GATEWAY_CONFIG" "${config//$'\n'/; }"
    row stalled "stalled connections opened (silent / cut start-up / at the password)" \
        "$held ($(cat "$TMP/held-silent") / $(cat "$TMP/held-cut") / $(cat "$TMP/held-password"))"
    row stalled "normal client, new session + SELECT 1, without stalls" "$(stats "${base[@]}"), $base_failures failed"
    row stalled "normal client, new session + SELECT 1, during stalls" "$(stats "${during[@]}"), $failures failed"
    [[ "$failures" != 0 ]] && row stalled "first failure" "$(grep -m1 -v '^(failed' "$TMP/probe-failures")"
    row stalled "held by the gateway 1 s after opening / after ${STALL_SECONDS}s; closed by it" \
        "$conns0 / $conns; $dropped"
    row stalled "gateway RSS before / with the stalls / 3 s after they closed" \
        "$(mib "$rss0") / $(mib "$rss1") ($(mib "$rss2") at the end) / $(mib "$(rss_kib)")"
    local during_median base_median
    base_median="$(stats "${base[@]}" | awk '{ print $2 }')"
    during_median="$(stats "${during[@]}" | awk '{ print $2 }')"
    if [[ "$failures" == 0 ]] && ((${#during[@]} > 0)) &&
        awk -v d="$during_median" -v b="$base_median" 'BEGIN { exit !(d <= 2 * b + 5) }'; then
        verdict stalled pass
    else verdict stalled "FAIL ($failures failed, median $during_median ms against $base_median ms)"; fi
}

# ---------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------
phase_reader() {
    local sql="SELECT repeat('x', 1000) AS pad, g FROM generate_series(1, $ROWS) g"
    local rss0 peak=0 r i queued=0 q wait_event="" gone="no"
    rss0="$(rss_kib)"
    log "reader: $ROWS rows of 1 kB asked for and never read, ${READER_SECONDS}s"
    (
        exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT"
        printf '%b' "$(startup_msg agent bench)" >&"$fd"
        sleep 0.5
        printf '%b' "$(text_msg p "$TOKEN")" >&"$fd"
        sleep 1
        printf '%b' "$(text_msg Q "$sql")" >&"$fd"
        exec sleep 3600
    ) &
    HELD_PIDS+=($!)
    for ((i = 0; i < READER_SECONDS; i++)); do
        sleep 1
        r="$(rss_kib)"
        ((r > peak)) && peak=$r
        q="$(ss -Htn state established "( dport = :$GW_PORT )" | awk '{ s += $1 } END { print s + 0 }')"
        ((q > queued)) && queued=$q
    done
    wait_event="$(su_psql -c "SELECT coalesce(wait_event, state) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%'")"
    # Where the result waits: kernel buffers on the gateway's two sockets.
    local gw_send gw_recv
    gw_send="$(ss -Htn state established "( sport = :$GW_PORT )" | awk '{ s += $2 } END { print s + 0 }')"
    gw_recv="$(ss -Htn state established "( dport = :$PG_PORT )" | awk '{ s += $1 } END { print s + 0 }')"
    local probe_ms=()
    probe 3 probe_ms
    kill "${HELD_PIDS[@]}" 2>/dev/null
    wait "${HELD_PIDS[@]}" 2>/dev/null || true
    HELD_PIDS=()
    for ((i = 0; i < 100; i++)); do
        [[ -z "$(su_psql -c "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%'")" ]] && {
            gone="after $(awk -v i="$i" 'BEGIN { printf "%.1f", i / 10 }') s"
            break
        }
        sleep 0.1
    done
    sleep 2
    row reader "result asked for" "$ROWS rows x 1 kB (about $(mib "$ROWS"))"
    row reader "gateway RSS before / peak while stalled / after close" \
        "$(mib "$rss0") / $(mib "$peak") / $(mib "$(rss_kib)")"
    row reader "kernel buffers: client's receive / gateway's send to it / gateway's receive from upstream" \
        "$((queued / 1024)) KiB / $((gw_send / 1024)) KiB / $((gw_recv / 1024)) KiB"
    row reader "upstream backend waits on" "${wait_event:-(no such backend)}"
    row reader "upstream query ended once the client closed" "$gone"
    row reader "another client meanwhile (new session + SELECT 1)" "$(stats "${probe_ms[@]}")"
    # Bounded: the gateway grows by less than 64 MiB, whatever the size of the result.
    if ((peak - rss0 < 65536)) && [[ "$gone" != no ]]; then
        verdict reader pass
    else verdict reader "FAIL (growth $(mib $((peak - rss0))), upstream query ended: $gone)"; fi
}

# ---------------------------------------------------------------------------------------
# restart
# ---------------------------------------------------------------------------------------
phase_restart() {
    local t0 restart_ms after_ok after_ms health rc_gw=0 rc_direct=0 pause=$((LOAD_SECONDS / 3))
    log "restart: pgbench -S -c $CLIENTS through the gateway and direct, upstream restarted after ${pause}s"
    gw_pgbench -n -S -c "$CLIENTS" -j 2 -T "$LOAD_SECONDS" >"$TMP/restart-gateway.log" 2>&1 &
    local bench_gw=$!
    PGPASSWORD="$UPSTREAM_PASSWORD" "$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U bench -n -S -c "$CLIENTS" -j 2 \
        -T "$LOAD_SECONDS" bench >"$TMP/restart-direct.log" 2>&1 &
    local bench_direct=$!
    # An idle session on each path, whose next statement comes after the restart.
    { echo 'SELECT 1;'; sleep $((pause + 3)); echo 'SELECT 2;'; } |
        gw_psql >"$TMP/idle-gateway.log" 2>&1 &
    local idle_gw=$!
    { echo 'SELECT 1;'; sleep $((pause + 3)); echo 'SELECT 2;'; } |
        PGPASSWORD="$UPSTREAM_PASSWORD" "$PSQL" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U bench -d bench \
            >"$TMP/idle-direct.log" 2>&1 &
    local idle_direct=$!
    # And one with a statement running when the upstream goes down.
    gw_psql -c "SELECT pg_sleep($((pause + 5)))" >"$TMP/busy-gateway.log" 2>&1 &
    local busy_gw=$!
    PGPASSWORD="$UPSTREAM_PASSWORD" "$PSQL" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U bench -d bench \
        -c "SELECT pg_sleep($((pause + 5)))" >"$TMP/busy-direct.log" 2>&1 &
    local busy_direct=$!
    sleep "$pause"
    t0=$EPOCHREALTIME
    as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/postgres.log" -m fast -w -t 60 restart >/dev/null ||
        die "pg_ctl restart failed"
    restart_ms="$(ms_since "$t0")"
    wait "$bench_gw" || rc_gw=$?
    wait "$bench_direct" || rc_direct=$?
    wait "$idle_gw" "$idle_direct" "$busy_gw" "$busy_direct" || true
    t0=$EPOCHREALTIME
    after_ok="$(gw_psql -c "SELECT 1" 2>&1)" || true
    after_ms="$(ms_since "$t0")"
    gw_pgbench -n -S -c "$CLIENTS" -j 2 -T 5 >"$TMP/restart-after.log" 2>&1 || true
    exec {h}<>"/dev/tcp/127.0.0.1/$ADMIN_PORT"
    printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&"$h"
    health="$(head -n 1 <&"$h" | tr -d '\r')"
    exec {h}>&-
    # pgbench says per aborted client either the server's message or, when the connection
    # was gone before a message could be read, "perhaps the backend died".
    told() { # log -> "N aborted: A with 57P01's message, B 'perhaps the backend died'"
        printf '%s aborted: %s told "terminating connection due to administrator command", %s "perhaps the backend died while processing"' \
            "$(grep -c 'client [0-9]* .*aborted' "$1" || true)" \
            "$(grep -c 'aborted.*terminating connection due to administrator command' "$1" || true)" \
            "$(grep -c 'aborted.*perhaps the backend died' "$1" || true)"
    }
    idle() { grep -v '^1$' "$1" | head -n 2 | paste -sd ' ' | sed 's/  */ /g'; }
    row restart "pg_ctl restart -m fast -w (load on both paths)" "$restart_ms ms"
    row restart "pgbench -S -c $CLIENTS through the gateway (exit $rc_gw)" "$(told "$TMP/restart-gateway.log")"
    row restart "pgbench -S -c $CLIENTS direct, same restart (exit $rc_direct)" "$(told "$TMP/restart-direct.log")"
    row restart "an idle session's next statement, through the gateway" "$(idle "$TMP/idle-gateway.log")"
    row restart "an idle session's next statement, direct" "$(idle "$TMP/idle-direct.log")"
    row restart "a session with a statement running (pg_sleep), through the gateway" "$(idle "$TMP/busy-gateway.log")"
    row restart "a session with a statement running (pg_sleep), direct" "$(idle "$TMP/busy-direct.log")"
    row restart "new session after the restart (psql SELECT 1)" \
        "$([[ "$after_ok" == 1 ]] && echo ok || echo "FAILED: $after_ok"), $after_ms ms"
    row restart "pgbench -S -c $CLIENTS -T 5 after the restart" \
        "$(sed -n 's/^tps = \([0-9]*\).* (without.*/\1 tps/p' "$TMP/restart-after.log"), $(grep -c 'client [0-9]* .*aborted' "$TMP/restart-after.log" || true) aborted"
    row restart "/healthz after" "$health"
    local aborted
    aborted="$(grep -c 'client [0-9]* .*aborted' "$TMP/restart-gateway.log" || true)"
    if ((aborted > 0)) && [[ "$after_ok" == 1 ]] && ! grep -q aborted "$TMP/restart-after.log" &&
        grep -q 'terminating connection due to administrator command' "$TMP/idle-gateway.log" &&
        grep -q 'terminating connection due to administrator command' "$TMP/busy-gateway.log"; then
        verdict restart pass
    else verdict restart "FAIL (a client through the gateway was not told the upstream's error, or no new session)"; fi
}

# ---------------------------------------------------------------------------------------
# kill
# ---------------------------------------------------------------------------------------
audit_count() { "$BIN" audit sql --db "$TMP/audit.duckdb" --format csv "$1" | tail -n 1; }
phase_kill() {
    local history recorded updates verify_out verify_rc=0 txns after
    su_psql -c "TRUNCATE pgbench_history"
    log "kill: pgbench -M prepared -c $CLIENTS through the gateway, kill -9 after $((LOAD_SECONDS / 2))s"
    gw_pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$LOAD_SECONDS" >"$TMP/kill.log" 2>&1 &
    local bench=$!
    sleep $((LOAD_SECONDS / 2))
    kill -KILL "$GW_PID"
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
    wait "$bench" || true
    txns="$(sed -n 's/^number of transactions actually processed: //p' "$TMP/kill.log")"
    history="$(su_psql -c "SELECT count(*) FROM pgbench_history")"
    recorded="$(audit_count "SELECT count(*) FROM events WHERE kind = 'execute'
        AND statement LIKE 'INSERT INTO pgbench_history%' AND decision = 'allowed'")"
    updates="$(audit_count "SELECT count(*) FROM events WHERE kind = 'execute'
        AND statement LIKE 'UPDATE pgbench_accounts%' AND decision = 'allowed'")"
    verify_out="$("$BIN" audit verify --db "$TMP/audit.duckdb" 2>&1)" || verify_rc=$?
    start_gateway
    after="$(gw_psql -c "SELECT count(*) FROM pgbench_branches" 2>&1)" || true
    row kill "pgbench -M prepared transactions reported (killed mid-run)" "${txns:-?}"
    row kill "pgbench_history rows in the database" "$history"
    row kill "allowed execute events: INSERT INTO pgbench_history / UPDATE pgbench_accounts" "$recorded / $updates"
    row kill "portcullis audit verify" "exit $verify_rc: $(tr '\n' ' ' <<<"$verify_out" | cut -c1-120)"
    row kill "gateway started again on the store, a query" "$([[ "$after" == "$SCALE" ]] && echo ok || echo "FAILED: $after")"
    if ((history > 0 && recorded >= history && verify_rc == 0)) && [[ "$after" == "$SCALE" ]]; then
        verdict kill pass
    else verdict kill "FAIL (see the rows above)"; fi
}

for p in $PHASES; do "phase_$p"; done

echo
echo "== benches/soak.sh, $(date -u +%F) =="
echo "command:    $COMMAND_LINE"
echo "binary:     $BIN ($("$BIN" --version 2>/dev/null)), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine:    nproc=$(nproc), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "postgres:   $("$PG_BIN/postgres" --version), SCRAM, fsync=off, loopback; gateway PORTCULLIS_LOG=warn, audit durability writes"
echo
echo "| phase | figure | value |"
echo "|---|---|---|"
printf '%s\n' "${ROWS_OUT[@]}"
