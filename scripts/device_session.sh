#!/usr/bin/env bash
# One device call, one script: environment report, the CUDA tests, the inference benchmark, the
# data pipeline's host time per batch (benchmarks/device_batches.py) and the training throughput
# (CPU-loader vs on-device data, benchmarks/train_data.py), then training until the
# call's deadline from a carried state, or without one from the bundled weights of the same experiment
# (SURGE_INIT_FROM, a warm restart: the shipped model keeps improving); back in $OUT the state (for the next
# call), fp16 weights, logs and summary.json. Each phase has its own timeout; a phase that fails is
# recorded in summary.json and the next one still runs.
#
# Made for the project's `device` tool: one H200, 15 minutes of device time per task (machine start
# and transfers included), at most 10 minutes per command; the working tree that travels (tracked
# files + carried paths) is at most 64 MiB; at most 8 flat files of <= 16 MiB, 64 MiB together,
# come back from $OUT. Prepare here in the repo root after every merge with one command,
#   .venv/bin/python scripts/device_prepare.py [--state RETURNED_OUT] [--state-mib S]
# which runs the steps below (.pack/, .whl/ and .carry/ are git-ignored):
#
#   POT's wheel in .whl/ exactly as the top of scripts/gpu_train.sh says (1.46 MiB).
#   .carry/: the state-NN.safetensors parts a previous call returned (absent: a fresh start
#            from the bundled weights of the experiment, else random; SURGE_INIT_FROM), e.g. `mkdir .carry && cp /work/.device/.../state-*.safetensors .carry/`,
#            repacked to a smaller profile where needed (below).
#   B=$(.venv/bin/python scripts/device_budget.py --carry .whl .carry --left)   # what the tree, wheel and state leave
#   .venv/bin/python scripts/pack_data.py ../shared/datasets/train/T91 ../shared/datasets/train/BSD200 \
#       --bench ../shared/datasets/benchmark/Set5 ../shared/datasets/benchmark/Set14 --out .pack \
#       --budget-mib "$B" --fit            # leaves BSD200's last images out as needed; manifest.json lists them
#   .venv/bin/python scripts/device_budget.py --carry .pack .whl .carry            # the call's table; exit 1 if over
#
# The device tool's call:
#
#   command:   bash scripts/device_session.sh
#   carry:     [".pack", ".whl", ".carry"]          (".carry" only when there is a state to continue)
#   timeout_s: 600                                  (the script ends itself within SURGE_BUDGET_S = 570 s)
#
# Size budget (measured 2026-12-04 with scripts/device_budget.py and pack_data.py; MiB = 2^20 bytes;
# the tool refuses a call over 64 MiB, device_budget.py keeps 0.5 MiB below that):
#   carried in: tracked tree 19.6 MiB + POT wheel 1.46 + .pack. The full pack (T91 6.9, BSD200 32.4,
#     Set5 0.6, Set14 3.4; 44.8 with bench-v1) is 43.4 MiB: 64.4 in all, over the limit even with
#     no state. With --fit: no state, B = 42.41, pack 42.35 MiB = T91 + 194 of BSD200's 200 images
#     (63.43 MiB carried); beside a 9.0 MiB .carry (a stand-in file of minimal's size), B = 33.41,
#     pack 33.31 MiB = T91 + 138 of BSD200 (63.40 MiB carried).
#     Every byte the tree gains comes out of BSD200: rerun the prepare step after a merge.
#   travel state of configs/gpu-real-psnr.toml (4.62M-param generator, no critic; python -m
#     surge.training.travel, profiles in its docstring): exact 70.8 MiB (5 parts; = last.pt),
#     compact 44.3 (3 parts), lean 26.6 (2), minimal 9.0 (1). paper-gan (4.04M + critic):
#     exact 121.6, compact 81.1, lean 40.6, minimal 20.4.
#   back out (<= 64 MiB, <= 8 files): NAME.safetensors (fp16, 8.8 MiB) + logs and summary (< 1 MiB)
#     + the state in the most faithful profile that fits the rest (compact, 44.3 MiB in 3 parts).
#   So the next call carries a repacked state, sized first, and then the pack that fits beside it:
#     .venv/bin/python -m surge.training.travel repack RETURNED_DIR .carry --budget-mib S
#   where S is what a pack of the wanted size P leaves: S = (device_budget.py --carry .whl --left) - P.
#   The minimal profile (9.0 MiB; a documented warm restart: weights rounded to fp16, EMA restarted
#   from them, Adam moments re-estimated; step counter, schedule position and lineage stay exact)
#   leaves room for T91 + 138 BSD200 images + Set5 + Set14 (above); lean (26.6, weights exact, EMA
#   fp16) for a pack of about 15.8 MiB, e.g. T91 + Set5 + Set14 (10.9) + some BSD200. The training set,
#   and so the sample sequence, then differs from the full pack's (manifest.json says how).
#   Every resumed session records its `restored` profile.
#
# Outputs in $OUT (flat, at most 8 files, each <= 16 MiB; checked at the end, see summary "limits"):
#   summary.json     {pack (training images, left_out), environment, tests, inference, throughput, training, limits, phases}
#   session.log      everything this script printed
#   train-log.csv    the trainer's per-step log (losses, lr, validation)
#   NAME.safetensors the EMA generator in float16 (provenance: storage, sessions, total_steps); loads
#                    with surge.load_model as float32
#   state-NN.safetensors  the travel state (python -m surge.training.travel info OUT shows it)
#
# Settings (environment variables):
#   OUT                  output folder (required; the device tool sets it)
#   SURGE_PYTHON=python3 interpreter with torch (the device image's python3)
#   SURGE_DRY_RUN=1      the same phases on CPU, tiny: surge-tiny generator, HR 64, batch 3, 4 steps,
#                        infer.py on a 32 px input (tests/test_device_session.py)
#   SURGE_BUDGET_S=570   the whole script's wall-time budget (training gets what the other phases leave)
#   SURGE_TEST_TIMEOUT=60  SURGE_INFER_TIMEOUT=90  SURGE_THROUGHPUT_TIMEOUT=140  SURGE_RESERVE_S=75 (kept
#                        after training: pack, export, eval); a dry run: budget 170, infer 40, throughput 30, reserve 40
#   SURGE_TEST_PATHS=tests/   where `pytest -m cuda` looks
#   SURGE_INFER_ARGS     replaces the benchmark's model/variant/size arguments
#   SURGE_PACK=.pack  SURGE_CARRY=.carry  SURGE_CONFIG=configs/gpu-real-psnr.toml (fresh starts only:
#                        with a carried state, training and the throughput phase run the state's own config)
#   SURGE_STEPS          train.steps (the schedule's length, total over sessions); default: the config's
#   SURGE_PRECISION=auto SURGE_WORKERS=12 (0 in a dry run or with a small /dev/shm)
#   SURGE_INIT_FROM=auto weights a fresh start (no carried state) begins from: auto = the bundled model of
#                        the same experiment and generator (configs/gpu-real-psnr.toml: surge-x4-real-psnr),
#                        none = random, or a .safetensors path
#   SURGE_COMPILE=auto   train.compile of the training phase: 1, 0, or auto (compile when the throughput
#                        phase's compiled row, timed for the training config, was >= 1.05x eager)
#   SURGE_COMPILE_MODE=reduce-overhead   train.compile_mode of that row and of a compiled training phase:
#                        reduce-overhead (inductor + CUDA graphs: one launch for the many small LR-size
#                        kernels; unmeasured in training) or default (inductor only)
#   SURGE_NAME           weights file name (default: the run's train.name)
#   SURGE_STATE_PROFILE=auto   exact | compact | lean | minimal | auto (the most faithful that fits)
#   SURGE_RUNS=<temp dir>  SURGE_SITE=<temp dir>/site (wheels from .whl/ installed there)
#   SURGE_SKIP           phases to skip, e.g. "tests inference throughput" (recorded as skipped)
# Exit status: 0 every phase ok; 1 a phase failed (see summary.json); 3 no OUT, pack, module or GPU.
# Not yet run on a GPU.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

