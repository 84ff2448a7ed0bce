#!/bin/sh
# What GNU parallel does on one machine, on the grid: one vrun per input, in the
# background, then wait for all. Each square is computed on whichever member has a free
# core; the sum is printed here.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for i in 1 2 3 4 5 6; do
  vrun sh -c "echo \$(( $i * $i ))" > "$dir/$i" &
done
wait
cat "$dir"/* | awk '{ s += $1 } END { print "sum of squares:", s }'
