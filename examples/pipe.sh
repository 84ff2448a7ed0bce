#!/bin/sh
# vrun in a pipeline: stdin goes to the remote command up to EOF, its stdout comes back
# in order, and the exit code is the remote one.
set -eu
seq 1 10000 | vrun sort -rn | head -n 3
if vrun sh -c 'exit 3'; then echo "unexpected success"; else echo "remote exit code: $?"; fi
