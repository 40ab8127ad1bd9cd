#!/usr/bin/env bash
# pgbench through Portcullis vs. direct PostgreSQL vs. PgBouncer, in one run.
#
# Starts a private PostgreSQL cluster, a PgBouncer (session pooling) and a Portcullis
# gateway on free loopback ports, runs pgbench's built-in scripts (`-b select-only`, i.e.
# `-S`, and `-b tpcb-like`) against all three in interleaved order, and prints a table
# against the SPEC target (gateway >= 85% of direct TPS and >= PgBouncer, on
# select-only) with the CPU time PgBouncer and the gateway spend per transaction (user
# and system, the gateway's split into tokio workers, the audit writer and the rest),
# read from /proc before and after each run. Tears everything down on exit. See
# benches/README.md.
#
# Environment:
#   DURATION        seconds per pgbench run (default 10)
#   SCALE           pgbench -i scale factor (default 10)
#   SCRIPTS         pgbench built-in scripts (default "select-only tpcb-like")
#   CLIENTS         client counts to run (default "1 8"); -j is min(N, 2)
#   MODES           pgbench protocols (default "simple prepared"); "connect" is the simple
#                   protocol with a new connection per transaction (-C), what a new
#                   session costs (PgBouncer keeps its server connections; the gateway
#                   and direct open one each time)
#   WARMUP          seconds of an untimed direct run before measuring (default 3; 0 = none)
#   DURABILITIES    audit.durability modes to run, one gateway each (default "writes";
#                   "async writes all" adds a table comparing them in the same run)
#   PORTCULLIS_BIN  use this binary instead of `cargo build --release`
#   TOKIO_WORKER_THREADS  passed on to the gateway (tokio reads it; default one worker
#                   per core), and printed in the command line with the rest
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   KEEP_TMP=1      keep the temp dir (logs, configs) instead of deleting it

set -euo pipefail

