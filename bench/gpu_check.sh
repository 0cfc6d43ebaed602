#!/usr/bin/env bash
# The GPU path, run for real, in about 8 minutes on one GPU: training speed (fp32 vs bf16 + channels_last, peak
# memory), the real-data loader against the GPU, torchrun + NCCL with --resume, detector training with AMP,
# recognize on CUDA (PyTorch and ONNX Runtime) against the CPU, and the fp16 loss-scale watchdog. One summary table
# at the end; the exit status is non-zero when any step failed.
#
#   bench/gpu_check.sh [--dry-run] [OUT]      (OUT: where logs and models go; default gpu_check_out)
#
# --dry-run runs the same steps on the CPU with tiny sizes (CI runs it: tests/test_gpu_check.py). The real data is
# $FACEKIT_SHARED_DATA (default ../shared/data); PYTHON picks the interpreter (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python}
DATA=${FACEKIT_SHARED_DATA:-../shared/data}
REC_DATA=$DATA/layouts/recognition_train_data
KNN=$DATA/faces/face_recognition_examples/examples/knn_examples
SCRFD=$DATA/weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx
mkdir -p "$OUT"

if [ $DRY = 1 ]; then
  # the training files without orl_val.bin: validating 800 photos at each of 3 stops was most of the dry run's time
  mkdir -p "$OUT/rec_data"
  for f in cele.rec cele.idx cele.lst property; do ln -sf "$(realpath "$REC_DATA/$f")" "$OUT/rec_data/$f"; done
  REC_DATA=$OUT/rec_data
  DEVICE=cpu
  SPEED=(--smoke)
  LOADER=(--smoke)
  REC=(--batch-size 20 --epochs 1 --workers 0)  # 15 steps an epoch: stop at 2, resume to 4 (80 images in all)
  STOP=2 TOTAL=4
  DET=(--epochs 1 --batch-size 4 --image-size 160 --workers 0 --no-onnx)
  FP16=(--batch-size 20 --epochs 1 --workers 0 --stop-at-step 3)
else
  DEVICE=cuda
  SPEED=(--batch 128 256 --steps 20 --backbones iresnet50 mobilefacenet)
  LOADER=(--batch 256 --batches 20 --workers "$(nproc)")
  REC=(--batch-size 30 --epochs 25 --workers 8)  # 10 steps an epoch: stop at 200, resume to the end, 250
  STOP=200 TOTAL=250
  DET=(--epochs 2 --batch-size 16 --workers 8 --no-onnx)
  FP16=(--batch-size 30 --epochs 10 --workers 8 --log-every 10)  # 100 steps
fi

ROWS=()
FAILED=0

# step NAME SUMMARY_COMMAND -- COMMAND...: run COMMAND (output in OUT/NAME.log), then SUMMARY_COMMAND for the row.
step() {
  local name=$1 summary=$2
  shift 3
  local start=$SECONDS status=ok
  echo "== $name: $*" | tee "$OUT/$name.log"
  if ! "$@" >> "$OUT/$name.log" 2>&1; then status=FAIL; FAILED=1; fi
  local detail
  detail=$(eval "$summary" 2>/dev/null | tail -n 1)
  ROWS+=("$(printf '%-14s %-5s %5ss  %s' "$name" "$status" $((SECONDS - start)) "${detail:-see $OUT/$name.log}")")
  tail -n 3 "$OUT/$name.log"
}

# the value of `key` in the last record of metrics.json's history that has it
metric() {
  "$PY" -c "import json, sys; h = json.load(open(sys.argv[1]))['history']; v = [r[sys.argv[2]] for r in h if sys.argv[2] in r]; print(v[-1] if v else 'none')" "$1" "$2"
}

"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/versions.txt"

# 1. training speed on synthetic batches: fp32 vs bf16 + channels_last, peak memory
step train_speed "grep -E '^(iresnet50|mobilefacenet) .*(bf16|channels_last)' '$OUT/train_speed.log' | tail -n 1" -- \
  "$PY" bench/bench_train_recognize.py --device $DEVICE "${SPEED[@]}"

