"""Where the benchmarks find things: the project, the shared real data (`$FACEKIT_SHARED_DATA`, as the tests read
it; default ../shared/data) and the published SCRFD-500M detector in it."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
SCRFD = SHARED / "weights" / "scrfd_500m_kps" / "scrfd_500m_bnkps.onnx"
