#!/usr/bin/env bash
# The second SQL reader on PostgreSQL's own regression SQL: the share of valid statements
# the gateway understands, of invalid ones it refuses, and the cost per cold statement.
# Fetches src/test/regress/sql from Debian's postgresql-15 source package (adding a
# deb-src entry when run as root), then runs benches/parser.rs optimized.
#   PG_REGRESS_SQL=<dir>   use these .sql files instead
#   PARSER_REFUSED_OUT=<f> write the valid statements the gateway refuses, one per line
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
src="${PG_SOURCE_DIR:-/var/tmp/portcullis-pgsrc}"
if [[ -z "${PG_REGRESS_SQL:-}" ]]; then
  PG_REGRESS_SQL="$(ls -d "$src"/postgresql-*/src/test/regress/sql 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [[ -z "$PG_REGRESS_SQL" || ! -d "$PG_REGRESS_SQL" ]]; then
  mkdir -p "$src"
  if ! apt-cache showsrc postgresql-15 >/dev/null 2>&1 || [[ -z "$(apt-cache showsrc postgresql-15 2>/dev/null)" ]]; then
    [[ $EUID -eq 0 ]] || { echo "parser.sh: add a deb-src entry (or set PG_REGRESS_SQL)" >&2; exit 1; }
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" "$codename" >/etc/apt/sources.list.d/portcullis-src.sources
    apt-get update -q
  fi
  # The newest version whose files the mirror still has (security updates rotate out).
  for v in $(apt-cache showsrc postgresql-15 | sed -n 's/^Version: //p' | sort -rV); do
    (cd "$src" && apt-get source --download-only "postgresql-15=$v" >/dev/null 2>&1) && break
  done
  tarball="$(ls "$src"/postgresql-15_*.orig.tar.* | sort -V | tail -n 1)"
  top="$( (tar tf "$tarball" || true) | head -n 1 | cut -d/ -f1)"
  tar xf "$tarball" -C "$src" "$top/src/test/regress/sql"
  PG_REGRESS_SQL="$src/$top/src/test/regress/sql"
fi
export PG_REGRESS_SQL
echo "== $(date -u +%F) $(nproc) cores, regression SQL from $PG_REGRESS_SQL"
cargo bench --bench parser