COMMAND_LINE="$(
    for v in DURATION SCALE SCRIPTS CLIENTS MODES WARMUP DURABILITIES PORTCULLIS_BIN TOKIO_WORKER_THREADS; do
        [[ -n "${!v:-}" ]] && printf '%s=%q ' "$v" "${!v}"
    done
    printf '%q' "$0"
    (($#)) && printf ' %q' "$@"
    true
)"

DURATION="${DURATION:-10}"
SCALE="${SCALE:-10}"
SCRIPTS="${SCRIPTS:-select-only tpcb-like}"
CLIENTS="${CLIENTS:-1 8}"
MODES="${MODES:-simple prepared}"
WARMUP="${WARMUP:-3}"
DURABILITIES="${DURABILITIES:-writes}"
for d in $DURABILITIES; do
    [[ "$d" == async || "$d" == writes || "$d" == all ]] || {
        echo "DURABILITIES entries must be async, writes or all (got '$d')" >&2
        exit 1
    }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"

BENCH_PASSWORD="bench-$RANDOM$RANDOM"
ISSUER="https://idp.bench.invalid/"
AUDIENCE="portcullis"
PORT_WAIT_SECONDS=30

log() { printf '[pgbench.sh] %s\n' "$*" >&2; }
die() {
    printf '[pgbench.sh] ERROR: %s\n' "$*" >&2
    exit 1
}

[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (got '$DURATION')"
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer (got '$SCALE')"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
for c in $CLIENTS; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "CLIENTS must be positive integers (got '$CLIENTS')"
done
for s in $SCRIPTS; do
    [[ "$s" == select-only || "$s" == tpcb-like || "$s" == simple-update ]] ||
        die "SCRIPTS entries must be select-only, tpcb-like or simple-update (got '$s')"
done
for m in $MODES; do
    [[ "$m" == simple || "$m" == prepared || "$m" == extended || "$m" == connect ]] ||
        die "MODES entries must be simple, extended, prepared or connect (got '$m')"
done

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

# Runs a command as the user that owns the cluster and PgBouncer (postgres when root).
as_pg() {
    if ((IS_ROOT)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# ---------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------
TMP=""
PG_STARTED=0
GATEWAY_PID=""
GATEWAY_PIDS=()
BOUNCER_PID=""

stop_pid() { # pid name
    local pid="$1" name="$2" i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop on SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((rc != 0)) && [[ -n "$TMP" && -d "$TMP" ]]; then
        for f in postgres.log pgbouncer.log gateway-writes.log gateway-async.log gateway-all.log; do
            if [[ -s "$TMP/$f" ]]; then
                log "last lines of $f:"
                tail -n 15 "$TMP/$f" >&2
            fi
        done
    fi
    for pid in "${GATEWAY_PIDS[@]}"; do
        stop_pid "$pid" "portcullis"
    done
    if [[ -n "$TMP" && -s "$TMP/pgbouncer.pid" ]]; then
        stop_pid "$(cat "$TMP/pgbouncer.pid")" "pgbouncer"
    fi
    stop_pid "$BOUNCER_PID" "pgbouncer (runuser)"
    if ((PG_STARTED)); then
        as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            log "pg_ctl stop failed"
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

# A TCP port on 127.0.0.1 that nothing listens on (and that we have not handed out).
USED_PORTS=" "
free_port() {
    local port listening i
    listening=" $(ss -Htln 2>/dev/null | awk '{n=split($4,a,":"); printf "%s ", a[n]}') "
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        [[ "$listening" == *" $port "* || "$USED_PORTS" == *" $port "* ]] && continue
        # Double-check with a connect: refused means free.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
    die "could not find a free TCP port"
}

# Waits until something accepts on 127.0.0.1:PORT; fails early if PID dies.
wait_port() { # port name [pid]
    local port="$1" name="$2" pid="${3:-}" deadline=$((SECONDS + PORT_WAIT_SECONDS))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited before listening on port $port"
        fi
        ((SECONDS < deadline)) || die "$name did not listen on 127.0.0.1:$port within ${PORT_WAIT_SECONDS}s"
        sleep 0.05
    done
}

# ---------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------
PG_BIN=""
if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    PG_BIN="$(pg_config --bindir)"
else
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$d/initdb" ]]; then
            PG_BIN="$d"
            break
        fi
    done
fi
[[ -n "$PG_BIN" ]] || die "no PostgreSQL server binaries (initdb) found via pg_config --bindir or /usr/lib/postgresql/*/bin"
PGBENCH="$PG_BIN/pgbench"
[[ -x "$PGBENCH" ]] || PGBENCH="$(command -v pgbench || true)"
[[ -x "$PGBENCH" ]] || die "pgbench not found (install postgresql-contrib or postgresql-client)"
PSQL="$PG_BIN/psql"
[[ -x "$PSQL" ]] || PSQL="$(command -v psql || true)"
[[ -x "$PSQL" ]] || die "psql not found"
if ((IS_ROOT)); then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
    command -v runuser >/dev/null 2>&1 || die "running as root needs runuser (util-linux)"
fi
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is needed to find free ports"
[[ -r /proc/self/stat ]] || die "/proc is needed to read CPU times"
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || true)"
[[ "$CLK_TCK" =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave no tick rate (got '$CLK_TCK')"

# PgBouncer: install it if we can, otherwise skip its rows.
PGBOUNCER="$(command -v pgbouncer || true)"
[[ -z "$PGBOUNCER" && -x /usr/sbin/pgbouncer ]] && PGBOUNCER=/usr/sbin/pgbouncer
BOUNCER_NOTE=""
if [[ -z "$PGBOUNCER" ]]; then
    if ((IS_ROOT)) && command -v apt-get >/dev/null 2>&1; then
        log "pgbouncer not found; installing the Debian package"
        if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends pgbouncer; } >"/tmp/pgbench-sh-apt.$$.log" 2>&1; then
            PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
            [[ -x "$PGBOUNCER" ]] || PGBOUNCER=""
        fi
        [[ -n "$PGBOUNCER" ]] || BOUNCER_NOTE="apt-get install pgbouncer failed (see /tmp/pgbench-sh-apt.$$.log)"
        [[ -n "$PGBOUNCER" ]] && rm -f "/tmp/pgbench-sh-apt.$$.log"
    else
        BOUNCER_NOTE="pgbouncer is not installed and this script can only install it as root with apt-get (e.g. sudo apt-get install -y pgbouncer)"
    fi
fi
[[ -n "$BOUNCER_NOTE" ]] && log "skipping PgBouncer: $BOUNCER_NOTE"

# Portcullis binary.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PORTCULLIS_BIN:-}" ]]; then
    BIN="$PORTCULLIS_BIN"
    [[ -x "$BIN" ]] || die "PORTCULLIS_BIN=$BIN is not an executable"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or set PORTCULLIS_BIN)"
    log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    BIN="$CARGO_TARGET_DIR/release/portcullis"
    [[ -x "$BIN" ]] || die "no binary at $BIN after the build"
fi

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-pgbench.XXXXXX")"
chmod 0755 "$TMP"
mkdir -p "$TMP/sock"
((IS_ROOT)) && chown -R postgres: "$TMP"

PG_PORT="$(free_port)"
log "initdb in $TMP/pgdata (PostgreSQL port $PG_PORT)"
as_pg "$PG_BIN/initdb" -D "$TMP/pgdata" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$TMP/initdb.log" 2>&1 ||
    { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$TMP/pgdata/postgresql.conf" <<EOF

# benches/pgbench.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP/sock'
password_encryption = 'scram-sha-256'
shared_buffers = 128MB
max_connections = 100
fsync = off
EOF
as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/postgres.log" -w -t 60 start >/dev/null ||
    die "PostgreSQL did not start"
PG_STARTED=1

su_psql() { # superuser over the private unix socket
    as_pg "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$TMP/sock" -p "$PG_PORT" -U postgres "$@"
}
su_psql -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$BENCH_PASSWORD'" \
    -c "CREATE DATABASE bench OWNER bench" >/dev/null || die "creating role/database bench failed"

export PGSSLMODE=disable
export PGCONNECT_TIMEOUT=10
unset PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE

log "pgbench -i -s $SCALE (direct, over TCP with SCRAM)"
PGPASSWORD="$BENCH_PASSWORD" "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench \
    >"$TMP/pgbench-init.log" 2>&1 || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
# Load the table and index into shared buffers so the first measured run is not colder.
su_psql -d bench -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey')" \
    >/dev/null 2>&1 || log "pg_prewarm unavailable; relying on the warm-up run"

# ---------------------------------------------------------------------------------------
# PgBouncer (session pooling)
# ---------------------------------------------------------------------------------------
BOUNCER_PORT=""
if [[ -n "$PGBOUNCER" ]]; then
    BOUNCER_PORT="$(free_port)"
    printf '"bench" "%s"\n' "$BENCH_PASSWORD" >"$TMP/userlist.txt"
    cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $TMP/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 32
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
EOF
    chmod 0600 "$TMP/userlist.txt" "$TMP/pgbouncer.ini"
    ((IS_ROOT)) && chown postgres: "$TMP/userlist.txt" "$TMP/pgbouncer.ini"
    log "starting PgBouncer on port $BOUNCER_PORT (session pooling)"
    as_pg "$PGBOUNCER" "$TMP/pgbouncer.ini" >"$TMP/pgbouncer.out" 2>&1 &
    BOUNCER_PID=$!
    wait_port "$BOUNCER_PORT" "pgbouncer" "$BOUNCER_PID"
fi

# ---------------------------------------------------------------------------------------
# Portcullis
# ---------------------------------------------------------------------------------------
"$BIN" token --generate-key "$TMP/key.pem" 2>"$TMP/token.err" ||
    die "portcullis token --generate-key failed: $(cat "$TMP/token.err") (is $BIN an up-to-date build with the gateway?)"
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json" || die "portcullis token --jwks failed"
# One gateway per audit durability mode, each with its own store.
declare -A GW_PORTS=() GW_PID_OF=()
for d in $DURABILITIES; do
    GW_PORTS[$d]="$(free_port)"
    cat >"$TMP/portcullis-$d.toml" <<EOF
[identity]
issuer = "$ISSUER"
audience = "$AUDIENCE"
jwks_path = "$TMP/jwks.json"

[audit]
path = "$TMP/audit-$d.duckdb"
durability = "$d"

[[postgres]]
name = "bench"
listen = "127.0.0.1:${GW_PORTS[$d]}"
upstream = "postgres://bench@127.0.0.1:$PG_PORT/bench?sslmode=disable"
upstream_password_env = "PORTCULLIS_BENCH_UPSTREAM_PASSWORD"
EOF
    log "starting Portcullis (audit durability $d) on port ${GW_PORTS[$d]} (PORTCULLIS_LOG=warn)"
    PORTCULLIS_LOG=warn PORTCULLIS_BENCH_UPSTREAM_PASSWORD="$BENCH_PASSWORD" \
        "$BIN" serve --config "$TMP/portcullis-$d.toml" >"$TMP/gateway-$d.out" 2>"$TMP/gateway-$d.log" &
    GATEWAY_PID=$!
    GATEWAY_PIDS+=("$GATEWAY_PID")
    GW_PID_OF[$d]="$GATEWAY_PID"
    wait_port "${GW_PORTS[$d]}" "portcullis serve" "$GATEWAY_PID"
done
GW_DURABILITY="${DURABILITIES%% *}"
[[ -n "${GW_PORTS[writes]:-}" ]] && GW_DURABILITY=writes
GW_PORT="${GW_PORTS[$GW_DURABILITY]}"
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub bench --issuer "$ISSUER" \
    --audience "$AUDIENCE" --agent pgbench --ttl 1h)" || die "portcullis token --key failed"

# ---------------------------------------------------------------------------------------
# Smoke test every target before spending minutes on runs
# ---------------------------------------------------------------------------------------
target_port() {
    case "$1" in
    direct) echo "$PG_PORT" ;;
    gateway) echo "$GW_PORT" ;;
    gw-*) echo "${GW_PORTS[${1#gw-}]}" ;;
    pgbouncer) echo "$BOUNCER_PORT" ;;
    esac
}
target_password() {
    case "$1" in
    gateway | gw-*) echo "$TOKEN" ;;
    *) echo "$BENCH_PASSWORD" ;;
    esac
}
TARGETS="direct gateway"
for d in $DURABILITIES; do
    [[ "${GW_PORTS[$d]}" == "$GW_PORT" ]] || TARGETS+=" gw-$d"
