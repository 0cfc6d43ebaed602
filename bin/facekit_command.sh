# Sourced by the run_*.sh scripts: FACEKIT_CMD is the facekit command to run, in this order of preference:
# $FACEKIT (e.g. "python -m facekit"), the project's .venv, facekit on the PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${FACEKIT:-}" ]; then
  read -r -a FACEKIT_CMD <<< "$FACEKIT"
elif [ -x "$root/.venv/bin/facekit" ]; then
  FACEKIT_CMD=("$root/.venv/bin/facekit")
elif command -v facekit > /dev/null; then
  FACEKIT_CMD=(facekit)
else
  echo "facekit is not installed: run 'make install' in $root" >&2
  exit 1
fi
