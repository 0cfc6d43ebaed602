"""What int8 costs a recognizer: `facekit export --int8` against the float32 export, on evaluation pairs of people
that neither trained nor calibrated it.

    python bench/quality_int8.py --recognizer DIR --pairs eval.bin --calibration TRAIN_PEOPLE --out OUT

DIR is a recognizer directory trained on the people of TRAIN_PEOPLE (aligned crops, one folder per person, as
bench/quality_recognition.py leaves them in OUT/people/train); eval.bin holds the pairs of other people (its
eval.json, from `facekit make-bin`, names them). The script runs, as a user would, `facekit export DIR --out
OUT/fp32.onnx` and `facekit export DIR --int8 TRAIN_PEOPLE --out OUT/int8.onnx`, then measures both ONNX files with
bench/quality_recognition.py's protocol (insightface's 10-fold verification with the flip test) and the cosine
between their embeddings of every crop of eval.bin. It prints a Markdown table (also OUT/int8.md, OUT/int8.json) and
exits 1 when the cosine falls under --min-cosine (0.99) or the accuracy drops by more than --max-loss (0.5 points).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from quality_recognition import facekit, metrics, natural_key


def people(folder: Path) -> list[str]:
    """The person folders of `folder`, in natural order."""
    return sorted((p.name for p in folder.iterdir() if p.is_dir()), key=natural_key)


def span(names: list[str]) -> str:
    return f"{len(names)} people ({names[0]}..{names[-1]})" if names else "nobody"


def embed_both_ways(embed, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # crops -> emb.
    """The L2-normalised embeddings of `crops` and of their mirror images: float [N, D] each."""
    return embed(crops), embed(np.ascontiguousarray(crops[:, :, ::-1]))


def flip_test(plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """insightface's flip test, as embed_pairs(flip=True) does it: normalise(embedding + mirror's embedding)."""
    summed = plain + mirrored
    return summed / np.linalg.norm(summed, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recognizer", type=Path, required=True, help="facekit recognizer directory")
    parser.add_argument("--pairs", type=Path, required=True, help="verification .bin of the evaluation people")
    parser.add_argument("--calibration", type=Path, required=True, help="aligned crops of the training people")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-cosine", type=float, default=0.99)
    parser.add_argument("--max-loss", type=float, default=0.005, help="accuracy loss allowed (0.005: 0.5 points)")
    args = parser.parse_args()
    from facekit.data.verification import load_bin
    from facekit.recognition.verification import decode_crops, verification_metrics
    from facekit.runtime.export import CALIBRATION_PHOTOS
    from facekit.runtime.recognizer import OnnxRecognizer

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = args.pairs.with_suffix(".json")
    tested = sorted(json.loads(meta.read_text())["people"], key=natural_key) if meta.is_file() else []
    calibrators = people(args.calibration)
    if set(tested) & set(calibrators):
        raise SystemExit(f"{args.calibration} and {meta} share people: {sorted(set(tested) & set(calibrators))[:5]}")
    photos = [p.resolve() for name in calibrators for p in sorted((args.calibration / name).glob("*.jpg"))]
    calibration = out / "calibration.txt"  # a list: facekit's folder walk does not enter linked person folders
    calibration.write_text("".join(f"{p}\n" for p in photos))
    fp32, int8 = out / "fp32.onnx", out / "int8.onnx"
    seconds = {
        "fp32": facekit("export", args.recognizer, "--out", fp32),
        "int8": facekit("export", args.recognizer, "--int8", calibration, "--out", int8),
    }
    vset = load_bin(args.pairs)
    crops = decode_crops(vset.images, 0, args.pairs)
    files = {"fp32": fp32, "int8": int8}
    embedded = {name: embed_both_ways(OnnxRecognizer(path).embed, crops) for name, path in files.items()}
    results = {name: metrics(verification_metrics(flip_test(*e), vset.issame)) for name, e in embedded.items()}
    cosines = (embedded["fp32"][0] * embedded["int8"][0]).sum(1)
    loss = results["fp32"]["accuracy"] - results["int8"]["accuracy"]
    summary = {
        "recognizer": str(args.recognizer), "pairs": str(args.pairs), "trained_and_calibrated_on": calibrators,
        "tested_on": tested, "verification": results, "accuracy_loss": round(loss, 4),
        "cosine_min": round(float(cosines.min()), 5), "cosine_mean": round(float(cosines.mean()), 5),
        "crops": len(cosines), "calibration_crops": [min(len(photos), CALIBRATION_PHOTOS), len(photos)],
        "export_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "size_bytes": {name: path.stat().st_size for name, path in files.items()},
    }  # fmt: skip
    ok = summary["cosine_min"] >= args.min_cosine and loss <= args.max_loss
    table = render(summary, args)
    (out / "int8.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "int8.md").write_text(table + "\n")
    print(table)
    print(f"cosine min {summary['cosine_min']:.4f} (needs >= {args.min_cosine}), accuracy loss "
          f"{100 * loss:+.2f} points (needs <= {100 * args.max_loss:.1f}): {'PASS' if ok else 'FAIL'}")  # fmt: skip
    sys.exit(0 if ok else 1)


def render(s: dict, args: argparse.Namespace) -> str:
    """The Markdown table: who trained, calibrated and tested; accuracy and embedding agreement of both files."""
    v = s["verification"]
    mb = {k: f"{n / 2**20:.1f} MB" for k, n in s["size_bytes"].items()}
    rows = [
        f"trained on: {span(s['trained_and_calibrated_on'])}, the crops of {args.calibration}; int8 calibrated on "
        f"{s['calibration_crops'][0]} of their {s['calibration_crops'][1]} crops; tested on: {span(s['tested_on'])} "
        f"({v['fp32']['pairs']} pairs of {args.pairs}), "
        "none of them trained or calibrated",
        "",
        "| recognizer.onnx | size | verification accuracy (10-fold, flip) | TAR@FAR=1e-3 | cosine with fp32 (min / "
        "mean, every crop) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("fp32", "int8"):
        cosine = "1 / 1" if name == "fp32" else f"{s['cosine_min']:.4f} / {s['cosine_mean']:.4f}"
        tar = v[name]["tar@far=1e-3"]
        rows.append(f"| {name} | {mb[name]} | {v[name]['accuracy']:.4f} ± {v[name]['accuracy_std']:.4f} | "
                    f"{'-' if tar is None else f'{tar:.4f}'} | {cosine} |")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    main()