done
[[ -n "$BOUNCER_PORT" ]] && TARGETS+=" pgbouncer"
for t in $TARGETS; do
    got="$(PGPASSWORD="$(target_password "$t")" "$PSQL" -X -At -h 127.0.0.1 -p "$(target_port "$t")" \
        -U bench -d bench -c "SELECT count(*) FROM pgbench_branches" 2>&1)" ||
        die "smoke query through $t failed: $got"
    [[ "$got" == "$SCALE" ]] || die "smoke query through $t returned '$got', expected $SCALE"
done

# ---------------------------------------------------------------------------------------
# CPU time from /proc
# ---------------------------------------------------------------------------------------

# Prints a process's CPU time in clock ticks, summed over its live threads
# (/proc/PID/task/TID/stat): "workers_user workers_sys writer_user writer_sys other_user
# other_sys". Threads are grouped by name (.../comm): tokio's are "tokio-rt-worker"
# (older tokio: "tokio-runtime-w"; the workers, and the blocking pool's threads if any
# run), the audit writer's is "audit-writer". Threads are summed rather than taking
# /proc/PID/stat: the kernel splits each task's runtime into user and system on its own,
# so a process's split is not the sum of its threads' and a difference of the two can go
# negative. A thread that exits during a run takes its time with it (none does under
# pgbench: the gateway's threads are its workers, the writer and the main thread).
# utime and stime are fields 14 and 15 of a stat line; the name in field 2 may hold
# spaces or parentheses, so fields are counted after its last ')'.
cpu_ticks() { # pid
    local pid="$1" dir tids=()
    for dir in "/proc/$pid/task"/*; do
        tids+=("${dir##*/}")
    done
    awk -v pid="$pid" '
        function stat(file, f,    line, n) {
            if ((getline line <file) <= 0) { close(file); return 0 }
            close(file)
            if (!match(line, /\)[^)]*$/)) return 0
            n = split(substr(line, RSTART + 2), f, " ")
            return n >= 13
        }
        BEGIN {
            for (i = 1; i < ARGC; i++) {
                dir = "/proc/" pid "/task/" ARGV[i]
                if (!stat(dir "/stat", f)) continue
                comm = ""
                getline comm <(dir "/comm")
                close(dir "/comm")
                if (comm ~ /^tokio-r(t-worker|untime-w)/) { wu += f[12]; ws += f[13] }
                else if (comm == "audit-writer") { au += f[12]; as += f[13] }
                else { ou += f[12]; os += f[13] }
                seen++
            }
            if (!seen) { print "-"; exit }
            printf "%d %d %d %d %d %d\n", wu, ws, au, as, ou, os
        }' "${tids[@]}"
}

