#!/usr/bin/env bash
# Train SuRGe on one GPU in two stages -- L1 pre-training, then the adversarial stage (WGAN-GP + JS
# + GW, initialised from stage 1) -- evaluate both, and leave weights, scores and logs in $OUT.
# Each stage runs for at most a wall-time budget (train.max_minutes), so the whole script fits one
# device call. Two modes (SURGE_MODE):
#   paper  configs/paper-psnr.toml, configs/paper-gan.toml: the paper configuration on bicubic LR,
#          run for the time budget (no step count); evaluated on Set5 and Set14.
#   real   configs/gpu-real-psnr.toml, configs/gpu-real-gan.toml: surge-x4-real's recipe (real-world
#          degradations, issue 13) on a paper-size generator from random weights, cosine schedule
#          over the configs' step counts; evaluated on clean Set5/Set14 and on bench-v1 of them
#          (packed as Set5-bench-v1, Set14-bench-v1: see below).
#
# Made for the project's `device` tool: one H200, 15 minutes of device time per session (machine
# start and transfers included), at most 10 minutes per command, 64 MiB carried, at most 8 flat
# files back from $OUT. The device image has torch+CUDA, safetensors, scikit-image, tqdm and
# Pillow but not POT, which travels as a wheel. Prepare here after every merge, in the repo root:
# `.venv/bin/python scripts/device_prepare.py [--bench-v1]` runs these steps: the wheel
# first, then a pack sized to what the tree and the wheel leave of 64 MiB (scripts/device_budget.py,
# 0.5 MiB margin), training images left out from the end of BSD200 where the full pack does not fit:
#
#   mkdir -p .whl && .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 -d .whl POT==0.9.6.post1
#   B=$(.venv/bin/python scripts/device_budget.py --carry .whl --left)
#   .venv/bin/python scripts/pack_data.py --out .pack --budget-mib "$B" --fit   # T91+BSD200, Set5+Set14, ~45 s
#   .venv/bin/python scripts/device_budget.py --carry .pack .whl     # the call's table; exit 1 if over
#
# Measured 2026-12-04 (tree 19.6 MiB tracked, wheel 1.46 MiB): the full pack is 43.4 MiB and does not
# fit (64.4 MiB in all); at B = 42.41 the pack is 42.35 MiB with T91 and 194 of BSD200's 200 images
# (manifest.json "left_out" lists the other 6), 63.43 MiB carried. Every tracked byte added later
# (e.g. bundled weights) comes out of the pack: rerun the three commands after a merge.
#
# For SURGE_MODE=real, pack bench-v1's exact LR files too (degrading on the device could differ
# where its Pillow links another libjpeg); the benchmark sets are always packed whole, so the
# extra 1.4 MiB comes out of BSD200:
#
#   .venv/bin/surge degrade --sets Set5 Set14 -o .bench-v1
#   .venv/bin/python scripts/pack_data.py --out .pack --budget-mib "$B" --fit --bench ../shared/datasets/benchmark/Set5 \
#       ../shared/datasets/benchmark/Set14 Set5-bench-v1=.bench-v1/Set5 Set14-bench-v1=.bench-v1/Set14
#
# (.pack/ and .whl/ are git-ignored; POT's own needs, numpy and scipy, are on the image. POT 0.9.6.post1,
# not 0.9.7: 0.9.7's wheel is 33 MB, a 174 MB bsp extension that `import ot` loads, and would not fit
# beside the pack in 64 MiB; 0.9.6.post1's is 1.5 MB and meets pyproject's POT>=0.9.4.) Then the
# device tool's `run` call:
#
#   command:   bash scripts/gpu_train.sh        (or: SURGE_MODE=real bash scripts/gpu_train.sh)
#   carry:     [".pack", ".whl"]
#   timeout_s: 600
#
# Default budgets: stage 1 4 min; stage 2 at most 3.5 min, cut so that the whole script ends within
# 9 min (its evaluation included), inside the 10-minute command limit. Outputs in $OUT (flat, 7 files;
# NAME is surge-x4-gpu in paper mode, surge-x4-gpu-real in real mode):
#   NAME.safetensors                stage 2 (GAN) weights at the end of its budget
#   NAME-psnr.safetensors           stage 1 (PSNR) weights at the end of its budget (final, not selected)
#   eval-gan.json, eval-psnr.json   `surge eval` on the packed sets (MATLAB protocol, fp32)
#   log-gan.csv, log-psnr.csv       the trainer's per-step logs (losses, weights, validation)
#   gpu_train.log                   everything this script printed (environment, training, tables)
# Stage 1's files are written before stage 2 starts: a call cut off at its limit still returns them.
#
# Settings (environment variables):
#   OUT                     output folder (required; the device tool sets it)
#   SURGE_MODE=paper        paper | real (above)
#   SURGE_PACK=.pack        packed data (scripts/pack_data.py layout: train/*/, benchmark/<Set>/)
#   SURGE_PYTHON=python3    interpreter with torch (the device image's python3)
#   SURGE_PSNR_MINUTES=4  SURGE_GAN_MINUTES=3.5  SURGE_DEADLINE_MINUTES=9
#   SURGE_STEPS             train.steps of each stage; paper mode: 1000000 (the time budget ends a
#                           stage first); real mode: the configs' (their cosine schedules need them)
#   SURGE_PRECISION=auto    train.precision;  SURGE_WORKERS=12  data loader processes (16 cores;
#                           0 when /dev/shm has under 1 GiB free, where worker batches would not fit)
#   SURGE_BATCH, SURGE_HR_SIZE   override data.batch_size / data.hr_size (default: the configs', 16 / 256)
#   SURGE_EVAL_SETS         paper: "Set5 Set14"; real: "Set5 Set14 Set5-bench-v1 Set14-bench-v1"
#   SURGE_RUNS=<new temp dir>    where the run folders (checkpoints) go; not returned
#   SURGE_SITE=/tmp/surge-site   where wheels from .whl/ are installed when a module is missing
#   SURGE_GPU_TINY=1        smoke test on CPU: surge-tiny generator, tiny critic, HR 32 (real: 64), batch 3,
#                           SURGE_STEPS=2 per stage (tests/test_gpu_script.py)
# Exit status: 0 done; 3 missing data, module or GPU; 4 no time left for stage 2; otherwise the
# failing command's status.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

