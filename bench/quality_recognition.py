"""Recognition quality on real, in-the-wild photos of people the model never saw: facekit trained from scratch on
the CPU, next to eigenfaces, with the people of every role kept apart.

    python bench/quality_recognition.py --data ../shared/data/faces/celeba_subset --out DIR [--budget-minutes 60]

The people folders of --data are split in natural order: all but the last --eval-people are training people, the
last --eval-people (50) are evaluation people, never trained on. The script runs, as a user would, the CLI:

1. `facekit align` the raw photos with --detect (SCRFD-500M), picking the face nearest the photo centre;
2. `facekit pack-rec` the training people; `facekit make-bin` --pairs (3,000) pairs of the evaluation people;
3. `facekit train-recognize` on the training people with the recipe's defaults (`--backbone mobilefacenet`, no
   other recipe flag) and no verification set, so nothing of the evaluation people reaches training;
4. verification (10-fold accuracy, TAR@FAR=1e-3) of facekit and of eigenfaces (PCA fitted on the training people's
   crops) on the same pairs;
5. the open-set split of the evaluation people (`facekit split-people`): the first 20 calibrate the threshold at
   pair FAR --far (1e-2; `facekit calibrate --write`, and eigenfaces by the same rule in evaluate-gallery), the
   next 20 form the gallery (3 photos each; their other photos are probes), the last 10 are unknowns;
   `facekit evaluate-gallery` on the raw photos;
6. fine-tuning: `--pretrained DIR/recognizer --backbone-lr-mult 0.1` for --finetune-epochs more epochs on the
   training people, verified on the same pairs (a stopped run resumes from its checkpoint).

DIR receives aligned/, people/, train_rec/, eval.bin (+ eval.json), openset/, recognizer/ (calibrated),
finetuned/, results.json and a Markdown table (results.md). Training must fit --budget-minutes; the script fails
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from paths import SCRFD, SHARED


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def facekit(*args: object) -> float:
    """Run `facekit ARGS` (this interpreter's facekit); its output goes to the console. Returns the seconds taken."""
    command = [sys.executable, "-m", "facekit", *map(str, args)]
    print("$ facekit " + " ".join(map(str, args)), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def link_people(source: Path, names: list[str], out: Path) -> Path:
    """out/<name> -> source/<name> symlinks: a view of some people of a folder, nothing copied."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = out / name
        if not link.is_symlink():
            link.symlink_to((source / name).resolve(), target_is_directory=True)
    return out


def verify(embed, pairs: Path) -> dict:
    """insightface's 10-fold protocol with the flip test on `pairs` (a .bin) for crops -> embeddings `embed`."""
    from facekit.data.verification import load_bin
    from facekit.recognition.verification import embed_pairs, verification_metrics

    vset = load_bin(pairs)
    return metrics(verification_metrics(embed_pairs(vset, embed, flip=True, source=pairs), np.asarray(vset.issame)))


def metrics(result) -> dict:  # a facekit.recognition.verification.VerificationResult
    """The figures of a verification result that the tables show, rounded."""
    return {"accuracy": round(result.accuracy, 4), "accuracy_std": round(result.accuracy_std, 4),
            "tar@far=1e-3": None if result.tar is None else round(result.tar, 4), "auc": round(result.auc, 4),
            "pairs": result.pairs}  # fmt: skip


def recognizer_embed(model_dir: Path):
    from facekit.runtime.recognizer import load_face_recognizer

    recognizer = load_face_recognizer(model_dir, "cpu", "auto")
    return lambda crops: recognizer.embed(crops)


def eigenfaces_embed(train_people: Path):
    import cv2

    from facekit.recognition.eigenfaces import Eigenfaces

    paths = sorted(train_people.glob("*/*.jpg"))
    crops = np.stack([cv2.imread(str(p)) for p in paths])
    return Eigenfaces.fit(crops).embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "faces" / "celeba_subset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detect", type=Path, default=SCRFD)
    parser.add_argument("--eval-people", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="Wall time allowed for training.")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="0 skips the fine-tuning step.")
    parser.add_argument("--train-args", default="", help="Extra train-recognize options (default: none).")
    parser.add_argument("--far", default="0.01", help="Calibrate the open-set threshold at this pair FAR.")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    people = sorted((p.name for p in args.data.iterdir() if p.is_dir()), key=natural_key)
    train_names, eval_names = people[: -args.eval_people], people[-args.eval_people :]
    print(f"{len(train_names)} training people ({train_names[0]}..{train_names[-1]}), {len(eval_names)} evaluation "
          f"people ({eval_names[0]}..{eval_names[-1]}); {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    times_file = out / "seconds.json"  # what each step took, kept across re-runs
    times = json.loads(times_file.read_text()) if times_file.exists() else {}

    def step(name: str, done: Path, *command: object) -> None:
        """Run `facekit COMMAND` unless `done` exists: a re-run of the script goes on where the last one stopped."""
        if done.exists():
            print(f"(step {name}: kept {done} from an earlier run)", flush=True)
            return
        times[name] = facekit(*command)
        times_file.write_text(json.dumps(times))

    aligned = out / "aligned"
    times["align"] = facekit("align", args.data, aligned, "--detect", args.detect, "--pick", "center")
    train_people = link_people(aligned, train_names, out / "people" / "train")
    eval_people = link_people(aligned, eval_names, out / "people" / "eval")
    eval_raw = link_people(args.data, eval_names, out / "people" / "eval_raw")
    train_rec, pairs, openset = out / "train_rec", out / "eval.bin", out / "openset"
    step("pack", train_rec / "cele.idx", "pack-rec", train_people, train_rec)
    step("pairs", pairs, "make-bin", eval_people, pairs, "--pairs", args.pairs, "--seed", 0)
    recognizer = out / "recognizer"
    extra = args.train_args.split()
    step("train", recognizer / "model.pt", "train-recognize", train_rec, recognizer, "--backbone", "mobilefacenet",
         *extra)  # fmt: skip
    step("split", openset / "split.json", "split-people", eval_raw, openset, "--calibration", 20, "--gallery", 20,
         "--unknown", 10, "--gallery-photos", 3)  # fmt: skip
    pick = ("--pick", "center")  # loose crops around one person, as aligned above
    times["calibrate"] = facekit(
        "calibrate", recognizer, openset / "calibration", "--detect", args.detect, *pick, "--far", args.far, "--write"
    )

    results = {"data": str(args.data), "train_people": [train_names[0], train_names[-1], len(train_names)],
               "eval_people": [eval_names[0], eval_names[-1], len(eval_names)], "cpus": os.cpu_count(),
               "budget_minutes": args.budget_minutes}  # fmt: skip
    results["verification"] = {
        "facekit": verify(recognizer_embed(recognizer), pairs),
        "eigenfaces": verify(eigenfaces_embed(train_people), pairs),
    }
    evaluation = out / "openset_eval"
    times["evaluate_gallery"] = facekit(
        "evaluate-gallery", openset / "gallery", openset / "probe", args.detect, recognizer,
        "--calibration", openset / "calibration", "--far", args.far, *pick, "--baseline-fit", out / "train_rec",
        "--out", evaluation,
    )  # fmt: skip
    results["open_set"] = json.loads((evaluation / "metrics.json").read_text())
    if args.finetune_epochs:
        finetuned = out / "finetuned"
        resume = ["--resume"] if (finetuned / "checkpoint.pt").exists() else []
        step("finetune", finetuned / "model.pt", "train-recognize", out / "train_rec", finetuned, "--pretrained",
             recognizer, "--backbone-lr-mult", 0.1, "--epochs", args.finetune_epochs, *resume, *extra)  # fmt: skip
        results["verification"]["facekit fine-tuned"] = verify(recognizer_embed(finetuned), pairs)
    results["seconds"] = {k: round(v, 1) for k, v in times.items()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    (out / "results.md").write_text(table + "\n")
    print(table)
    minutes = results["seconds"]["train"] / 60
    print(f"training took {minutes:.1f} min of a {args.budget_minutes:.0f}-minute budget")
    ver = results["verification"]
    margin = ver["facekit"]["accuracy"] - ver["eigenfaces"]["accuracy"]
    ok = minutes <= args.budget_minutes and margin >= 0.10
    print(f"facekit - eigenfaces accuracy: {margin:+.4f} (needs >= +0.10): {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


def render(results: dict) -> str:
    rows = ["| method | verification accuracy | TAR@FAR=1e-3 | open-set rank-1 | TAR@FAR=1e-2 | unknowns rejected |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    open_set = results["open_set"]["results"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, ver in results["verification"].items():
        o = open_set.get(name.split()[0] if name != "facekit fine-tuned" else "", {})
        rows.append(f"| {name} | {fmt(ver['accuracy'])} | {fmt(ver['tar@far=1e-3'])} | {fmt(o.get('rank1'))} | "
                    f"{fmt(o.get('tar_at_far', {}).get('0.01'))} | {fmt(o.get('rejection_rate'))} |")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    main()
