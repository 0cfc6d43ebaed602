#!/usr/bin/env bash
# Train a face recognizer on recognition_train_data/ (cele.rec, cele.idx, cele.lst, property [, *.bin]).
# usage: bin/run_face_recognition_train.sh data_path model_output_path [facekit train-recognize options...]
# Options may also come from FACEKIT_TRAIN_RECOGNIZE_<OPTION> variables (e.g. FACEKIT_TRAIN_RECOGNIZE_EPOCHS=5).
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $(basename "$0") data_path model_output_path [train-recognize options...]" >&2
  exit 2
fi
source "$(dirname "$0")/facekit_command.sh"
exec "${FACEKIT_CMD[@]}" train-recognize "$1" "$2" "${@:3}"
