#!/usr/bin/env bash
# The GPU check: does the CUDA path train, resume, fine-tune and convert as the CPU path does?
#
#   bash benchmarks/gpu/validate.sh            # one CUDA GPU, `small`, about 8 minutes on an H100
#   bash benchmarks/gpu/validate.sh --cpu      # the same steps on the CPU with `tiny` (what CI runs)
#   options: --work DIR (keep everything there; default a fresh temporary folder)
#
# Steps, each printing its thresholds and PASS/FAIL (INFO: reported, not gated):
#   1. SDPA backend probe at 7B shapes (benchmarks/gpu/probe.py)
#   2. data: python docs + code -> tokenizer -> shards; grounded SFT conversations
#   3. pretrain 30 steps with the recipe's micro-batch (`--plan`): loss falls, tokens/s, MFU, peak memory
#   4. resume from the mid-run checkpoint: losses within 0.02 of the straight run
#   5. 20 SFT steps: FlexAttention on CUDA (dense SDPA mask on the CPU), loss falls
#   6. export -> convert f32 / q8_0 / q4_k_m -> verify -> KL-divergence gates (chakor eval)
# Only `chakor` commands run the work; benchmarks/gpu/check.py reads what they wrote.
# Exit status: 0 when every step passed, 1 when one failed (the summary names it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CPU=0
WORK=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) CPU=1 ;;
        --work) WORK="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "validate.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/chakor-validate.XXXXXX")}"
if [[ -d "$WORK" && -n "$(ls -A "$WORK")" ]]; then
    echo "validate.sh: --work $WORK is not empty (its runs would be refused): give a new or empty folder" >&2
    exit 2
fi
mkdir -p "$WORK"

if [[ $CPU == 1 ]]; then
    # tiny on the CPU: few steps, a small corpus, thresholds relaxed (check.py --cpu); tiny is 128 wide,
    # too narrow for K-quants (rows of 256), so q4_k_m is left out. Two gloo processes of one thread
    # each: FSDP really shards, and no OpenMP thread spin-waits for a core another process holds.
    CONFIG=tiny STEPS=8 SFT_STEPS=4 VOCAB=512 MAX_BYTES=300000 SFT_LIMIT=200 CHECK=(--cpu)
    QUANTS=(f32 q8_0) BACKEND="sdpa with a dense document mask" KLD_TOKENS=2048 NPROC=2
else
    CONFIG=small STEPS=30 SFT_STEPS=20 VOCAB=4096 MAX_BYTES=2000000 SFT_LIMIT=2000 CHECK=()
    QUANTS=(f32 q8_0 q4_k_m) BACKEND="flex_attention" KLD_TOKENS=16384 NPROC=1
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || { echo "validate.sh: no CUDA GPU visible; run with --cpu for the CPU check" >&2; exit 2; }
fi
HALF=$((STEPS / 2))

chakor() { "$PY" -m chakor "$@"; }
check() { "$PY" -m benchmarks.gpu.check "${CHECK[@]}" "$@"; }
FAILED=()
START=$SECONDS
step() { echo; echo "== $1  [$((SECONDS - START)) s]"; }
verdict() {  # verdict NAME COMMAND...: run a check; a failure is remembered, the script goes on
    local name="$1"; shift
    if "$@"; then echo "PASS $name"; else echo "FAIL $name"; FAILED+=("$name"); fi
}
quiet() {  # quiet LOG COMMAND...: run a chakor command with its output in LOG; on failure show the end
    local log="$1"; shift
    if ! "$@" >"$log" 2>&1; then
        echo "command failed: $* (log: $log)"; tail -n 20 "$log"; return 1
    fi
}

echo "chakor GPU check: $([[ $CPU == 1 ]] && echo "CPU mode, $CONFIG" || echo "CUDA, $CONFIG"); work folder $WORK"

step "1. SDPA backend probe (causal: flash/cuDNN; SFT: flex_attention, never the math kernel)"
verdict "sdpa probe" "$PY" -m benchmarks.gpu.probe "${CHECK[@]}"

step "2. data: python docs + code -> tokenizer ($VOCAB) -> shards; SFT conversations"
quiet "$WORK/data.log" chakor data prepare --source local:python-docs --source local:python-code \
    --max-bytes "$MAX_BYTES" --out "$WORK/clean"
