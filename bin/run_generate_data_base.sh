#!/usr/bin/env bash
# Build the gallery ("base library") of known people: one folder per person (or a path,identity CSV / .lst).
# usage: bin/run_generate_data_base.sh data_path detect_model_path recognize_model_path db_output_path [options...]
# Options may also come from FACEKIT_BUILD_DB_<OPTION> variables (e.g. FACEKIT_BUILD_DB_FLIP=1).
set -euo pipefail
if [ "$#" -lt 4 ]; then
  echo "usage: $(basename "$0") data_path detect_model_path recognize_model_path db_output_path [build-db options...]" >&2
  exit 2
fi
source "$(dirname "$0")/facekit_command.sh"
exec "${FACEKIT_CMD[@]}" build-db "$1" "$2" "$3" "$4" "${@:5}"