: "${OUT:?set OUT to the output folder (the device tool sets it)}"
MODE=${SURGE_MODE:-paper}
case $MODE in
    paper) PSNR_CONFIG=configs/paper-psnr.toml GAN_CONFIG=configs/paper-gan.toml NAME=surge-x4-gpu
           DEFAULT_SETS="Set5 Set14" DEFAULT_STEPS=1000000 ;;
    real)  PSNR_CONFIG=configs/gpu-real-psnr.toml GAN_CONFIG=configs/gpu-real-gan.toml NAME=surge-x4-gpu-real
           DEFAULT_SETS="Set5 Set14 Set5-bench-v1 Set14-bench-v1" DEFAULT_STEPS= ;;
    *) echo "gpu_train: error: SURGE_MODE=$MODE: must be paper or real" >&2; exit 3 ;;
esac
PY=${SURGE_PYTHON:-python3}
PACK=$(cd "${SURGE_PACK:-.pack}" 2>/dev/null && pwd) || { echo "gpu_train: error: ${SURGE_PACK:-.pack}: packed data not found (run scripts/pack_data.py --out .pack, and carry it)" >&2; exit 3; }
TINY=${SURGE_GPU_TINY:-0}
PSNR_MINUTES=${SURGE_PSNR_MINUTES:-4}
GAN_MINUTES=${SURGE_GAN_MINUTES:-3.5}
DEADLINE_MINUTES=${SURGE_DEADLINE_MINUTES:-9}
PRECISION=${SURGE_PRECISION:-auto}
WORKERS=${SURGE_WORKERS:-12}
EVAL_SETS=${SURGE_EVAL_SETS:-$DEFAULT_SETS}
SITE=${SURGE_SITE:-${TMPDIR:-/tmp}/surge-site}
DEVICE=cuda
STEPS=${SURGE_STEPS:-$DEFAULT_STEPS}
if [[ $TINY == 1 ]]; then
    DEVICE=cpu
    STEPS=${SURGE_STEPS:-2}
    WORKERS=${SURGE_WORKERS:-0}
fi
EVAL_RESERVE_S=60   # kept free after stage 2 for its final validation, copies and evaluation
STAGE_OVERHEAD_S=30 # start-up, data decoding and the final validation of one stage

export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-15}  # a progress line every 15 s, not every 0.1 s, in the log