# Waits (at most 3 s) until PID has used no CPU for 0.2 s, so that work queued during a
# run (the audit writer's last batch) is counted in that run.
wait_idle() { # pid
    local pid="$1" before after i
    before="$(cpu_ticks "$pid")"
    for ((i = 0; i < 15; i++)); do
        sleep 0.2
        after="$(cpu_ticks "$pid")"
        [[ "$after" == "$before" ]] && return 0
        before="$after"
    done
}

# Microseconds of CPU per transaction from two cpu_ticks lines, as "user+sys" per group:
# "workers writer other" for the gateway, "total" for PgBouncer.
us_per_tx() { # before after transactions gateway|process
    awk -v b="$1" -v a="$2" -v n="$3" -v kind="$4" -v hz="$CLK_TCK" '
        function cell(u, s) { return sprintf("%.1f+%.1f", u * k, s * k) }
        BEGIN {
            if (split(b, x, " ") != 6 || split(a, y, " ") != 6 || n !~ /^[0-9]+$/ || n == 0) {
                print (kind == "gateway") ? "- - -" : "-"
                exit
            }
            k = 1e6 / hz / n
            for (i = 1; i <= 6; i++) d[i] = y[i] - x[i]
            if (kind == "gateway")
                print cell(d[1], d[2]), cell(d[3], d[4]), cell(d[5], d[6])
            else
                print cell(d[1] + d[3] + d[5], d[2] + d[4] + d[6])
        }'
}

# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------
declare -A TPS=() CPU=()

# The process whose CPU a target's runs are charged to ("" = not measured).
target_pid() {
    case "$1" in
    gateway) echo "$GATEWAY_MAIN_PID" ;;
    pgbouncer) echo "$BOUNCER_MAIN_PID" ;;
    esac
}

run_pgbench() { # target script mode clients -> sets RUN_TPS (or FAIL) and RUN_TXNS
    local t="$1" script="$2" mode="$3" c="$4" j out
    local protocol=(-M "$mode")
    [[ "$mode" == connect ]] && protocol=(-M simple -C)
    j=$((c < 2 ? c : 2))
    RUN_TPS=FAIL
    RUN_TXNS=""
    if out="$(PGPASSWORD="$(target_password "$t")" "$PGBENCH" -b "$script" -n -T "$DURATION" \
        "${protocol[@]}" -c "$c" -j "$j" -h 127.0.0.1 -p "$(target_port "$t")" -U bench bench 2>&1)"; then
        printf '%s\n' "$out" >>"$TMP/runs.log"
        local tps
        # With -C pgbench counts the connections in: "(including reconnection times)".
        tps="$(sed -n 's/^tps = \([0-9.]*\) (\(without initial connection time\|including reconnection times\))$/\1/p' <<<"$out")"
        RUN_TXNS="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*$/\1/p' <<<"$out")"
        if [[ -n "$tps" ]]; then
            RUN_TPS="$tps"
            return 0
        fi
    fi
    log "pgbench -b $script against $t (-M $mode -c $c) failed or printed no tps line:"
    tail -n 10 <<<"$out" >&2
}

GATEWAY_MAIN_PID="${GW_PID_OF[$GW_DURABILITY]}"
BOUNCER_MAIN_PID=""
if [[ -n "$BOUNCER_PORT" ]]; then
    BOUNCER_MAIN_PID="$(cat "$TMP/pgbouncer.pid" 2>/dev/null || true)"
    [[ "$BOUNCER_MAIN_PID" =~ ^[0-9]+$ && -r "/proc/$BOUNCER_MAIN_PID/stat" ]] || {
        log "no PgBouncer pid in $TMP/pgbouncer.pid; its CPU is not measured"
        BOUNCER_MAIN_PID=""
    }
fi

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP}s direct pgbench -S (not measured)"
    PGPASSWORD="$BENCH_PASSWORD" "$PGBENCH" -S -n -T "$WARMUP" -c 2 -j 2 -h 127.0.0.1 \
        -p "$PG_PORT" -U bench bench >/dev/null 2>&1 || log "warm-up run failed (continuing)"
fi

