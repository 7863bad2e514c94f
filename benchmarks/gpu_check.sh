#!/usr/bin/env bash
# GPU check of the DrQ(ε)-Rainbow update and the full loop (issue 14), in under 8 minutes on a CUDA machine:
#   1. benchmarks/update_speed.py on cuda, compiled: ms per update for base and PLASTIC, float32 and bf16, and the
#      same-run floor (device memory bandwidth, conv peak);
#   2. the same for base and PLASTIC (float32) with CUDA graphs (`compile_mode = "reduce-overhead"`);
#   3. the full loop: `plastic train` on atari:Pong, PLASTIC†, 5k agent steps (RR 2), its env steps/s.
# Without CUDA it says so and exits with status 1 before doing anything.
#
#   bash benchmarks/gpu_check.sh            (from the repository root; PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device visible to torch ($PYTHON); run it on a machine with an NVIDIA GPU" >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$HOME/.cache/plastic-rl/inductor}

echo "== update ms (batch 32, Atari shapes, compiled)"
timeout 200 "$PYTHON" benchmarks/update_speed.py --device cuda --compile on --rounds 3 --updates 20 \
    --presets base,plastic,bf16_base,bf16_plastic | tail -n 8

echo "== update ms with CUDA graphs (compile_mode = reduce-overhead)"
timeout 120 "$PYTHON" benchmarks/update_speed.py --device cuda --compile on --compile-mode reduce-overhead \
    --rounds 3 --updates 20 --presets base,plastic | tail -n 4

echo "== full loop: atari:Pong, PLASTIC†, 5,000 agent steps"
run_dir=$(mktemp -d)
trap 'rm -rf "$run_dir"' EXIT
timeout 150 "$PYTHON" -m plastic train --env atari:Pong --preset plastic-dagger --steps 5000 --device cuda \
    --eval-episodes 1 --no-progress --run-dir "$run_dir/run" --set compile=on --set eval_envs=1 | tail -n 2
"$PYTHON" -c "import json, sys; r = json.load(open(sys.argv[1])); print('env steps/s:', r['env_steps_per_s'])" \
    "$run_dir/run/result.json"