: "${OUT:?set OUT to the output folder (the device tool sets it)}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${SURGE_PYTHON:-python3}
DRY=${SURGE_DRY_RUN:-0}
# budget, infer timeout, reserve (s): a dry run's tiny export, pack and evaluation need less time after training
# and the data-pipeline throughput phase's timeout
if [[ $DRY == 1 ]]; then DEFAULTS=(170 40 40 30); else DEFAULTS=(570 90 75 140); fi
BUDGET_S=${SURGE_BUDGET_S:-${DEFAULTS[0]}}
TEST_TIMEOUT=${SURGE_TEST_TIMEOUT:-60}
INFER_TIMEOUT=${SURGE_INFER_TIMEOUT:-${DEFAULTS[1]}}
RESERVE_S=${SURGE_RESERVE_S:-${DEFAULTS[2]}}
THROUGHPUT_TIMEOUT=${SURGE_THROUGHPUT_TIMEOUT:-${DEFAULTS[3]}}
TEST_PATHS=${SURGE_TEST_PATHS:-tests/}
PACK_ARG=${SURGE_PACK:-.pack}
CARRY=${SURGE_CARRY:-.carry}
CONFIG=${SURGE_CONFIG:-configs/gpu-real-psnr.toml}
PRECISION=${SURGE_PRECISION:-auto}
COMPILE_MODE=${SURGE_COMPILE_MODE:-reduce-overhead}
PROFILE=${SURGE_STATE_PROFILE:-auto}
DEVICE=cuda
WORKERS=${SURGE_WORKERS:-12}
if [[ $DRY == 1 ]]; then DEVICE=cpu; WORKERS=${SURGE_WORKERS:-0}; fi
RUNS=${SURGE_RUNS:-$(mktemp -d "${TMPDIR:-/tmp}/surge-session.XXXXXX")}
SITE=${SURGE_SITE:-$RUNS/site}
WORK=$RUNS/work   # phase outputs that are summarised, not returned
mkdir -p "$RUNS" "$WORK"
MAX_FILES=8 PART_MIB=16 OUT_MIB=64

