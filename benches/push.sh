#!/usr/bin/env bash
# git push of a ~100 MB repository: directly to a bare repository vs. through Portcullis,
# in one run, interleaved, with the time ratio against the SPEC target (<= 1.5x direct).
#
# Builds a test repository with `git fast-import` (COMMITS commits, each adding one
# source-like text file of FILE_KB KiB; the default gives a pack of about 100 MB), then
# for each round pushes it to a fresh empty bare repository twice: with `git push
# file://...` (git's own local transport: pack-objects into receive-pack) and with
# `git push http://...` through `portcullis serve`, whose [[git]] upstream is a local
# bare repository. The gateway indexes the whole pack, walks every new commit, scans
# every new blob for secrets and judges the rules before applying the push, once with
# `apply = "receive-pack"` (the default: the indexed pack is linked into the upstream and
# its receive-pack, sent an empty pack, checks connectivity, runs hooks and moves the
# refs) and once with `apply = "direct"` (the gateway moves its indexed pack in and
# updates the refs itself).
#
# Environment:
#   COMMITS         commits in the test repository (default 3000)
#   FILE_KB         KiB of new text per commit (default 80)
#   ROUNDS          measured rounds (default 3); the median is reported
#   PORTCULLIS_BIN  use this binary instead of `cargo build --release`
#   CARGO_TARGET_DIR  (default /var/tmp/portcullis-target)
#   PORTCULLIS_LOG  the gateway's log filter (default warn; portcullis=debug shows where a
#                   push's time goes); the log is $TMP/gateway.log
#   KEEP_TMP=1      keep the temp dir

set -euo pipefail

COMMITS="${COMMITS:-3000}"
FILE_KB="${FILE_KB:-80}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
ISSUER="https://idp.bench.invalid/"

log() { printf '[push.sh] %s\n' "$*" >&2; }
die() {
    printf '[push.sh] ERROR: %s\n' "$*" >&2
    exit 1
}

for v in COMMITS FILE_KB ROUNDS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
command -v git >/dev/null || die "git is not installed"
command -v python3 >/dev/null || die "python3 is needed to generate the test repository"

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
git_bench_tmp push-bench
quiet_git
portcullis_binary

# --- the test repository ---------------------------------------------------------------
log "generating $COMMITS commits of $FILE_KB KiB each"
git init -q -b main "$TMP/src"
python3 - "$COMMITS" "$FILE_KB" >"$TMP/stream" <<'PY'
import random, sys
commits, kb = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(42)
words = ["alpha", "beta", "gamma", "delta", "value", "index", "count", "result", "buffer",
         "parse", "render", "client", "server", "module", "handle", "config", "layout"]
out = sys.stdout.buffer
for i in range(commits):
    lines, size = [], 0
    while size < kb * 1024:
        w = rng.sample(words, 3)
        line = "let %s_%d = %s(%s, 0x%016x); // %s\n" % (
            w[0], rng.randrange(10**6), w[1], w[2], rng.getrandbits(64), rng.getrandbits(48))
        lines.append(line)
        size += len(line)
    data = "".join(lines).encode()
    msg = b"change %d\n" % i
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer Bench <bench@example.com> %d +0000\n" % (1700000000 + i))
    out.write(b"data %d\n%s" % (len(msg), msg))
    out.write(b"M 100644 inline src/m%03d/f%05d.rs\n" % (i % 100, i))
    out.write(b"data %d\n%s\n" % (len(data), data))
PY
git -C "$TMP/src" fast-import --quiet <"$TMP/stream"
rm "$TMP/stream"
git -C "$TMP/src" repack -adq
PACK_MB=$(du -sm "$TMP/src/.git/objects/pack" | cut -f1)
log "test repository: $COMMITS commits, pack ${PACK_MB} MB"

