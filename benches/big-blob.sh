#!/usr/bin/env bash
# Peak RSS and time of `portcullis serve` for one push of a single large text file
# (issue 14, item 7: blobs over the in-memory limit are scanned in chunks).
#
# Builds a repository with one commit adding a MIB MiB file of 64-byte source-like lines,
# starts the gateway under `/usr/bin/time -v` in front of a local bare upstream (built-in
# rules), pushes the file through it once, stops the gateway and prints the push's wall
# time, the verdict and the gateway's peak RSS. A file over 50 MiB is refused by
# git.large-file; the gateway indexes, walks and scans it all the same before judging.
#
# Environment:
#   MIB             size of the file in MiB (default 200)
#   PORTCULLIS_BIN  the binary to measure (default: cargo build --release)
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   KEEP_TMP=1      keep the temp dir

set -euo pipefail

MIB="${MIB:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
ISSUER="https://idp.bench.invalid/"
log() { printf '[big-blob.sh] %s\n' "$*" >&2; }
die() {
    printf '[big-blob.sh] ERROR: %s\n' "$*" >&2
    exit 1
}
[[ "$MIB" =~ ^[1-9][0-9]*$ ]] || die "MIB must be a positive integer (got '$MIB')"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for the peak RSS"

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
git_bench_tmp big-blob
quiet_git
portcullis_binary

log "a $MIB MiB file"
git init -q -b main "$TMP/src"
mkdir -p "$TMP/src/data"
# 64-byte lines: `seq -f` prints integers exactly up to 6 digits, so the number wraps.
for _ in $(seq $(((MIB * 16384 + 999999) / 1000000))); do
    seq -f 'fn item_%010g() -> u64 { 7 } // filler text, nothing else.' 1 1000000
done | head -c $((MIB * 1024 * 1024)) >"$TMP/src/data/big.txt" || true
git -C "$TMP/src" add data/big.txt
git -C "$TMP/src" commit -qm "large file"

"$BIN" token --generate-key "$TMP/key.pem" 2>/dev/null
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/portcullis.toml" <<TOML
[server]
git_listen = "127.0.0.1:$PORT"

[identity]
issuer = "$ISSUER"
audience = "portcullis"
jwks_path = "$TMP/jwks.json"

[[git]]
name = "bench"
upstream = "$TMP/upstream.git"
TOML
git init -q --bare "$TMP/upstream.git"
/usr/bin/time -v -o "$TMP/time.txt" "$BIN" serve --config "$TMP/portcullis.toml" 2>"$TMP/gateway.log" &
GATEWAY_PID=$!
for _ in $(seq 300); do
    (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub bench --issuer "$ISSUER" --audience portcullis --ttl 1h)"

t0=$(date +%s.%N)
if git -C "$TMP/src" push -q "http://bench:$TOKEN@127.0.0.1:$PORT/git/bench.git" main:refs/heads/big 2>"$TMP/push.err"; then
    VERDICT="allowed"
else
    VERDICT="refused: $(grep -o 'denied by [a-z.-]*' "$TMP/push.err" | sort -u | tr '\n' ' ')"
fi
t1=$(date +%s.%N)
# `time` reports once the gateway exits; SIGINT is its orderly shutdown, sent to the
# gateway itself (GNU time ignores SIGINT while it waits).
kill -INT "$(ps -o pid= --ppid "$GATEWAY_PID")"
wait "$GATEWAY_PID" || true
GATEWAY_PID=""
RSS_KB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/time.txt")
printf '%s MiB file: push %.2f s, %s; gateway peak RSS %d MiB\n' \
    "$MIB" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$VERDICT" "$((RSS_KB / 1024))"
