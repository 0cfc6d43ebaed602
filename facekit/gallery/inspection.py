"""`facekit inspect` of a gallery: what it holds, and the files beside it (cached faiss indexes, temporaries)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from facekit.data.inspect import Report
from facekit.errors import FacekitError
from facekit.gallery.indexes import CACHED, FaissIndex, cache_path
from facekit.gallery.schema import NORM_TOLERANCE
from facekit.gallery.store import Gallery, stale_temporaries


def inspect_gallery(path: Path) -> Report:
    """A build-db gallery: sizes and models (loading it checks every field against the schema, and raises on a bad
    one). Stored templates that are not the identities' means, and a cached faiss index beside it that does not
    hold exactly its rows (recognize rebuilds such a cache), are problems; temporaries of killed writes are notes."""
    report = Report("gallery", str(path))
    gallery = Gallery.load(path)
    counts = gallery.counts().values()
    report.summary.update(
        faces=len(gallery),
        identities=len(gallery.identities),
        faces_per_identity={"min": min(counts), "max": max(counts)},
        embedding_dim=gallery.dim,
        recognizer=gallery.recognizer.name,
        detector=gallery.detector.name,
        created=gallery.created,
    )
    templates = gallery.templates()
    with h5py.File(path, "r") as f:  # load() checked it; recognize computes its own templates
        off = np.abs(f["templates"][()] - templates).max(1) > NORM_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        report.problems.append(
            f"{path}: dataset templates row {i} ({gallery.identities[i]!r}) is not the mean of that identity's "
            "embeddings (other readers would use it); rebuild the gallery with build-db"
        )
    caches = {}
    for prefix, vectors in ((path, gallery.embeddings), (path.with_name(path.name + ".templates"), templates)):
        for kind in CACHED:
            cache = cache_path(prefix, kind, gallery.content_id)
            if cache.is_file():
                caches[cache.name] = problem = _cache_problem(cache, kind, vectors)
                if problem != "ok":
                    report.problems.append(f"{cache}: cached index {problem}; recognize --index {kind} rebuilds it")
    if caches:
        report.summary["faiss_caches"] = caches
    for stale in stale_temporaries(path):
        report.notes.append(f"{stale}: temporary file of a killed write; the next write to {path.name} removes it")
    return report


def _cache_problem(cache: Path, kind: str, vectors: np.ndarray) -> str:
    """'ok', or what is wrong with the `kind` index cached at `cache` for `vectors`."""
    try:
        index = FaissIndex.load(cache)
    except FacekitError as exc:
        return str(exc).removeprefix(f"{cache}: ")
    if index.kind != kind:
        return f"is of kind {index.kind}, not {kind}"
    return index.mismatch(vectors) or "ok"
