#!/bin/sh
# Runs a command on every member of the grid, one after the other, each output prefixed
# with the member's host: `./examples/each-member.sh uname -r`.
set -eu
[ $# -gt 0 ] || set -- uname -a
for peer in $(vgrid peers --json | node -e '
  let s = ""; process.stdin.on("data", (d) => { s += d }).on("end", () => {
    for (const p of JSON.parse(s).peers) console.log(p.peer)
  })'); do
  vrun --on "$peer" "$@" | sed "s/^/$(echo "$peer" | cut -c1-16): /"
done