die() { echo "gpu_train: error: $*" >&2; exit 3; }
minutes_left() { awk -v d="$DEADLINE_MINUTES" -v s="$SECONDS" -v r="$1" 'BEGIN { printf "%.2f", (d * 60 - s - r) / 60 }'; }
min_of() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }

# Imports what the run needs and prints the versions; exit 1 when a module is missing, 2 when
# DEVICE is cuda and no GPU is visible. One interpreter start (torch's import is the slow part).
check_modules() {
    DEVICE=$DEVICE "$PY" - <<'EOF'
import importlib, os, sys
missing = []
for name in ("torch", "numpy", "PIL", "ot", "safetensors", "skimage", "tqdm"):
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name} ({exc.__class__.__name__}: {exc})")
from PIL import features
if not features.check("webp"):
    missing.append("Pillow's WebP codec")
if missing:
    print("missing: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
import ot, torch
cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]} | torch {torch.__version__} | POT {ot.__version__} | "
      f"cuda {torch.cuda.get_device_name() if cuda else 'no'}")
sys.exit(2 if os.environ["DEVICE"] == "cuda" and not cuda else 0)
EOF
}

ensure_modules() {
    local rc=0
    check_modules 2>/dev/null || rc=$?
    if ((rc == 1)); then
        shopt -s nullglob
        local wheels=(.whl/*.whl)
        shopt -u nullglob
        if ((${#wheels[@]})); then
            echo "installing ${#wheels[@]} carried wheel(s) into $SITE: ${wheels[*]##*/}"
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
            export PYTHONPATH="$PYTHONPATH:$SITE"
        fi
        rc=0
        check_modules || rc=$?
    fi
    case $rc in
        0) ;;
        2) die "no CUDA device visible to $PY (SURGE_GPU_TINY=1 runs the CPU smoke test)" ;;
        *) die "Python modules missing (carry their wheels in .whl/, see the top of $0)" ;;
    esac
}

# Stage runner: train CONFIG into RUN_DIR with the common overrides plus extra ones. A stage
# stopped by its time budget exits 130 like an interrupted one; either way it must have saved weights.
train_stage() {
    local config=$1 run_dir=$2
    shift 2
    local rc=0
    "$PY" -m surge.train --run-dir "$run_dir" "$config" "${COMMON[@]}" "$@" || rc=$?
    if [[ $rc != 0 && $rc != 130 ]]; then
        echo "gpu_train: error: training $config failed (exit $rc)" >&2
        return "$rc"
    fi
    [[ -f $run_dir/last.safetensors ]] || { echo "gpu_train: error: $run_dir: no weights saved" >&2; return 1; }
}

evaluate() {
    local weights=$1 json=$2 rc=0
    # shellcheck disable=SC2086 # EVAL_SETS is a list of set names
    "$PY" -m surge eval --model "$weights" --data "$PACK/benchmark" --sets $EVAL_SETS --json "$json" \
        --device "$DEVICE" --quiet || rc=$?
    case $rc in
        0) ;;
        1) echo "gpu_train: warning: some benchmark images were skipped (see the table above)" >&2 ;;
        *) echo "gpu_train: error: evaluation of $weights failed (exit $rc)" >&2; return "$rc" ;;
    esac
}

