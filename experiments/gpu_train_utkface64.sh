#!/usr/bin/env bash
# Trains the shipped model (experiments/configs/train_utkface64.py) on one GPU in a single
# bounded command, exports it, then measures the train step (float32 vs bfloat16) and the
# full-size (1024) PULSE search step (precision modes) on the same machine.
#
# This is the command that made pulse_jax/checkpoints/utkface64 on a lent GPU, whose sessions are short:
# training stops after TRAIN_SECONDS of wall clock (compilation included), checkpoints,
# and exports the EMA generator with its Gaussian fit. Rerunning with the same WORK resumes.
#
#   cp path/to/utkface64.zip .data/   # an ignored folder
#   OUT=runs/gpu_session TRAIN_SECONDS=300 bash experiments/gpu_train_utkface64.sh
#
# Outputs in $OUT: env.txt, train.log, generator/{arrays.npz,manifest.json},
# train_outputs.tar (metrics.jsonl, sample grids, config.json), train_bench.txt,
# search_bench.txt. Python packages missing on the machine can be put in .whl/ as wheels.
set -uo pipefail

OUT=${OUT:-runs/gpu_session}
PY=${PY:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
DATA=${DATA:-.data/utkface64.zip}
WORK=${WORK:-/tmp/train_utkface64}
FIT_SAMPLES=${FIT_SAMPLES:-1000000}
TRAIN_BENCH_ARGS=${TRAIN_BENCH_ARGS:---steps=20}
SEARCH_BENCH_ARGS=${SEARCH_BENCH_ARGS:---resolution=1024 --faces=1 --restarts=8 --steps=5}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-75}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$OUT/env.txt"

echo "== train ($TRAIN_SECONDS s budget)"
timeout $((TRAIN_SECONDS + 240)) "$PY" experiments/train.py \
  --config=experiments/configs/train_utkface64.py --workdir="$WORK" \
  --config.data.path="$DATA" --config.max_seconds="$TRAIN_SECONDS" --config.progress=False \
  --config.log_every=200 --config.checkpoint_every=5000 --config.sample_every=2500 \
  --config.export.fit_samples="$FIT_SAMPLES" --alsologtostderr 2>&1 | tee "$OUT/train.log"
mkdir -p "$OUT/generator"
cp "$WORK"/generator/arrays.npz "$WORK"/generator/manifest.json "$OUT/generator/"
# shellcheck disable=SC2046
(cd "$WORK" && tar -cf "$OUT/train_outputs.tar" $(ls -d metrics.jsonl samples config.json 2>/dev/null))

echo "== train step: float32 vs bfloat16"
# shellcheck disable=SC2086
timeout "$BENCH_TIMEOUT" "$PY" benchmarks/train_bench.py \
  --train_config=experiments/configs/train_utkface64.py --dtypes=float32,bfloat16 \
  $TRAIN_BENCH_ARGS 2>&1 | tee "$OUT/train_bench.txt"

echo "== search step: precision default vs highest"
for precision in default highest; do
  # shellcheck disable=SC2086
  timeout "$BENCH_TIMEOUT" "$PY" benchmarks/search_bench.py $SEARCH_BENCH_ARGS \
    --precision=$precision 2>&1 | tee -a "$OUT/search_bench.txt"
done
date -u | tee -a "$OUT/search_bench.txt"
