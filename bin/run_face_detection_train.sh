#!/usr/bin/env bash
# Train a face detector (RetinaFace) on detection_train_data/{train,val}.
# usage: bin/run_face_detection_train.sh data_path model_output_path [facekit train-detect options...]
# Options may also come from FACEKIT_TRAIN_DETECT_<OPTION> variables (e.g. FACEKIT_TRAIN_DETECT_EPOCHS=50).
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $(basename "$0") data_path model_output_path [train-detect options...]" >&2
  exit 2
fi
source "$(dirname "$0")/facekit_command.sh"
exec "${FACEKIT_CMD[@]}" train-detect "$1" "$2" "${@:3}"