# 2. the real-data loader alone and feeding the step
step loader "grep 'the loader' '$OUT/loader.log'" -- \
  "$PY" bench/bench_loader.py --device $DEVICE --data "$REC_DATA" "${LOADER[@]}"

# 3. torchrun (NCCL on CUDA, gloo on the CPU): stop at STOP steps, then --resume to TOTAL; steps and loss continue
resumed() {
  "$PY" -m torch.distributed.run --nproc_per_node 1 -m facekit train-recognize "$REC_DATA" "$OUT/recognizer" \
    --backbone mobilefacenet --device $DEVICE "${REC[@]}" --stop-at-step $STOP --no-onnx &&
  [ "$(metric "$OUT/recognizer/metrics.json" step)" = "$STOP" ] &&
  "$PY" -m torch.distributed.run --nproc_per_node 1 -m facekit train-recognize "$REC_DATA" "$OUT/recognizer" \
    --backbone mobilefacenet --device $DEVICE "${REC[@]}" --resume --stop-at-step $TOTAL &&
  [ "$(metric "$OUT/recognizer/metrics.json" step)" = "$TOTAL" ]
}
step torchrun "echo steps $STOP then $TOTAL, loss \$(metric '$OUT/recognizer/metrics.json' loss), orl_val \$(metric '$OUT/recognizer/metrics.json' val_orl_val_acc)" -- resumed

# 4. detector training with AMP: the loss is finite and val AP printed
step train_detect "echo val_ap50 \$(metric '$OUT/detector/metrics.json' val_ap50), loss \$(metric '$OUT/detector/metrics.json' loss)" -- \
  "$PY" -m facekit train-detect "$DATA/layouts/detection_train_data" "$OUT/detector" --device $DEVICE --amp "${DET[@]}"

# 5. recognize on the device (PyTorch, then ONNX Runtime) against the CPU: the same identities
recognize_all() {
  "$PY" -m facekit build-db "$KNN/train" "$SCRFD" "$OUT/recognizer" "$OUT/knn.h5" &&
  for backend in torch onnx; do
    for device in cpu $DEVICE; do
      local t0=$SECONDS
      "$PY" -m facekit recognize "$KNN/test" "$OUT/knn.h5" "$SCRFD" "$OUT/recognizer" --backend $backend \
        --device "$device" --format csv --out "$OUT/knn_${backend}_$device.csv" || return 1
      echo "$backend $device: $(($(wc -l < "$OUT/knn_${backend}_$device.csv") - 1)) faces in $((SECONDS - t0)) s"
    done
    # the same faces and identities (image, face, identity) on the CPU and the device
    diff <(cut -d, -f1,2,8 "$OUT/knn_${backend}_cpu.csv") <(cut -d, -f1,2,8 "$OUT/knn_${backend}_$DEVICE.csv") || return 1
  done
}
step recognize "grep -E '^(torch|onnx) ' '$OUT/recognize.log' | tr '\n' ';'" -- recognize_all

# 6. fp16: the loss scale after training; a collapse stops the trainer with one line
fp16() {
  "$PY" -m facekit train-recognize "$REC_DATA" "$OUT/fp16" --backbone mobilefacenet --device $DEVICE --amp fp16 \
    "${FP16[@]}" --no-onnx
  local rc=$?
  if [ $rc -ne 0 ] && grep -q "loss scale collapsed" "$OUT/fp16_scale.log"; then return 0; fi  # the watchdog spoke
  return $rc
}
step fp16_scale "grep -o 'loss scale collapsed.*' '$OUT/fp16_scale.log' || echo loss_scale \$(metric '$OUT/fp16/metrics.json' loss_scale)" -- fp16

echo
echo "summary ($(cat "$OUT/versions.txt"))"
printf '%-14s %-5s %6s  %s\n' step state time detail
for row in "${ROWS[@]}"; do echo "$row"; done
exit $FAILED
