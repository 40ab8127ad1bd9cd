# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): ports, the binary, git's environment.
# Each script defines its own log() and die() first, naming itself.

# A loopback port nothing listens on now.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || {
            echo "$port"
            return
        }
    done
}

# Waits up to 30 s for something to listen on port $1.
wait_port() {
    local i
    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on $1"
}

# Sets BIN: $PORTCULLIS_BIN, or a release build of the repository ($CARGO_TARGET_DIR).
portcullis_binary() {
    if [[ -n "${PORTCULLIS_BIN:-}" ]]; then
        BIN="$PORTCULLIS_BIN"
    else
        log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$(dirname "${BASH_SOURCE[0]}")/.." && cargo build --release --quiet --bin portcullis) ||
            die "cargo build failed"
        BIN="$CARGO_TARGET_DIR/release/portcullis"
    fi
    [[ -x "$BIN" ]] || die "$BIN is not an executable"
}

# git as the benches want it: no user or system config, no prompts, a fixed author.
quiet_git() {
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
    export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.com
    export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.com
}

# For the git benches: TMP, a fresh folder under /var/tmp named after $1, removed on exit
# (kept with KEEP_TMP=1) after the gateway whose pid is in GATEWAY_PID is stopped.
git_bench_tmp() {
    TMP="$(mktemp -d "/var/tmp/portcullis-$1.XXXXXX")"
    GATEWAY_PID=""
    trap git_bench_cleanup EXIT
}
git_bench_cleanup() {
    [[ -n "$GATEWAY_PID" ]] && kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null
    if [[ "${KEEP_TMP:-}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

# A throw-away PostgreSQL for the benches that need only one (mask.sh, instructions.sh):
# initdb in $TMP/pgdata (trust, `fsync = off`), listening on 127.0.0.1 on a free port and
# on a socket in $TMP. Needs PG_BIN, TMP and as_pg(); sets PG_PORT and PG_STARTED=1.
start_scratch_postgres() {
    PG_PORT="$(free_port)"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$TMP"
    as_pg "$PG_BIN/initdb" -D "$TMP/pgdata" -U postgres --auth=trust -E UTF8 >"$TMP/initdb.log" 2>&1 ||
        die "initdb failed"
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\n" \
        "$PG_PORT" "$TMP" >>"$TMP/pgdata/postgresql.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/postgres.log" -w start >/dev/null ||
        die "pg_ctl start failed"
    PG_STARTED=1
}

# The EXIT trap of those benches: stops the gateway in GW_PID and the scratch PostgreSQL,
# shows the last lines of the logs named in $@ when the script failed, removes TMP.
stop_scratch() {
    local rc=$?
    set +e
    [[ -n "$GW_PID" ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    ((PG_STARTED)) && as_pg "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -m fast -w stop >/dev/null 2>&1
    if ((rc != 0)); then tail -n 20 "$@" "$TMP/postgres.log" >&2 2>/dev/null; fi
    [[ "${KEEP_TMP:-0}" == 1 ]] && log "kept $TMP" || rm -rf "$TMP"
    exit "$rc"
}
