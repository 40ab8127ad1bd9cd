#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora into fuzz/corpus/<target>/ (not committed):
# SQL from the repository's corpus/ (each case body of corpus/sql/*.cases and
# corpus/mask/*.mask), rules from rules/*.rules (whole packs and one rule each), and a
# few hand-made wire messages, push requests and tokens. Safe to run again: files are
# named after their source, so reruns overwrite rather than pile up. libFuzzer adds the
# inputs it finds to the same folders.
set -euo pipefail
cd "$(dirname "$0")"
root=..
out=corpus
mkdir -p "$out"/{pg_frame,pg_session,git_wire,rules_parse,sql_facts,jwt}

# SQL: a case's body is every line after its `===` header up to the next one.
for file in "$root"/corpus/sql/*.cases "$root"/corpus/mask/*.mask; do
  awk -v dir="$out/sql_facts" -v base="$(basename "$file" | tr . -)" '
    function flush() { if (n && body != "") { printf "%s", body > (dir "/" base "-" n); close(dir "/" base "-" n) } body = "" }
    /^===/ { flush(); n++; next }
    n { body = body (body == "" ? "" : "\n") $0 }
    END { flush() }
  ' "$file"
done
cp "$root/corpus/mask/schema.sql" "$out/sql_facts/mask-schema-sql"

# Rules: each pack whole, and each `rule ... { ... }` block on its own.
for file in "$root"/rules/*.rules; do
  base="$(basename "$file" .rules)"
  cp "$file" "$out/rules_parse/pack-$base"
  awk -v dir="$out/rules_parse" -v base="$base" '
    /^rule / { n++; f = dir "/rule-" base "-" n }
    n && f { print > f }
    /^}/ && f { close(f); f = "" }
  ' "$file"
done

# PostgreSQL: one typed message is a tag, an Int32 length (itself and the body) and
# the body. `msg TAG BODY` prints one; BODY is printf-escaped text.
msg() {
  local body len
  body="$(printf '%b' "$2" | od -An -v -tx1 | tr -d ' \n')"
  len=$((${#body} / 2 + 4))
  printf '%s' "$1"
  printf "\\x$(printf %02x $((len >> 24 & 255)))\\x$(printf %02x $((len >> 16 & 255)))"
  printf "\\x$(printf %02x $((len >> 8 & 255)))\\x$(printf %02x $((len & 255)))"
  printf '%b' "$2"
}
{ printf '\x40'; msg Q 'SELECT 1\0'; } >"$out/pg_frame/query"
{ printf '\x40'; msg P 's1\0SELECT $1\0\0\1\0\0\0\x17'; msg B 'p1\0s1\0\0\1\0\1\0\1\0\0\0\0015\0\1\0\1'
  msg D 'Pp1\0'; msg E 'p1\0\0\0\0\0'; msg S ''; } >"$out/pg_frame/extended"
{ printf '\x40'; msg T '\0\1id\0\0\0\x40\0\0\1\0\0\0\x17\0\4\xff\xff\xff\xff\0\0'
  msg D '\0\2\0\0\0\0011\xff\xff\xff\xff'; msg C 'SELECT 1\0'; msg E 'SERROR\0C42601\0Msyntax error\0\0'
  msg S 'client_encoding\0UTF8\0'; msg Z 'I'; } >"$out/pg_frame/server"
{ printf '\x40\0\0\0\x25\0\3\0\0user\0agent\0database\0app\0\0'; } >"$out/pg_frame/startup"
# Session steps: a byte (bit 0: from the server, bit 1: refuse) before each frame.
{ printf '\0'; msg Q 'SELECT 1\0'; printf '\1'; msg T '\0\1a\0\0\0\0\0\0\0\0\0\0\x17\0\4\xff\xff\xff\xff\0\0'
  printf '\1'; msg D '\0\1\0\0\0\0011'; printf '\1'; msg C 'SELECT 1\0'; printf '\1'; msg Z 'I'; } >"$out/pg_session/simple"
{ printf '\2'; msg Q 'DROP TABLE t\0'; printf '\1'; msg E 'SERROR\0C42601\0Msyntax error\0\0'; printf '\1'; msg Z 'I'; } >"$out/pg_session/refused"
{ printf '\0'; msg P 's\0SELECT 1\0\0\0'; printf '\0'; msg B 'p\0s\0\0\0\0\0\0\0'; printf '\0'; msg E 'p\0\0\0\0\0'
  printf '\0'; msg S ''; printf '\1'; msg 1 ''; printf '\1'; msg 2 ''
  printf '\1'; msg T '\0\1a\0\0\0\0\0\0\0\0\0\0\x17\0\4\xff\xff\xff\xff\0\0'; printf '\1'; msg D '\0\1\0\0\0\0011'
  printf '\1'; msg C 'SELECT 1\0'; printf '\1'; msg Z 'I'; } >"$out/pg_session/extended"
{ printf '\0'; msg P 's\0SELECT 1\0\0\0'; printf '\0'; msg D 'Ss\0'; printf '\2'; msg B 'p\0s\0\0\0\0\0\0\0'
  printf '\0'; msg E 'p\0\0\0\0\0'; printf '\0'; msg C 'Ss\0'; printf '\0'; msg S ''; printf '\1'; msg E 'Mx\0\0'
  printf '\1'; msg Z 'E'; } >"$out/pg_session/describe-refuse"

# Git: `pkt TEXT` prints a data pkt-line holding TEXT (printf-escaped); 0000 is a flush.
pkt() {
  local data
  data="$(printf '%b' "$1" | od -An -v -tx1 | tr -d ' \n')"
  printf '%04x' $((${#data} / 2 + 4))
  printf '%b' "$1"
}
zero=0000000000000000000000000000000000000000
a=1111111111111111111111111111111111111111
b=2222222222222222222222222222222222222222
pack='PACK\0\0\0\2\0\0\0\0\x02\x9d\x08\x82\x3b\xd8\xa8\xea\xb5\x10\xad\x6a\xc7\x5c\x82\x3c\xfd\x3e\xd3\x1e'
{ pkt "$zero $a refs/heads/main\0report-status side-band-64k agent=git/2.47\n"; printf 0000; printf '%b' "$pack"; } >"$out/git_wire/create"
{ pkt "$a $b refs/heads/main\0report-status-v2 push-options side-band\n"; pkt "$b $zero refs/heads/old\n"; printf 0000
  pkt "ci.skip\n"; printf 0000; printf '%b' "$pack"; } >"$out/git_wire/options"
{ pkt "shallow $a\n"; pkt "$a $zero refs/tags/v1\0report-status\n"; printf 0000; } >"$out/git_wire/delete-shallow"
printf 0000 >"$out/git_wire/probe"
{ pkt "# service=git-receive-pack\n"; printf 0000; pkt "$a refs/heads/main\0report-status delete-refs side-band-64k push-options agent=git/2.47\n"
  pkt "$b refs/tags/v1\n"; printf 0000; } >"$out/git_wire/advertisement"
# An upstream's report: pkt-lines, and the same inside side-band 1.
{ pkt "unpack ok\n"; pkt "ok refs/heads/main\n"; pkt "ng refs/heads/x hook declined\n"; printf 0000; } >"$out/git_wire/report"
{ pkt "\\0001$(sed 's/\\/\\\\/g' "$out/git_wire/report")"; pkt "\\0002remote: checking\n"; printf 0000; } >"$out/git_wire/report-sideband"

# JWT: the first byte picks the mode (0 a token, 1 header\nclaims, 2 claims over valid
# ones, 3 a JWKS), see src/fuzzing.rs.
printf '\0eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln' >"$out/jwt/token"
printf '\1{"alg":"HS256","kid":"k"}\n{"iss":"https://idp.fuzz","aud":["portcullis"],"sub":"a","exp":4102444800,"groups":["dev"]}' >"$out/jwt/signed"
printf '\2{"groups":{"nested":["x"]},"agent":"cli","nbf":1}' >"$out/jwt/claims"
printf '\3{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA","kid":"k"}]}' >"$out/jwt/jwks"

for dir in "$out"/*/; do echo "seeds: $(ls "$dir" | wc -l) in $dir"; done
