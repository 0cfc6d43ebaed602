"""facekit with dlib's recognizer vs dlib's own pipeline, end to end on raw photos of people neither saw in training
nor in the template fit: verification accuracy on the same pairs.

    python bench/compare_dlib.py --out DIR [--celeba-pairs 3000] [--orl-pairs 800]

- dlib: HOG detector (one upsampling) + shape_predictor_5 + `compute_face_descriptor` (chip 150, padding 0.25), as
  face_recognition runs it, in the cached dlib environment (tests/dlib_env.py; dlib-bin from PyPI).
- facekit: `facekit embed` (SCRFD-500M, `--pick center`) with the model `facekit import-model dlib-resnet` makes
  from the same .dat: aligned to DLIB_TEMPLATE (fitted on CelebA people 7201-7449), no dlib at run time.

Both keep the face nearest each photo's centre. Pairs (facekit.data.pairs.sample_pairs, seed 0, as `make-bin`
draws them) of: ORL s31-s40 (orl_val.bin's people, raw 92x112 photos) and the CelebA evaluation people 7450-7499.
Accuracy is insightface's 10-fold protocol (no flip: dlib has none) on the pairs where both pipelines found both
faces, then on all pairs with a missed face counted as "different" (a random embedding), and at each pipeline's
fixed threshold: dlib's Euclidean 0.6, facekit's translation of it (cosine, from the model's config). Prints a
Markdown table and writes DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from paths import ROOT, SCRFD, SHARED


def photo_pairs(people: list[Path], count: int) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(photos, pairs [P, 2] indices into photos, issame [P]) drawn as make-bin draws them."""
    from facekit.data.pairs import sample_pairs

    photos = [sorted(p for p in person.iterdir() if p.is_file()) for person in people]
    plan = sample_pairs([len(p) for p in photos], count, seed=0)
    flat = [photo for person in photos for photo in person]
    start = np.cumsum([0] + [len(p) for p in photos])
    index = np.array([[start[a[0]] + a[1], start[b[0]] + b[1]] for a, b, _ in plan.pairs])
    return flat, index, np.array([same for _, _, same in plan.pairs])


def as_png(photos: list[Path], work: Path) -> list[Path]:
    """Lossless PNG copies of photos dlib cannot read (ORL's .pgm), else the photos themselves."""
    import cv2

    out = []
    for photo in photos:
        if photo.suffix.lower() in (".jpg", ".jpeg", ".png"):
            out.append(photo)
            continue
        copy = work / "png" / photo.parent.name / f"{photo.stem}.png"
        copy.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(copy), cv2.imread(str(photo), cv2.IMREAD_UNCHANGED))
        out.append(copy)
    return out