main() {
    echo "== surge gpu_train $(date -u +%FT%TZ) in $REPO (mode=$MODE, tiny=$TINY, device=$DEVICE)"
    ensure_modules
    if [[ $DEVICE == cuda ]]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    fi
    # DataLoader workers hand batches over in shared memory (a 16 x 256^2 batch is 12.6 MB, and each
    # worker keeps 2 ready); a small /dev/shm (container default 64 MB) kills them with a bus error.
    local shm_kb
    shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if ((WORKERS > 0)) && [[ -n $shm_kb ]] && ((shm_kb < 1048576)); then
        echo "gpu_train: warning: /dev/shm has only $((shm_kb / 1024)) MiB free: data.workers=0 instead of $WORKERS" >&2
        WORKERS=0
    fi
    echo "cpu cores: $(nproc), /dev/shm free: ${shm_kb:-?} KiB, data.workers=$WORKERS"

    shopt -s nullglob
    local dirs=("$PACK"/train/*/)
    shopt -u nullglob
    ((${#dirs[@]})) || die "$PACK/train: no packed training folders (run scripts/pack_data.py)"
    [[ -d $PACK/benchmark/Set5 ]] || die "$PACK/benchmark/Set5: validation set not packed"
    local set
    for set in $EVAL_SETS; do
        [[ -d $PACK/benchmark/$set ]] || die "$PACK/benchmark/$set: evaluation set not packed (see the top of $0)"
    done
    # The pack's own record of its data (pack_data.py --fit may have left training images out): the
    # log comes back, the manifest does not.
    if [[ -f $PACK/manifest.json ]]; then
        "$PY" -c 'import json, sys
m = json.load(open(sys.argv[1]))
n = sum(f["packed"].startswith("train/") for f in m["files"])
print("pack: %d training images, %d left out to fit its budget, %d bytes" % (n, len(m.get("left_out", [])), m["total_bytes"]))' \
            "$PACK/manifest.json" || echo "gpu_train: warning: $PACK/manifest.json could not be read" >&2
    fi
    local list="" d
    for d in "${dirs[@]}"; do list+="${list:+, }\"${d%/}\""; done
    RUNS=${SURGE_RUNS:-$(mktemp -d "${TMPDIR:-/tmp}/surge-gpu.XXXXXX")}
    mkdir -p "$RUNS"

    COMMON=(
        "data.train_dirs=[$list]"
        "data.val_dir=\"$PACK/benchmark/Set5\""
        "data.workers=$WORKERS"
        "train.precision=$PRECISION"
        "train.device=$DEVICE"
    )
    if [[ -n $STEPS ]]; then COMMON+=("train.steps=$STEPS"); fi
    local batch=${SURGE_BATCH:-} hr_size=${SURGE_HR_SIZE:-}
    if [[ $TINY == 1 ]]; then
        COMMON+=(generator.preset=surge-tiny critic.width=8 critic.max_width=16 critic.stages=2 critic.hidden=16
                 train.threads=1)
        # GW needs a batch of 3 or more; the real-world degradations need room for their kernels
        batch=${batch:-3} hr_size=${hr_size:-$([[ $MODE == real ]] && echo 64 || echo 32)}
    fi
    if [[ -n $batch ]]; then COMMON+=("data.batch_size=$batch"); fi
    if [[ -n $hr_size ]]; then COMMON+=("data.hr_size=$hr_size"); fi
    echo "training data: ${dirs[*]}; runs in $RUNS"

    local psnr_run=$RUNS/$(basename "$PSNR_CONFIG" .toml) gan_run=$RUNS/$(basename "$GAN_CONFIG" .toml)
    echo "== stage 1: $PSNR_CONFIG for up to $PSNR_MINUTES min"
    train_stage "$PSNR_CONFIG" "$psnr_run" "train.max_minutes=$PSNR_MINUTES"
    # The final weights, not the best on the validation set: no model selection on a benchmark.
    local psnr_weights=$psnr_run/last.safetensors
    cp "$psnr_weights" "$OUT/$NAME-psnr.safetensors"
    cp "$psnr_run/log.csv" "$OUT/log-psnr.csv"
    evaluate "$OUT/$NAME-psnr.safetensors" "$OUT/eval-psnr.json"

    local left gan_minutes
    left=$(minutes_left $((EVAL_RESERVE_S + STAGE_OVERHEAD_S)))
    gan_minutes=$(min_of "$GAN_MINUTES" "$left")
    if awk -v m="$gan_minutes" 'BEGIN { exit !(m < 0.5) }'; then
        echo "gpu_train: error: only $left min left of SURGE_DEADLINE_MINUTES=$DEADLINE_MINUTES: stage 2 skipped" >&2
        return 4
    fi
    echo "== stage 2: $GAN_CONFIG from $psnr_weights for up to $gan_minutes min"
    train_stage "$GAN_CONFIG" "$gan_run" "train.init_from=\"$psnr_weights\"" "train.max_minutes=$gan_minutes"
    cp "$gan_run/last.safetensors" "$OUT/$NAME.safetensors"
    cp "$gan_run/log.csv" "$OUT/log-gan.csv"
    evaluate "$OUT/$NAME.safetensors" "$OUT/eval-gan.json"

    echo "== done in ${SECONDS} s; in $OUT:"
    ls -l "$OUT"
}

mkdir -p "$OUT"
main 2>&1 | tee "$OUT/gpu_train.log"
