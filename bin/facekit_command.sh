# Sourced by the run_*.sh scripts: FACEKIT_CMD is the facekit command to run, in this order of preference:
# $FACEKIT (an executable, or shell words such as "python -m facekit"), the project's .venv, facekit on the PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${FACEKIT:-}" ]; then
  if [ -f "$FACEKIT" ] && [ -x "$FACEKIT" ]; then
    FACEKIT_CMD=("$FACEKIT")  # one executable, whatever its path holds (spaces too)
  else
    eval "FACEKIT_CMD=($FACEKIT)"  # shell words: quote a path with spaces, e.g. '"/my env/bin/python" -m facekit'
  fi
elif [ -x "$root/.venv/bin/facekit" ]; then
  FACEKIT_CMD=("$root/.venv/bin/facekit")
elif command -v facekit > /dev/null; then
  FACEKIT_CMD=(facekit)
else
  echo "facekit is not installed: run 'make install' in $root" >&2
  exit 1
fi