export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-15}

say() { echo "== $(date -u +%T) [${SECONDS}s] $*"; }
left_s() { echo $((BUDGET_S - SECONDS)); }
FAILED=0

# summary KEY FILE: merge the JSON in FILE into $OUT/summary.json under KEY (atomically; the file is
# rewritten after every phase, so a call cut off at its limit still returns what was done).
# summary_json KEY 'JSON': the same for a literal value.
summary() {
    "$PY" - "$OUT/summary.json" "$1" "$2" <<'EOF'
import json, os, sys
path, key, src = sys.argv[1:4]
data = json.load(open(path)) if os.path.exists(path) else {}
data[key] = json.load(open(src))
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
os.replace(tmp, path)
EOF
}
summary_json() {
    printf '%s\n' "$2" > "$WORK/value.json"
    summary "$1" "$WORK/value.json"
}

# phase NAME STATUS SECONDS [NOTE]: record a phase's outcome under "phases".
phase() {
    local note=${4:-}
    "$PY" - "$OUT/summary.json" "$1" "$2" "$3" "$note" <<'EOF'
import json, os, sys
path, name, status, seconds, note = sys.argv[1:6]
data = json.load(open(path)) if os.path.exists(path) else {}
data.setdefault("phases", {})[name] = {"status": status, "seconds": int(seconds), **({"note": note} if note else {})}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
os.replace(tmp, path)
EOF
    if [[ $2 != ok && $2 != skipped ]]; then FAILED=1; fi
}

