"""The margin heads side by side on ORL: `orl_val.bin` accuracy after the README's small recipe, each head trained
exactly as a user would (`facekit train-recognize layouts/recognition_train_data OUT --backbone mobilefacenet
--loss NAME`), same seed, epochs, batch and optimiser (the recipe's), only --loss changing.

    python bench/quality_heads.py --out DIR [--heads arcface adaface ...] [--seed 0]

People: the model trains on ORL s1-s30 (cele.rec, 300 crops); orl_val.bin holds 400 pairs of s31-s40, never
trained on; its accuracy is insightface's 10-fold protocol (each fold's threshold chosen on the other nine folds, flip
test), so no threshold ever sees the pairs it is scored on. DIR/<head>/ keeps each model and its metrics.json; the
table (DIR/results.md) gives the accuracy, the 10-fold standard deviation and the minutes each run took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from paths import SHARED

HEADS = ("arcface", "adaface", "curricularface", "magface", "subcenter_arcface")


def train(head: str, out: Path, seed: int) -> float:
    """Train with the recipe and --loss `head` into `out` (kept when already finished); the minutes it took."""
    if (out / "metrics.json").is_file():
        return float("nan")
    command = [sys.executable, "-m", "facekit", "train-recognize", str(SHARED / "layouts/recognition_train_data"),
               str(out), "--backbone", "mobilefacenet", "--loss", head, "--seed", str(seed), "--no-onnx"]  # fmt: skip
    print("$ " + " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = ["| head | loss parameters (recipe + defaults) | orl_val.bin accuracy | 10-fold std | minutes |",
            "|---|---|---|---|---|"]  # fmt: skip
    for head in args.heads:
        minutes = train(head, args.out / head, args.seed)
        metrics = json.loads((args.out / head / "metrics.json").read_text())
        result = metrics["verification"]["orl_val"]
        params = " ".join(f"{k}={v:g}" for k, v in metrics["trained_with"]["loss_params"].items()) or "defaults"
        rows.append(f"| {head} | {params} | {result['accuracy']:.4f} | {result['accuracy_std']:.4f} | {minutes:.1f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