quiet "$WORK/data.log" chakor tokenizer train --data "$WORK/clean" --vocab-size "$VOCAB" --out "$WORK/tokenizer"
quiet "$WORK/data.log" chakor data tokenize --data "$WORK/clean" --tokenizer "$WORK/tokenizer" --out "$WORK/shards"
quiet "$WORK/data.log" chakor data sft --source local:python-grounded --limit "$SFT_LIMIT" --out "$WORK/sft-data"
echo "PASS data ($(du -sh "$WORK/shards" | cut -f1) of shards)"

step "3. pretrain $CONFIG for $STEPS steps with the recipe's micro-batch (loss falls; tokens/s, MFU, peak memory vs --plan)"
chakor train --config "$CONFIG" --tokenizer "$WORK/tokenizer" --nproc "$NPROC" --plan >"$WORK/plan.json"
read -r MICRO SEQ < <("$PY" -c "import json, sys; p = json.load(open(sys.argv[1])); print(p['local_batch_size'], p['seq_len'])" "$WORK/plan.json")
# One micro-batch per step (no accumulation): every step is timed at the planned micro-batch, whose
# memory the plan estimated.
echo "micro-batch $MICRO x seq_len $SEQ"
quiet "$WORK/pretrain.out" chakor train --config "$CONFIG" --data "$WORK/shards" --tokenizer "$WORK/tokenizer" \
    --out "$WORK/pretrain" --nproc "$NPROC" --steps "$STEPS" --batch-size "$MICRO" \
    --global-batch-size "$((MICRO * NPROC))" --warmup-steps 5 --checkpoint-every "$HALF" --eval-every "$STEPS"
verdict "pretrain" check pretrain "$WORK/pretrain" --plan "$WORK/plan.json"

step "4. resume from the checkpoint at step $HALF (losses within 0.02 of the straight run)"
rm -rf "$WORK/resumed"
cp -r "$WORK/pretrain" "$WORK/resumed"
find "$WORK/resumed/checkpoint" -mindepth 1 -maxdepth 1 ! -name "step-$HALF" -exec rm -rf {} +
"$PY" -c "
import json, sys
path = sys.argv[1]
records = [json.loads(line) for line in open(path) if line.strip()]
open(path, 'w').writelines(json.dumps(r) + '\n' for r in records if r.get('step', 0) <= int(sys.argv[2]))
" "$WORK/resumed/metrics.jsonl" "$HALF"
quiet "$WORK/resume.out" chakor train --data "$WORK/shards" --out "$WORK/resumed" --nproc "$NPROC" --resume
verdict "resume" check resume "$WORK/pretrain" "$WORK/resumed" --from "$HALF" --tolerance 0.02

step "5. SFT for $SFT_STEPS steps (attention backend: $BACKEND; loss falls)"
quiet "$WORK/sft.out" chakor sft --base "$WORK/pretrain" --data "$WORK/sft-data/sft.jsonl" --out "$WORK/sft" \
    --nproc "$NPROC" --steps "$SFT_STEPS"
verdict "sft" check sft "$WORK/sft" --backend "$BACKEND"

step "6. export -> convert ${QUANTS[*]} -> verify -> KL-divergence gates"
quiet "$WORK/export.out" chakor export "$WORK/sft" --out "$WORK/export"
GGUFS=()
for quant in "${QUANTS[@]}"; do
    quiet "$WORK/convert-$quant.out" chakor convert "$WORK/export" --outtype "$quant" \
        --outfile "$WORK/model-$quant.gguf"
    GGUFS+=("$WORK/model-$quant.gguf")
done
verdict "verify (llama.cpp reproduces the export)" quiet "$WORK/verify.out" chakor verify "${GGUFS[@]}" \
    --export "$WORK/export" --data "$WORK/shards" --report "$WORK/verify.json"
# chakor eval exits 1 on a failed gate; check.py reads eval.json and applies this mode's thresholds.
chakor eval "$WORK/export" "${GGUFS[@]}" --data "$WORK/shards" --no-bench --min-kld-tokens "$KLD_TOKENS" \
    --out "$WORK/eval" >"$WORK/eval.out" 2>&1 || true
if [[ -f "$WORK/eval/eval.json" ]]; then
    verdict "KL-divergence gates" check gates "$WORK/eval/eval.json"
else
    echo "chakor eval wrote no eval.json:"; tail -n 20 "$WORK/eval.out"; FAILED+=("KL-divergence gates")
fi

echo
echo "== done in $((SECONDS - START)) s; outputs in $WORK"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAIL: ${FAILED[*]}"
    exit 1
fi
echo "PASS: every step"
