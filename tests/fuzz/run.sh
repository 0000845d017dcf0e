#!/bin/sh
# Fuzz every target of a fuzz build for SECONDS each, starting from its
# seed corpus tests/fuzz/corpus/<name>/ (left untouched: new inputs go to
# tests/fuzz/artifacts/<name>/corpus/), crashes written to
# tests/fuzz/artifacts/<name>/. Exit 1 when any target found a problem.
#   sh tests/fuzz/run.sh BUILD_DIR SECONDS
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
fi
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
status=0
found=0
for bin in "$build"/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	found=1
	name=$(basename "$bin")
	short=${name#fuzz_}
	corpus="$here/corpus/$short"
	artifacts="$here/artifacts/$short"
	mkdir -p "$corpus" "$artifacts/corpus"
	echo "== $name: ${seconds}s from $corpus"
	if ! "$bin" -max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$artifacts/" "$artifacts/corpus" "$corpus"; then
		echo "== $name FAILED: see $artifacts/" >&2
		status=1
	fi
done
if [ $found -eq 0 ]; then
	echo "$0: no fuzz_* binaries in $build" >&2
	exit 1
fi
exit $status
