#!/usr/bin/env bash
# Recognize the faces in photos (an image, a folder or a list file) against a gallery made by build-db.
# usage: bin/run_face_recognition.sh data_path db_path detect_model_path recognize_model_path [options...]
# Options may also come from FACEKIT_RECOGNIZE_<OPTION> variables (e.g. FACEKIT_RECOGNIZE_THRESHOLD=0.4).
set -euo pipefail
if [ "$#" -lt 4 ]; then
  echo "usage: $(basename "$0") data_path db_path detect_model_path recognize_model_path [recognize options...]" >&2
  exit 2
fi
source "$(dirname "$0")/facekit_command.sh"
exec "${FACEKIT_CMD[@]}" recognize "$1" "$2" "$3" "$4" "${@:5}"
