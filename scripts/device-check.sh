#!/usr/bin/env bash
# Issue 19, item 6, in one device call (~8 minutes of the 15 a session may get): on the 16-core
# GPU machine, two agents on loopback check that `vgrid peers` shows the real GPU and that a
# `vrun --gpus 1` command sees it (torch when the machine has it, else nvidia-smi); then the
# benches whose 16-core figures the issue names. Prepare here, then call the device tool:
#   npm run build && bash ../shared/tools/device-pack.sh
#   run: bash .devbundle/device-run.sh bash scripts/device-check.sh   (carry [".devbundle"], timeout_s 600)
# What it prints, and the benches' JSON, come back under $OUT. Runs here too (no GPU: it says
# so); BENCHES=0 leaves the benches out.
set -u
OUT=${OUT:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VGRID=$ROOT/bin/vgrid.js VRUN=$ROOT/bin/vrun.js
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device-check.txt") 2>&1
step () { echo; echo "== $* ($(date -u +%T))"; }

step machine
echo "cores $(nproc), node $(node --version)"; free -g | head -2
nvidia-smi -L || echo "no nvidia-smi here"
iso=()
if ! command -v bwrap >/dev/null; then echo "no bwrap: the agents run their guests with --isolation none"; iso=(--isolation none); fi

A=$(mktemp -d) B=$(mktemp -d) WS=$(mktemp -d)
stop () { for h in "$A" "$B"; do VGRID_HOME=$h timeout 20 "$VGRID" agent stop >/dev/null 2>&1; done; }
trap stop EXIT
trap 'exit 130' INT TERM
VGRID_HOME=$A "$VGRID" agent --listen /ip4/127.0.0.1/tcp/0 --http off "${iso[@]}" > "$A/agent.out" 2>&1 &
for _ in $(seq 100); do VGRID_HOME=$A "$VGRID" join-token > "$A/token" 2>/dev/null && break; sleep 0.2; done
VGRID_HOME=$B VGRID_JOIN_TOKEN=$(cat "$A/token") "$VGRID" agent --listen /ip4/127.0.0.1/tcp/0 --http off "${iso[@]}" > "$B/agent.out" 2>&1 &
for _ in $(seq 150); do [ "$(VGRID_HOME=$A "$VGRID" peers --json 2>/dev/null | grep -o '"peer"' | wc -l)" -ge 2 ] && break; sleep 0.2; done

step vgrid peers
VGRID_HOME=$A "$VGRID" peers
VGRID_HOME=$A "$VGRID" peers --json > "$OUT/peers.json"

step "vrun --gpus 1: the command sees its GPU"
cd "$WS"
if python3 -c 'import torch' 2>/dev/null; then
  VGRID_HOME=$A timeout 180 "$VRUN" --gpus 1 python3 -c 'import torch; print("cuda", torch.cuda.is_available(), torch.cuda.device_count(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
else
  echo "no torch for python3 here: nvidia-smi instead"
  VGRID_HOME=$A timeout 180 "$VRUN" --gpus 1 sh -c 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"; nvidia-smi -L'
fi
echo "exit $?"
cd "$ROOT"
stop
tail -n 5 "$A/agent.out" "$B/agent.out"

rm -rf "$A" "$B" "$WS"
[ "${BENCHES:-1}" = 0 ] && exit 0
step "benches: sync placement tasks grid-vrun"
timeout 420 node "$ROOT/dist/bench/run.js" sync placement tasks grid-vrun
echo "bench exit $?"
cp "$ROOT"/bench/results/*.json "$OUT/" 2>/dev/null
