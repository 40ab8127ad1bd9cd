#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS, one after another (they would only
# share the cores otherwise): `fuzz/run.sh 25` is CI's step, `fuzz/run.sh 300` the longer
# run of docs/fuzzing.md. Name targets after SECONDS to run only those.
#
# A crash (panic, overflow, timeout, out of memory) fails the script; libFuzzer saves the
# input under fuzz/artifacts/<target>/ and prints how to reproduce it. New coverage is kept
# in $FUZZ_CORPUS_DIR (under /var/tmp, like the build), so runs on one machine build on
# each other; fuzz/seeds.sh seeds it from the repository.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/portcullis-fuzz-target}"
corpus_dir="${FUZZ_CORPUS_DIR:-/var/tmp/portcullis-fuzz-corpus}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the $toolchain toolchain"
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# ASan instruments our Rust code only: the C of libpg_query (cc-rs) and libduckdb.so are
# linked as they are, which ASan allows. Many codegen units: a cold build of the whole
# dependency tree in optimised, instrumented form is most of this step's time.
build=(--target-dir "$CARGO_TARGET_DIR" --codegen-units 16)
started=$SECONDS
cargo "+$toolchain" fuzz build "${build[@]}"
echo "fuzz: built in $((SECONDS - started)) s"

./seeds.sh >/dev/null
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo "+$toolchain" fuzz list)
status=0
for target in "${targets[@]}"; do
  mkdir -p "$corpus_dir/$target"
  log="$(mktemp)"
  echo "== fuzz $target (${seconds} s)"
  # -timeout: one input running 10 s is a hang. -rss_limit_mb: 2 GiB is a leak or an
  # unbounded allocation. The persistent corpus comes first: new inputs go there.
  if ! cargo "+$toolchain" fuzz run "${build[@]}" "$target" "$corpus_dir/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    status=1
    tail -n 60 "$log"
    echo "fuzz: $target crashed; the input is in fuzz/artifacts/$target/" >&2
  fi
  # The totals libFuzzer prints at the end.
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)|^Done ' "$log" || true
  rm -f "$log"
done
exit "$status"