# --- phase 0: environment ------------------------------------------------------------------
environment() {
    say "environment (dry run: $DRY, device: $DEVICE, budget ${BUDGET_S}s)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
    if ! "$PY" -c "import ot" 2>/dev/null; then
        shopt -s nullglob
        local wheels=(.whl/*.whl)
        shopt -u nullglob
        if ((${#wheels[@]})); then
            echo "installing ${#wheels[@]} carried wheel(s) into $SITE: ${wheels[*]##*/}"
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" \
                || echo "device_session: warning: wheel install failed" >&2
            export PYTHONPATH="$PYTHONPATH:$SITE"
        fi
    fi
    local shm_kb
    shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if ((WORKERS > 0)) && [[ -n $shm_kb ]] && ((shm_kb < 1048576)); then
        echo "device_session: warning: /dev/shm has only $((shm_kb / 1024)) MiB free: data.workers=0" >&2
        WORKERS=0
    fi
    DEVICE=$DEVICE WORKERS=$WORKERS SHM_KB=${shm_kb:-0} "$PY" - > "$WORK/env.json" <<'EOF'
import importlib, json, os, platform, sys
env = {"python": sys.version.split()[0], "cpu_cores": os.cpu_count(), "data_workers": int(os.environ["WORKERS"]),
       "shm_free_mib": int(os.environ["SHM_KB"]) // 1024, "device": os.environ["DEVICE"], "modules": {}}
for name in ("torch", "numpy", "PIL", "safetensors", "skimage", "scipy", "ot", "pytest"):
    try:
        env["modules"][name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as exc:
        env["modules"][name] = f"missing ({exc.__class__.__name__})"
try:
    from surge.training.precision import cpu_name
    env["cpu"] = cpu_name()
except Exception:
    env["cpu"] = platform.processor()
try:
    import torch
    env["cuda"] = torch.version.cuda
    env["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if env["gpu"]:
        props = torch.cuda.get_device_properties(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["bf16"] = torch.cuda.is_bf16_supported()
except Exception as exc:
    env["torch_error"] = str(exc)
try:
    from surge.training.config import DataConfig
    env["data_pipeline_option"] = "pipeline" in DataConfig.__dataclass_fields__
except Exception:
    env["data_pipeline_option"] = False
print(json.dumps(env))
EOF
    cat "$WORK/env.json"; echo
    summary environment "$WORK/env.json"
    phase environment ok "$SECONDS"
}

# --- phase 1: CUDA tests -------------------------------------------------------------------
run_tests() {
    say "tests: pytest -m cuda $TEST_PATHS (timeout ${TEST_TIMEOUT}s)"
    local t0=$SECONDS rc=0
    # -v: a line per test as it ends, so a run cut off by the timeout (no junit report) still
    # says which tests finished and how
    # shellcheck disable=SC2086 # TEST_PATHS is a list of paths
    timeout -k 5 "$TEST_TIMEOUT" "$PY" -m pytest -m cuda $TEST_PATHS -v -p no:cacheprovider \
        --junitxml="$WORK/junit.xml" -o junit_family=xunit2 | tee "$WORK/pytest.txt" || rc=$?
    RC=$rc "$PY" - "$WORK/junit.xml" "$WORK/pytest.txt" > "$WORK/tests.json" <<'EOF'
import json, os, re, sys
import xml.etree.ElementTree as ET
rc = int(os.environ["RC"])
out = {"exit": rc, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
try:
    root = ET.parse(sys.argv[1]).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            out["failed"] += 1; out["failures"].append(name)
        elif case.find("error") is not None:
            out["errors"] += 1; out["failures"].append(name)
        elif case.find("skipped") is not None:
            out["skipped"] += 1
        else:
            out["passed"] += 1
except (OSError, ET.ParseError):
    out["report"] = "no junit report (killed by the timeout?): counted from pytest -v's lines"
    kinds = {"PASSED": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped", "XFAIL": "skipped"}
    try:
        lines = open(sys.argv[2], errors="replace").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        m = re.match(r"(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL)\b", line)
        if m:
            out[kinds[m.group(2)]] += 1
            if m.group(2) in ("FAILED", "ERROR"):
                out["failures"].append(m.group(1))
    out["finished"] = sum(out[k] for k in ("passed", "failed", "errors", "skipped"))
out["status"] = {0: "ok", 5: "no tests selected", 124: "timeout", 137: "timeout"}.get(rc, "failed")
print(json.dumps(out))
EOF
    cat "$WORK/tests.json"; echo
    summary tests "$WORK/tests.json"
    local status=ok
    case $rc in 0 | 5) ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
    phase tests "$status" $((SECONDS - t0))
}

# --- phase 2: inference benchmark ----------------------------------------------------------
# The SuRGe models this checkout's benchmarks/infer.py knows (its --models choices other than the
# peers): the paper config today, presets and shipped models where a later infer.py offers them.
surge_models() {
    "$PY" benchmarks/infer.py --help 2>/dev/null | "$PY" -c '
import re, sys
m = re.search(r"--models \{([^}]*)\}", sys.stdin.read())
peers = {"rrdbnet", "srvgg-compact", "edsr-baseline"}
print(" ".join(c for c in (m.group(1).split(",") if m else ["surge"]) if c not in peers))'
}

run_inference() {
    local t0=$SECONDS runs=()
    if [[ -n ${SURGE_INFER_ARGS:-} ]]; then
        runs=("$SURGE_INFER_ARGS")
    elif [[ $DRY == 1 ]]; then
        runs=("--models surge --variants fp32-eager auto --lr-size 32 --repeats 1 --row-budget 1 --scaling 0.02 --set5-images 1 --no-compile --matmul-size 256 --conv-size 32")
    else
        # Two runs: the SuRGe models in fp32, fp16, bf16, the engine default and a CUDA graph, tiled
        # 4 and 16 MP; then the peers in fp32, the default and a CUDA graph. Rows stop repeating after
        # 4 s (best of 3 calls); each row is a child process, so the phase's time is mostly start-ups.
        runs=("--models $(surge_models) --variants fp32-eager fp16 bf16 auto cudagraph --set5-images 2 --scaling 4 16 --row-budget 4 --repeats 3 --no-compile"
              "--models srvgg-compact rrdbnet --variants fp32-eager auto cudagraph --set5-images 2 --scaling --row-budget 4 --repeats 3 --no-compile")
    fi
    local i rc=0 status=ok codes=() args left
    for i in "${!runs[@]}"; do
        left=$((INFER_TIMEOUT - (SECONDS - t0)))
        if ((left < 10)); then
            echo "device_session: warning: no time left in the inference phase for: ${runs[$i]}" >&2
            codes+=(124); status=timeout; continue
        fi
        read -r -a args <<< "${runs[$i]}"
        say "inference $((i + 1))/${#runs[@]}: benchmarks/infer.py --device $DEVICE ${args[*]} (timeout ${left}s)"
        rc=0
        timeout -k 5 "$left" "$PY" benchmarks/infer.py --device "$DEVICE" --data "$PACK" "${args[@]}" \
            --json "$WORK/infer-$i.json" > "$WORK/infer-$i.out" 2> "$WORK/infer-$i.err" || rc=$?
        cat "$WORK/infer-$i.err" "$WORK/infer-$i.out"
        codes+=("$rc")
        case $rc in 0) ;; 124 | 137) status=timeout ;; *) [[ $status == ok ]] && status=failed ;; esac
    done
    # Rows from each run's JSON, or, where a run was cut off, from the progress lines it printed.
    CODES="${codes[*]}" STATUS=$status "$PY" - "$WORK" "${#runs[@]}" > "$WORK/inference.json" <<'EOF'
import ast, json, os, re, sys
work, count = sys.argv[1], int(sys.argv[2])
codes = [int(c) for c in os.environ["CODES"].split()]
out = {"status": os.environ["STATUS"], "exits": codes, "rows": [], "scaling": [], "runs": []}
keep = ("model", "variant", "seconds", "setup_s", "runs", "clean_runs", "peak_rss_mb", "peak_cuda_mb", "error")
def row(r):
    return {k: v for k, v in r.items() if k in keep or k.startswith("psnr") or k.startswith("mpix") or k.startswith("gflop")}
for i in range(count):
    run = {"exit": codes[i] if i < len(codes) else None}
    try:
        saved = json.load(open(os.path.join(work, f"infer-{i}.json")))
        rows, scaling = [row(r) for r in saved["rows"]], saved.get("scaling", [])
        run.update(argv=saved.get("argv"), machine=saved.get("machine"), matmul=saved.get("matmul"), wall_s=saved.get("wall_s"))
    except (OSError, ValueError, KeyError):
        rows, scaling, run["partial"] = [], [], True
        try:
            lines = open(os.path.join(work, f"infer-{i}.err"), errors="replace").read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            m = re.match(r"\[\s*\d+ s\] (\S+) (\S+): (\{.*\})\s*$", line)
            if m and m.group(1) not in ("retry", "scaling", "matmul"):
                try:
                    rows.append(row({"model": m.group(1), "variant": m.group(2), **json.loads(m.group(3))}))
                except ValueError:
                    pass
            m = re.match(r"\[\s*\d+ s\] scaling (\S+) MP: (\{.*\})\s*$", line)
            if m:
                try:
                    scaling.append({"megapixels": float(m.group(1)), **ast.literal_eval(m.group(2))})
                except (ValueError, SyntaxError):
                    pass
    out["rows"] += rows
    out["scaling"] += scaling
    out["runs"].append(run)
print(json.dumps(out))
EOF
    summary inference "$WORK/inference.json"
    phase inference "$status" $((SECONDS - t0))
}

# unpack_carried: the carried state, if one came, unpacked once into $RUNS/run by the first phase that
# needs it (CARRIED: none, ok or failed). Its run's config.json is then the experiment the training
# phase resumes, so the throughput phase times that one: the compile choice is made for what trains.
CARRIED=""
unpack_carried() {
    [[ -n $CARRIED ]] && return 0
    shopt -s nullglob
    local parts=("$CARRY"/state-*.safetensors)
    shopt -u nullglob
    CARRIED=none
    ((${#parts[@]})) || return 0
    say "unpacking the carried state (${#parts[@]} part(s) in $CARRY)"
    if "$PY" -m surge.training.travel unpack "$CARRY" "$RUNS/run"; then CARRIED=ok; else CARRIED=failed; fi
}

# train_config: the experiment the training phase runs (the carried run's own, else SURGE_CONFIG)
train_config() {
    if [[ $CARRIED == ok ]]; then echo "$RUNS/run/config.json"; else echo "$CONFIG"; fi
}

# --- phase 3: training throughput, loader vs device data ---------------------------------------
# Issue 21's target: the training config at >= 37 step/s with the GPU busy >= 90% of wall time,
# and effective TFLOP/s against the same run's conv and matmul peaks. benchmarks/train_data.py
# alternates the CPU-loader and on-device pipelines so both see the same machine; the clean
# (bicubic) variant of the config is measured the same way.
run_throughput() {
    local t0=$SECONDS rc=0 status=ok
    if [[ ! -f benchmarks/train_data.py ]]; then
        summary_json throughput '{"status": "skipped", "note": "no benchmarks/train_data.py in this checkout"}'
        phase throughput skipped 0 "no benchmark"
        return
    fi
    local dirs=("$PACK"/train/*/) args config
    unpack_carried
    config=$(train_config)
    if [[ $DRY == 1 ]]; then
        args=(--configs "$config" "$config:bicubic" --seconds 3 --rounds 1 --warmup 1 --batch 2 --hr-size 32
              --workers 0 --threads 1 --set 'generator.preset="surge-tiny"' --profile-steps 2)
    else
        # ~40 s timed per config (all pipelines), the rest is start-up, the peaks and the training
        # config's compile (torch.compile of the generator, its warm-up; the training phase reuses
        # inductor's on-disk cache when the compiled row won, see run_training); then 8 steps of the
        # training config under torch.profiler (a few seconds): where a step goes if the target is missed
        args=(--configs "$config" "$config:bicubic" --seconds 38 --rounds 2 --warmup 10 --workers "$WORKERS"
              --compile first --compile-mode "$COMPILE_MODE" --profile-steps 8)
    fi
    # First the host time one batch costs the thread that makes it (plan in numpy, then the device
    # work queued): with the training thread's own, it bounds the step rate (benchmarks/device_batches.py).
    if [[ -f benchmarks/device_batches.py ]]; then
        local host=(--configs "$config" "$config:bicubic" --batches 4 --repeats 2)  # ~10 s: training time is dearer
        [[ $DRY == 1 ]] && host+=(--batch 2 --small 16 --batches 1 --repeats 1 --threads 1)
        say "data host time: benchmarks/device_batches.py --device $DEVICE ${host[*]}"
        if timeout -k 5 60 "$PY" benchmarks/device_batches.py --device "$DEVICE" "${host[@]}" --json "$WORK/host.json"; then
            summary data_host "$WORK/host.json"
        else
            summary_json data_host '{"status": "failed"}'
        fi
    fi
    say "throughput: benchmarks/train_data.py --device $DEVICE ${args[*]} (timeout ${THROUGHPUT_TIMEOUT}s)"
    timeout -k 5 "$THROUGHPUT_TIMEOUT" "$PY" benchmarks/train_data.py --device "$DEVICE" "${args[@]}" \
        --train-dirs "${dirs[@]%/}" --json "$WORK/throughput.json" || rc=$?
    case $rc in 0) ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
    if [[ -s $WORK/throughput.json ]]; then
        summary throughput "$WORK/throughput.json"
    else
        summary_json throughput "{\"status\": \"$status\", \"exit\": $rc}"
    fi
    phase throughput "$status" $((SECONDS - t0))
}

# warm_start_choice: the weights a fresh start begins from, "PATH (why)" or "none (why)". auto (the
# default): the bundled weights trained by the same experiment with the same generator
# (python -m surge.training.warm_start), so a session without a carried state continues the shipped
# model (a warm restart: its float16 weights, EMA restarted from them, no optimizer moments) instead
# of starting over; none: random weights; a path: those weights.
warm_start_choice() {
    local want=${SURGE_INIT_FROM:-auto} path
    case $want in
        none) echo "none (SURGE_INIT_FROM=none)"; return ;;
        auto) ;;
        *) echo "$want (SURGE_INIT_FROM)"; return ;;
    esac
    if [[ $DRY == 1 ]]; then echo "none (a dry run's tiny generator matches no bundled model)"; return; fi
    path=$("$PY" -m surge.training.warm_start "$CONFIG") || path=""
    if [[ -n $path ]]; then echo "$path (the bundled weights of this experiment)"
    else echo "none (no bundled weights of this experiment)"; fi
}

# compile_choice: "true (why)" or "false (why)". SURGE_COMPILE=1/0 decides; auto (the default) compiles
# when this session's throughput phase timed the training config's compiled step at >= 1.05x the
# eager one on the device pipeline (its compile then sits in inductor's cache on this machine).
compile_choice() {
    case ${SURGE_COMPILE:-auto} in
        1 | true) echo "true (SURGE_COMPILE)"; return ;;
        0 | false) echo "false (SURGE_COMPILE)"; return ;;
    esac
    "$PY" - "$WORK/throughput.json" <<'EOF'
import json, sys
try:
    row = json.load(open(sys.argv[1]))["rows"][0]["pipelines"]
    eager, compiled = row["device"]["step_per_s"], row["device+compile"]
except (OSError, ValueError, KeyError, IndexError, TypeError):
    print("false (no compiled row timed in this session)")
    sys.exit()
if "error" in compiled:
    print(f"false (the compile failed in the throughput phase: {compiled['error']})")
else:
    gain = compiled["step_per_s"] / eager
    mode = compiled.get("compile_mode", "default")
    print(f"{str(gain >= 1.05).lower()} (compiled ({mode}) / eager step rate {gain:.2f} in the throughput phase)")
EOF
}

# training_failed STATUS NOTE: the training key and phase when no run came to an end.
training_failed() {
    summary_json training "{\"status\": \"$1\", \"note\": \"$2\"}"
    phase training "$1" $((SECONDS - T_TRAIN)) "$2"
}

run_training() {
    T_TRAIN=$SECONDS
    local t0=$SECONDS rc=0 run=$RUNS/run
    local resumed=0
    unpack_carried
    case $CARRIED in
        ok) resumed=1 ;;
        failed) training_failed failed "the carried state in $CARRY could not be unpacked (see session.log)"; return ;;
    esac
    local dirs=("$PACK"/train/*/) list="" d
    for d in "${dirs[@]}"; do [[ -d $d ]] && list+="${list:+, }\"${d%/}\""; done
    local overrides=("data.train_dirs=[$list]" "data.val_dir=\"$PACK/benchmark/Set5\"" "data.workers=$WORKERS"
                     "train.precision=$PRECISION" "train.device=$DEVICE")
    if [[ -n ${SURGE_STEPS:-} ]]; then overrides+=("train.steps=$SURGE_STEPS"); fi
    if [[ $DRY == 1 ]]; then
        # 4 steps per call: a carried tiny run continues to its previous step + 4
        local at=0
        if ((resumed)); then at=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['start_step'])" "$run/travel.json"); fi
        overrides+=(generator.preset=surge-tiny data.hr_size=64 data.batch_size=3 train.threads=1
                    "train.steps=${SURGE_STEPS:-$((at + 4))}" train.val_every=1000 train.ckpt_every=1000)
    fi
    if "$PY" -c "import json,sys; sys.exit(not json.load(open(sys.argv[1])).get('data_pipeline_option'))" "$WORK/env.json"; then
        overrides+=(data.pipeline=device)
        echo "data.pipeline=device (this checkout has the option)"
    fi
    INIT_CHOICE="resumed (the carried state)"
    if ((!resumed)); then
        INIT_CHOICE=$(warm_start_choice)
        echo "train.init_from: $INIT_CHOICE"
        local init=${INIT_CHOICE% (*}
        if [[ $init != none ]]; then
            [[ -f $init ]] || { training_failed failed "SURGE_INIT_FROM: $init: no such weights file"; return; }
            overrides+=("train.init_from=\"$init\"")
        fi
    fi
    COMPILE_CHOICE=$(compile_choice)
    echo "train.compile: $COMPILE_CHOICE"
    overrides+=("train.compile=${COMPILE_CHOICE%% *}")  # explicit: a carried state's config may say otherwise
    overrides+=("train.compile_mode=\"$COMPILE_MODE\"")  # as timed (and cached by inductor) in the throughput phase
    local minutes
    minutes=$(awk -v l="$(left_s)" -v r="$RESERVE_S" 'BEGIN { m = (l - r) / 60; printf "%.2f", (m > 0 ? m : 0) }')
    if awk -v m="$minutes" 'BEGIN { exit !(m < 0.2) }'; then
        training_failed skipped "no time left ($(left_s) s, reserve $RESERVE_S s)"
        return
    fi
    overrides+=("train.max_minutes=$minutes")
    # train.max_minutes ends the run cleanly (checkpoint, validation); the hard limit only catches a
    # hang: SIGTERM, which the trainer also answers with a checkpoint, then SIGKILL 20 s later.
    local hard=$(($(left_s) - RESERVE_S / 2))
    if ((resumed)); then
        say "training: resume for up to $minutes min (hard limit ${hard}s): ${overrides[*]}"
        # CONFIG is unused on resume (the state holds the config) but the command wants one
        timeout -k 20 "$hard" "$PY" -m surge.train "$CONFIG" --resume "$run" "${overrides[@]}" || rc=$?
    else
        say "training: $CONFIG from its initialisation for up to $minutes min (hard limit ${hard}s): ${overrides[*]}"
        timeout -k 20 "$hard" "$PY" -m surge.train --run-dir "$run" "$CONFIG" "${overrides[@]}" || rc=$?
    fi
    local train_s=$((SECONDS - t0))
    # A spent budget or a stop signal ends a run with 130; either way last.pt holds the state.
    if [[ ! -f $run/last.pt ]]; then
        training_failed failed "training exited $rc without a checkpoint"
        return
    fi
    [[ -f $run/log.csv ]] && cp "$run/log.csv" "$OUT/train-log.csv"
    local name=${SURGE_NAME:-}
    if [[ -z $name ]]; then
        name=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['train']['name'])" "$run/config.json")
    fi
    say "export: $name.safetensors (float16) and the travel state"
    "$PY" -m surge.training.travel export "$run" "$OUT/$name.safetensors" --dtype float16 \
        || { phase export failed 0 "float16 export failed"; }
    # The state gets what the other files leave of 64 MiB and 8 files (1 MiB kept for logs and summary).
    local others=0 count=0 f
    for f in "$OUT"/*; do
        [[ -f $f && $f != "$OUT"/state-*.safetensors ]] || continue
        others=$((others + $(stat -c %s "$f"))); count=$((count + 1))
    done
    [[ -f $OUT/summary.json ]] || count=$((count + 1))
    [[ -f $OUT/session.log ]] || count=$((count + 1))
    local budget_mib
    budget_mib=$(awk -v o="$others" -v t="$OUT_MIB" 'BEGIN { printf "%.2f", t - 1 - o / 1048576 }')
    "$PY" -m surge.training.travel pack "$run" "$OUT" --profile "$PROFILE" --budget-mib "$budget_mib" \
        --part-mib "$PART_MIB" --max-parts $((MAX_FILES - count)) > "$WORK/pack.json" \
        || { phase state failed 0 "travel state not written (see session.log)"; }
    # Scores of the returned weights, if time is left (the trainer's own Set5 validation is in the log).
    local eval_timeout=$(($(left_s) - 10))
    if ((eval_timeout > 15)) && [[ -f $OUT/$name.safetensors ]]; then
        local sets=() set
        for set in Set5 Set14; do [[ -d $PACK/benchmark/$set ]] && sets+=("$set"); done
        say "evaluation: $name.safetensors on ${sets[*]} (timeout ${eval_timeout}s)"
        timeout -k 5 "$eval_timeout" "$PY" -m surge eval --model "$OUT/$name.safetensors" --data "$PACK/benchmark" \
            --sets "${sets[@]}" --json "$WORK/eval.json" --device "$DEVICE" --quiet \
            || echo "device_session: warning: evaluation failed or was cut off" >&2
    fi
    RC=$rc RESUMED=$resumed TRAIN_S=$train_s COMPILE_CHOICE=$COMPILE_CHOICE INIT_CHOICE=$INIT_CHOICE "$PY" - "$run" "$WORK/pack.json" "$WORK/eval.json" > "$WORK/training.json" <<'EOF'
import csv, json, os, sys
run, pack, evaluation = sys.argv[1:4]
out = {"exit": int(os.environ["RC"]), "resumed": os.environ["RESUMED"] == "1", "seconds": int(os.environ["TRAIN_S"]),
       "compile": os.environ["COMPILE_CHOICE"], "init_from": os.environ["INIT_CHOICE"]}
try:
    p = json.load(open(pack))
    lineage = p["lineage"]
    out.update(end_step=p["step"], start_step=lineage[-1]["start_step"], steps=lineage[-1]["steps"],
               state={"profile": p["profile"], "files": p["files"], "bytes": p["bytes"]}, lineage=lineage,
               total_steps=sum(e["steps"] for e in lineage))
except (OSError, ValueError, KeyError) as exc:
    out["state_error"] = str(exc)
try:
    rows = list(csv.DictReader(open(os.path.join(run, "log.csv"))))
    timed = [r for r in rows if r.get("seconds")]
    out["val_psnr_y"] = [[int(r["step"]), float(r["val_psnr_y"])] for r in rows if r.get("val_psnr_y")]
    if timed:
        out["step_seconds_logged_median"] = sorted(float(r["seconds"]) for r in timed)[len(timed) // 2]
        out["last_loss_g"] = float(timed[-1]["loss_g"])
    runtime = json.load(open(os.path.join(run, "runtime.json")))
    out["runtime"] = {k: runtime[-1].get(k) for k in ("device_name", "precision", "torch", "started")}
except (OSError, ValueError, KeyError, IndexError):
    pass
if out.get("steps") and out["seconds"]:
    out["steps_per_s_incl_startup"] = round(out["steps"] / out["seconds"], 3)
    wall = out["lineage"][-1].get("wall_seconds") or 0
    if wall > 0:  # the trainer's own clock: steps, checkpoints and validation, without start-up
        out["steps_per_s"] = round(out["steps"] / wall, 3)
try:
    out["eval"] = json.load(open(evaluation))
except (OSError, ValueError):
    pass
print(json.dumps(out))
EOF
    summary training "$WORK/training.json"
    local status=ok note=""
    if [[ $rc == 124 || $rc == 137 ]]; then status=failed note="training outlasted its hard limit and was stopped (state of its last checkpoint)"
    elif [[ $rc != 0 && $rc != 130 ]]; then status=failed note="training exited $rc (state saved at its last checkpoint)"; fi
    [[ -s $WORK/pack.json ]] || { status=failed; note="${note:+$note; }no travel state"; }
    phase training "$status" $((SECONDS - t0)) "$note"
}

# --- limits of what comes back -----------------------------------------------------------------
check_limits() {
    "$PY" - "$OUT" "$MAX_FILES" "$PART_MIB" "$OUT_MIB" > "$WORK/limits.json" <<'EOF'
import json, os, sys
out, max_files, part_mib, out_mib = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
files = {n: os.path.getsize(os.path.join(out, n)) for n in sorted(os.listdir(out))}
# the log grows until the script ends: a margin of 64 KiB for its last lines
files.setdefault("session.log", 0)
big = [n for n, s in files.items() if s > part_mib * 2**20]
total = sum(files.values()) + 65536
ok = len(files) <= max_files and not big and total <= out_mib * 2**20
print(json.dumps({"ok": ok, "files": files, "count": len(files), "total_mib": round(total / 2**20, 2),
                  "over_part_limit": big}))
EOF
    summary limits "$WORK/limits.json"
    "$PY" -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))['ok'] else 1)" "$WORK/limits.json" \
        || { echo "device_session: error: \$OUT breaks the device tool's limits: $(cat "$WORK/limits.json")" >&2; FAILED=1; }
}

main() {
    say "surge device session in $REPO -> $OUT"
    PACK=$(cd "$PACK_ARG" 2>/dev/null && pwd) || { echo "device_session: error: $PACK_ARG: packed data not found (scripts/pack_data.py --out .pack, and carry it)" >&2; return 3; }
    [[ -d $PACK/benchmark/Set5 ]] || { echo "device_session: error: $PACK/benchmark/Set5: not packed" >&2; return 3; }
    summary_json started_utc "\"$(date -u +%FT%TZ)\""
    # the pack's record of its data (pack_data.py --fit may have left training images out): summary.json
    # comes back, the manifest does not
    [[ -f $PACK/manifest.json ]] && summary_json pack "$("$PY" -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(json.dumps({"train_images": sum(f["packed"].startswith("train/") for f in m["files"]),
                  "left_out": [e["packed"] for e in m.get("left_out", [])], "bytes": m["total_bytes"]}))' "$PACK/manifest.json" 2>/dev/null || echo '"unreadable manifest.json"')"
    environment
    local why
    why=$(DEVICE=$DEVICE "$PY" -c '
import json, os, sys
env = json.load(open(sys.argv[1]))
if not str(env["modules"].get("torch", "missing"))[:1].isdigit():
    print("no torch in this interpreter")
elif os.environ["DEVICE"] == "cuda" and not env.get("gpu"):
    print("no CUDA device visible (SURGE_DRY_RUN=1 runs the CPU rehearsal)")' "$WORK/env.json")
    if [[ -n $why ]]; then echo "device_session: error: $PY: $why" >&2; return 3; fi
    local p
    for p in tests inference throughput training; do
        if [[ " ${SURGE_SKIP:-} " == *" $p "* ]]; then
            summary_json "$p" '{"status": "skipped"}'
            phase "$p" skipped 0 "SURGE_SKIP"
            continue
        fi
        case $p in tests) run_tests ;; inference) run_inference ;; throughput) run_throughput ;; training) run_training ;; esac
    done
    say "done; in $OUT:"
    ls -l "$OUT"
    check_limits
    return $FAILED
}

main 2>&1 | tee "$OUT/session.log"
exit "${PIPESTATUS[0]}"