def facekit_embeddings(photos: list[Path], model: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """`facekit embed` of each photo: unit embeddings [N, D] and found [N] (False: no face, a zero row)."""
    listing, out = work / "photos.txt", work / "facekit.npy"
    listing.write_text("".join(f"{p}\n" for p in photos))
    command = [sys.executable, "-m", "facekit", "embed", listing, "--detect", SCRFD, "--recognize", model,
               "--out", out, "--pick", "center"]  # fmt: skip
    subprocess.run([str(c) for c in command], check=False)  # exit 0: written, with photos of no face listed
    rows = [json.loads(line)["image"] for line in out.with_suffix(".jsonl").read_text().splitlines()]
    found = {Path(image).resolve(): i for i, image in enumerate(rows)}
    vectors = np.load(out)
    embeddings = np.zeros((len(photos), vectors.shape[1]), np.float32)
    have = np.array([p.resolve() in found for p in photos])
    for i, photo in enumerate(photos):
        if have[i]:
            embeddings[i] = vectors[found[photo.resolve()]]
    return embeddings, have


def dlib_descriptors(photos: list[Path], work: Path) -> tuple[np.ndarray, np.ndarray]:
    """dlib's raw descriptors [N, 128] and found [N]."""
    from dlib_chips import dlib_faces

    faces = dlib_faces(photos, "descriptors", work)
    have = np.array([face is not None for face in faces])
    return np.array([face["descriptor"] if face else [0.0] * 128 for face in faces], np.float32), have


def accuracy(vectors: np.ndarray, pairs: np.ndarray, issame: np.ndarray) -> float:
    from facekit.recognition.verification import verification_metrics

    return verification_metrics(vectors[pairs.reshape(-1)], issame).accuracy


def compare(name: str, people: list[Path], count: int, model: Path, threshold: float, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    photos, pairs, issame = photo_pairs(people, count)
    used = np.unique(pairs)
    readable = as_png([photos[i] for i in used], work)
    ours, ours_found = facekit_embeddings(readable, model, work)
    theirs, theirs_found = dlib_descriptors(readable, work)
    pairs = np.searchsorted(used, pairs)  # indices into the used photos
    both = (ours_found & theirs_found)[pairs].all(1)
    rng = np.random.default_rng(0)
    result = {"set": name, "people": f"{people[0].name}..{people[-1].name} ({len(people)})", "pairs": len(pairs),
              "same": int(issame.sum()), "pairs_both_found": int(both.sum())}  # fmt: skip
    for label, vectors, found in (("dlib", theirs, theirs_found), ("facekit", ours, ours_found)):
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        misses = rng.standard_normal((int((~found).sum()), unit.shape[1]))
        filled = unit.copy()
        filled[~found] = misses / np.linalg.norm(misses, axis=1, keepdims=True)
        if label == "dlib":
            decide = np.linalg.norm(vectors[pairs[:, 0]] - vectors[pairs[:, 1]], axis=1) < 0.6
        else:
            decide = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(1) >= threshold
        decide &= found[pairs].all(1)
        result[label] = {
            "photos_without_face": int((~found).sum()),
            "accuracy_both_found": round(accuracy(unit, pairs[both], issame[both]), 4),
            "accuracy_all_pairs": round(accuracy(filled, pairs, issame), 4),
            "accuracy_fixed_threshold": round(float((decide == issame).mean()), 4),
        }
    return result


def import_dlib(out: Path) -> Path:
    """out/dlib_model: `facekit import-model dlib-resnet` of dlib's .dat (fetched into the cache of the tests' dlib
    environment), unless an earlier run made it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from dlib_env import dlib_models

    model = out / "dlib_model"
    if not (model / "model.pt").exists():
        dat = dlib_models() / "dlib_face_recognition_resnet_model_v1.dat"
        subprocess.run([sys.executable, "-m", "facekit", "import-model", "dlib-resnet", str(dat), str(model)],
                       check=True)  # fmt: skip
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--celeba-pairs", type=int, default=3000)
    parser.add_argument("--orl-pairs", type=int, default=800)
    args = parser.parse_args()
    out = args.out.resolve()
    model = import_dlib(out)
    from facekit.runtime.recognizer import load_face_recognizer

    out.mkdir(parents=True, exist_ok=True)
    threshold = load_face_recognizer(model).threshold
    orl = [SHARED / "faces" / "orl" / f"s{k}" for k in range(31, 41)]
    celeba = sorted((SHARED / "faces" / "celeba_subset").glob("74[5-9]?"))
    results = [
        compare("ORL s31-s40", orl, args.orl_pairs, model, threshold, out / "orl"),
        compare("CelebA evaluation people", celeba, args.celeba_pairs, model, threshold, out / "celeba"),
    ]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| photos | pairs (same) | pipeline | photos without a face | accuracy, both found | accuracy, all pairs "
          "| accuracy at the fixed threshold |\n|---|---|---|---:|---:|---:|---:|")  # fmt: skip
    for r in results:
        for label in ("dlib", "facekit"):
            m = r[label]
            print(f"| {r['set']} {r['people']} | {r['pairs']} ({r['same']}; {r['pairs_both_found']} both found) | "
                  f"{label} | {m['photos_without_face']} | {m['accuracy_both_found']:.4f} | "
                  f"{m['accuracy_all_pairs']:.4f} | {m['accuracy_fixed_threshold']:.4f} |")  # fmt: skip
    print(f"\nfacekit's fixed threshold: cosine {threshold} (dlib's 0.6 translated); dlib's: Euclidean 0.6")


if __name__ == "__main__":
    main()