CONFIGS=()
for script in $SCRIPTS; do
    for mode in $MODES; do
        for c in $CLIENTS; do
            CONFIGS+=("$script/$mode/$c")
        done
    done
done
n_runs=$((${#CONFIGS[@]} * $(wc -w <<<"$TARGETS")))
log "measuring: ${#CONFIGS[@]} configurations x ($TARGETS), ${DURATION}s each: ~$((n_runs * DURATION))s"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for cfg in "${CONFIGS[@]}"; do
    IFS=/ read -r script mode c <<<"$cfg"
    for t in $TARGETS; do
        pid="$(target_pid "$t")"
        if [[ -n "$pid" ]]; then
            wait_idle "$pid"
            before="$(cpu_ticks "$pid")"
        fi
        run_pgbench "$t" "$script" "$mode" "$c"
        TPS["$cfg/$t"]="$RUN_TPS"
        if [[ -n "$pid" ]]; then
            wait_idle "$pid"
            kind=process
            [[ "$t" == gateway ]] && kind=gateway
            CPU["$cfg/$t"]="$(us_per_tx "$before" "$(cpu_ticks "$pid")" "$RUN_TXNS" "$kind")"
        fi
        log "  -b $script -M $mode -c $c $t: $RUN_TPS tps${CPU["$cfg/$t"]:+, us/tx user+sys: ${CPU["$cfg/$t"]}}"
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# The gateways must still be the same processes (a crash would have shown as FAIL rows).
for pid in "${GATEWAY_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || log "WARNING: a portcullis gateway exited during the runs"
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
ratio() { # a b -> a/b with 2 decimals, or - when either is missing
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "-" }'
}
verdict() { # gateway direct bouncer -> "met", "NO" or "-" for the SPEC target
    awk -v g="$1" -v d="$2" -v b="$3" 'BEGIN {
        num = "^[0-9.]+$"
        if (g !~ num || d !~ num) { printf "-"; exit }
        ok = (g >= 0.85 * d) && (b !~ num || g >= b)
        printf "%s", ok ? "met" : "NO"
    }'
}
sum_cells() { # "u+s" cells -> their sum as "u+s", or - when any is missing
    awk -v cells="$*" 'BEGIN {
        n = split(cells, c, " ")
        for (i = 1; i <= n; i++) {
            if (split(c[i], p, "+") != 2) { printf "-"; exit }
            u += p[1]; s += p[2]
        }
        printf "%.1f+%.1f", u, s
    }'
}
fmt_tps() { [[ "$1" =~ ^[0-9.]+$ ]] && printf '%.0f' "$1" || printf '%s' "$1"; }

cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
[[ -n "$cpu_model" ]] || cpu_model="$(uname -m)"
pg_version="$("$PG_BIN/postgres" --version 2>/dev/null || echo unknown)"
pgbench_version="$("$PGBENCH" --version 2>/dev/null || echo unknown)"
bouncer_version="skipped"
[[ -n "$PGBOUNCER" ]] && bouncer_version="$("$PGBOUNCER" --version 2>/dev/null | head -n 1 || echo unknown)"
gw_version="$("$BIN" --version 2>/dev/null || echo unknown)"
git_rev="$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$git_rev" != unknown ]] && [[ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    git_rev+=" (+ uncommitted changes)"
fi

echo
echo "== pgbench: direct vs PgBouncer vs Portcullis, with CPU per transaction =="
echo "command:    $COMMAND_LINE"
echo "machine:    nproc=$(nproc), $cpu_model, $(uname -sr)"
echo "load:       $LOAD_BEFORE before the runs, $LOAD_AFTER after (1/5/15-min averages)"
echo "postgres:   $pg_version; shared_buffers=128MB, fsync=off (benchmark only), SCRAM auth, 127.0.0.1 TCP"
echo "pgbench:    $pgbench_version; -b {$SCRIPTS} -n -T $DURATION, scale $SCALE, -j min(clients,2), sslmode=disable"
echo "portcullis: $gw_version, git $git_rev, default rules, audit durability $GW_DURABILITY, PORTCULLIS_LOG=warn"
echo "pgbouncer:  $bouncer_version${BOUNCER_PORT:+, pool_mode=session}"
[[ -n "$BOUNCER_NOTE" ]] && echo "            PgBouncer columns skipped: $BOUNCER_NOTE"
echo "order:      interleaved per configuration (direct, portcullis, pgbouncer)"
echo
ROW='%-24s %7s %9s %10s %7s %7s %7s %6s | %10s | %10s %10s %10s %11s\n'
# shellcheck disable=SC2059 # ROW is the one row format, on purpose
{
    printf '%-24s %-26s %-30s | %-10s | %s\n' "" "TPS" "ratio" "pgbouncer" \
        "portcullis: CPU us per transaction, user+sys"
    printf "$ROW" "script mode clients" "direct" "pgbouncer" "portcullis" "bnc/dir" "ptc/dir" \
        "ptc/bnc" "target" "us/tx" "workers" "writer" "other" "total"
    printf "$ROW" "------------------------" "-------" "---------" "----------" "-------" "-------" \
        "-------" "------" "----------" "----------" "----------" "----------" "-----------"
    for cfg in "${CONFIGS[@]}"; do
        IFS=/ read -r script mode c <<<"$cfg"
        d="${TPS["$cfg/direct"]}"
        g="${TPS["$cfg/gateway"]}"
        b="${TPS["$cfg/pgbouncer"]:-skipped}"
        v="-"
        [[ "$script" == select-only && "$mode" != connect ]] && v="$(verdict "$g" "$d" "$b")"
        read -r gw_workers gw_writer gw_other <<<"${CPU["$cfg/gateway"]:-- - -}"
        printf "$ROW" "$script $mode c=$c" "$(fmt_tps "$d")" "$(fmt_tps "$b")" "$(fmt_tps "$g")" \
            "$(ratio "$b" "$d")" "$(ratio "$g" "$d")" "$(ratio "$g" "$b")" "$v" \
            "${CPU["$cfg/pgbouncer"]:--}" "$gw_workers" "$gw_writer" "$gw_other" \
            "$(sum_cells "$gw_workers" "$gw_writer" "$gw_other")"
    done
}
if [[ "$DURABILITIES" == *" "* ]]; then
    echo
    echo "== audit durability (same run): TPS, ratio to direct, ratio to async =="
    printf '%-24s %10s' "configuration" "direct"
    for d in $DURABILITIES; do printf ' %12s %7s %7s' "$d" "/dir" "/async"; done
    echo
    for cfg in "${CONFIGS[@]}"; do
        IFS=/ read -r script mode c <<<"$cfg"
        d0="${TPS["$cfg/direct"]}"
        printf '%-24s %10s' "$script $mode c=$c" "$(fmt_tps "$d0")"
        for d in $DURABILITIES; do
            key="gw-$d"
            [[ "${GW_PORTS[$d]}" == "$GW_PORT" ]] && key=gateway
            a_key="gw-async"
            [[ "${GW_PORTS[async]:-}" == "$GW_PORT" ]] && a_key=gateway
            g="${TPS["$cfg/$key"]}"
            a="${TPS["$cfg/$a_key"]:-}"
            printf ' %12s %7s %7s' "$(fmt_tps "$g")" "$(ratio "$g" "$d0")" "$(ratio "$g" "$a")"
        done
        echo
    done
fi
echo
echo "TPS = pgbench 'tps = ... (without initial connection time)'; bnc = PgBouncer, ptc = Portcullis,"
echo "dir = direct. target (select-only): ptc/dir >= 0.85 and ptc >= pgbouncer."
echo "CPU: utime+stime summed over /proc/PID/task/*/stat (CLK_TCK=$CLK_TCK), read"
echo "before and after each run (after the process has been idle for 0.2 s, so the audit"
echo "writer's last batch counts), divided by pgbench's 'number of transactions actually"
echo "processed'; connection set-up is inside the window. Portcullis threads by name:"
echo "workers = tokio-rt-worker, writer = audit-writer, other = the rest (the main thread)."
echo "Prepared mode: every execution of a prepared statement is its own audit event."
if [[ " $MODES " == *" connect "* ]]; then
    echo "Connect mode: pgbench -C, a new connection per transaction (TPS include reconnection;"
    echo "CPU per transaction is per connection). PgBouncer keeps its server connections, so"
    echo "only it skips PostgreSQL's start-up; the gateway opens an upstream connection each time."
fi
echo "On a machine with few cores pgbench, PostgreSQL and the proxy compete for the same CPUs,"
echo "which penalises both proxies (see benches/README.md)."
