#!/bin/sh
# Every vrun and vbatch line of the Velda docs our seeds quote (velda-overview.md,
# velda-dags-and-workflows.md, velda-ml-workflow-blog.md), as they are written: the scripts
# in velda/ hold them verbatim. This copies them to a scratch workspace with stand-ins for the
# docs' Python scripts and two .csv files, runs velda/lines.sh a line at a time, waits for
# every task each line submitted (all must succeed), and prints where the `-P gpu-a100`
# training ran.
#
# The grid needs a member with 8 A100 GPUs (-P gpu-a100-8) and `python` on its members.
# Shapes of more cores than the grid's largest member lends (-P cpu-16 on a 2-core machine)
# are shrunk, said on stderr, to half of that member: a pipeline step and the vrun inside it
# (process_all.sh) then fit on it together, as they do on the 16-core machines the docs
# assume. Nothing else is changed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ws=$(mktemp -d)
out=$(mktemp) # outside the workspace, which each line syncs
trap 'rm -rf "$ws" "$out"' EXIT
cp "$here"/velda/*.sh "$ws"/
cd "$ws"

# The docs' Python scripts: each says what it is, its arguments, where it ran and its GPUs.
for f in train.py worker.py my_script.py my_long_running_script.py process_data.py train_model.py \
  evaluate_model.py task1.py task2.py aggregate.py process_file.py process.py prepare.py evaluate.py \
  step1.py step2.py step3.py run_inference.py evaluate_inference.py; do
  cat > "$f" <<'PY'
#!/usr/bin/env python3
import os, sys
print(' '.join([os.path.basename(sys.argv[0]), *sys.argv[1:], 'on', os.environ.get('VGRID_PEER', '?'), 'gpus=' + os.environ.get('CUDA_VISIBLE_DEVICES', '')]))
PY
done
chmod +x run_inference.py evaluate_inference.py
for d in a b; do echo "x,y" > "$d.csv"; done

cores=$(vgrid peers --json | node -e '
  let s = ""; process.stdin.on("data", (d) => { s += d }).on("end", () => {
    console.log(Math.max(...JSON.parse(s).peers.map((p) => p.offer.cpus)))
  })')
half=$((cores / 2 > 0 ? cores / 2 : 1))
for n in 16 8 4 2; do
  if [ "$n" -gt "$cores" ]; then
    echo "velda-seeds: the largest member lends $cores cores: -P cpu-$n runs as -P cpu-$half" >&2
    sed -i "s/-P cpu-$n /-P cpu-$half /g" ./*.sh
  fi
done

tasks=0
while IFS= read -r line; do
  case "$line" in '' | '#'*) continue ;; esac
  eval "$line" < /dev/null > "$out"
  # vbatch prints the ids of the tasks it submitted; anything else is the commands' output
  grep -Ev '^[0-9a-f]{16}$' "$out" || true
  for id in $(grep -E '^[0-9a-f]{16}$' "$out" || true); do
    vgrid task wait "$id" || { vgrid task show "$id" >&2; vgrid task log "$id" >&2; exit 1; }
    tasks=$((tasks + 1))
  done
done < lines.sh
echo "$tasks tasks succeeded"
echo "training: $(vgrid task log training)"