# --- the gateway -------------------------------------------------------------------------
"$BIN" token --generate-key "$TMP/key.pem" 2>/dev/null
"$BIN" token --jwks "$TMP/key.pem" >"$TMP/jwks.json"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/portcullis.toml" <<EOF
[server]
git_listen = "127.0.0.1:$PORT"

[identity]
issuer = "$ISSUER"
audience = "portcullis"
jwks_path = "$TMP/jwks.json"

[[git]]
name = "bench"
upstream = "$TMP/via-gateway.git"

[[git]]
name = "bench-direct"
upstream = "$TMP/via-direct.git"
apply = "direct"
EOF
git init -q --bare "$TMP/via-gateway.git"
git init -q --bare "$TMP/via-direct.git"
PORTCULLIS_LOG="${PORTCULLIS_LOG:-warn}" "$BIN" serve --config "$TMP/portcullis.toml" 2>"$TMP/gateway.log" &
GATEWAY_PID=$!
for _ in $(seq 300); do
    (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
TOKEN="$("$BIN" token --key "$TMP/key.pem" --sub bench --issuer "$ISSUER" --audience portcullis --ttl 1h)"
URL_BASE="http://bench:$TOKEN@127.0.0.1:$PORT/git"

now() { date +%s.%N; }
# The branch is not protected, so the push is judged by every rule and allowed.
push_direct() {
    rm -rf "$TMP/direct.git" && git init -q --bare "$TMP/direct.git"
    local t0 t1
    t0=$(now)
    git -C "$TMP/src" push -q "file://$TMP/direct.git" main:refs/heads/bench
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
push_gateway() { # repository name under the gateway, its bare upstream
    local name="$1" bare="$2" t0 t1
    rm -rf "$bare" && git init -q --bare "$bare"
    t0=$(now)
    git -C "$TMP/src" push -q "$URL_BASE/$name.git" main:refs/heads/bench ||
        die "push through the gateway failed; log: $(tail -5 "$TMP/gateway.log")"
    t1=$(now)
    [[ "$(git -C "$bare" rev-parse bench)" == "$(git -C "$TMP/src" rev-parse main)" ]] ||
        die "the push through the gateway did not arrive"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

log "warm-up"
push_direct >/dev/null
push_gateway bench "$TMP/via-gateway.git" >/dev/null
push_gateway bench-direct "$TMP/via-direct.git" >/dev/null
DIRECT=() GATEWAY=() APPLIED=()
for r in $(seq "$ROUNDS"); do
    DIRECT+=("$(push_direct)")
    GATEWAY+=("$(push_gateway bench "$TMP/via-gateway.git")")
    APPLIED+=("$(push_gateway bench-direct "$TMP/via-direct.git")")
    log "round $r: direct ${DIRECT[-1]} s, portcullis ${GATEWAY[-1]} s, portcullis apply=direct ${APPLIED[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
D=$(median "${DIRECT[@]}")
G=$(median "${GATEWAY[@]}")
A=$(median "${APPLIED[@]}")
RATIO=$(awk -v g="$G" -v d="$D" 'BEGIN { printf "%.2f", g / d }')
RATIO_A=$(awk -v g="$A" -v d="$D" 'BEGIN { printf "%.2f", g / d }')
printf '\n%s commits, pack %s MB, %s rounds (median)\n' "$COMMITS" "$PACK_MB" "$ROUNDS"
printf '| push | seconds | ratio |\n|---|---|---|\n'
printf '| direct (file://) | %.2f | 1.00 |\n' "$D"
printf '| through Portcullis (http), apply = receive-pack | %.2f | %s |\n' "$G" "$RATIO"
printf '| through Portcullis (http), apply = direct | %.2f | %s |\n' "$A" "$RATIO_A"
for r in "$RATIO" "$RATIO_A"; do
    printf 'target <= 1.5x direct (%s): %s\n' "$r" "$(awk -v r="$r" 'BEGIN { print (r <= 1.5 ? "met" : "NOT met") }')"
done
