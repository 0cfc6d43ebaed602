"""Recognizer training speed: images/s of one optimisation step (forward, Partial FC + ArcFace, backward, SGD) for
iresnet50, mobilefacenet and ghostfacenet, facekit's settings beside the plain fp32 / contiguous step they replace;
then, with --heads, every margin head beside ArcFace: the full mobilefacenet step and the head's own share (Partial FC
cosines, the head, cross-entropy, backward) over --head-classes classes.

    python bench/bench_train_recognize.py [--batch 64 ...] [--steps 5] [--classes 10000] [--device auto]
                                          [--backbones NAME ...] [--heads] [--head-classes 100000] [--smoke]

On CUDA facekit's settings are bf16 autocast + channels_last (insightface reports about 660 images/s per V100 for
iresnet50); on the CPU they are channels_last in fp32 (oneDNN's convolutions run faster in NHWC order).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from paths import ROOT


def head_pair(loss: str, classes: int, device: torch.device):
    """(Partial FC with the head's sub-centres, the margin head) for margin loss `loss`."""
    from facekit.recognition.losses import create_loss
    from facekit.recognition.partial_fc import PartialFC

    margin = create_loss(loss, embedding_size=512, num_classes=classes).to(device)
    k = getattr(margin, "centres_per_class", 1)
    return PartialFC(embedding_size=512, num_classes=classes, centres_per_class=k).to(device), margin


def head_rate(loss: str, *, batch: int, steps: int, classes: int, device: torch.device) -> float:
    """images/s of the head's share of a step: cosines against every centre, the head, cross-entropy, backward."""
    head, margin = head_pair(loss, classes, device)
    embeddings = (torch.randn(batch, 512, device=device) * 20).requires_grad_(True)
    labels = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        head.weight.grad = None
        head(embeddings, labels, margin).backward()

    return batch * steps / timed(step, steps, device)


def timed(step, steps: int, device: torch.device) -> float:
    """Seconds for `steps` calls of `step` after one warm-up call."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def make_step(backbone_name: str, *, classes: int, device: torch.device, fast: bool, loss: str = "arcface"):
    """One optimisation step as facekit trains (forward, Partial FC + the margin head, backward, clipped SGD):
    step(images [B, 3, 112, 112] on `device`, labels [B]) -> None. fast: channels_last (+ bf16 autocast on CUDA)."""
    from facekit.recognition.backbones import create_backbone

    fmt = torch.channels_last if fast else torch.contiguous_format
    amp = fast and device.type == "cuda"
    backbone = create_backbone(backbone_name, embedding_size=512).to(device, memory_format=fmt).train()
    head, margin = head_pair(loss, classes, device)
    optimizer = torch.optim.SGD([*backbone.parameters(), head.weight], lr=0.1, momentum=0.9, weight_decay=5e-4)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            embeddings = backbone(images.contiguous(memory_format=fmt)).float()
        value = head(embeddings, labels, margin)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5.0)
        optimizer.step()

    return step


def step_rate(
    backbone_name: str,
    *,
    batch: int,
    steps: int,
    classes: int,
    device: torch.device,
    fast: bool,
    loss: str = "arcface",
) -> float:
    """images/s of make_step's step on one synthetic batch (so the disk and the decoder are not the limit)."""
    step = make_step(backbone_name, classes=classes, device=device, fast=fast, loss=loss)
    images = torch.randn(batch, 3, 112, 112, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    return steps * batch / timed(lambda: step(images, labels), steps, device)


def peak_memory(device: torch.device) -> str:
    """The peak GPU memory since the last reset, in GiB ("-" on the CPU)."""
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[64], help="one row per batch size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", nargs="+", default=["mobilefacenet", "ghostfacenet", "iresnet50"])
    parser.add_argument("--heads", action="store_true", help="also every margin head beside ArcFace")
    parser.add_argument("--head-classes", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="mobilefacenet, 1 step of 2, 16 classes: measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.steps, args.classes, args.head_classes, args.backbones = [2], 1, 16, 16, ["mobilefacenet"]
    sys.path.insert(0, str(ROOT))
    from facekit.distributed import resolve_device

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"recognizer training step, {args.classes} classes, {where}, torch {torch.__version__}")
    print(f"{'backbone':<16}{'settings':<34}{'batch':>6}{'images/s':>10}{'peak GiB':>10}")
    for name in args.backbones:
        for batch in args.batch:
            for fast in (False, True):
                label = (
                    ("bf16 autocast + channels_last" if device.type == "cuda" else "channels_last, fp32")
                    if fast
                    else "plain fp32, contiguous"
                )
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                rate = step_rate(name, batch=batch, steps=args.steps, classes=args.classes, device=device, fast=fast)
                print(f"{name:<16}{label:<34}{batch:>6}{rate:>10.1f}{peak_memory(device):>10}", flush=True)
    if args.heads or args.smoke:
        print_heads(args, device)


def print_heads(args: argparse.Namespace, device: torch.device) -> None:
    """Every margin head beside ArcFace: the full mobilefacenet step (facekit's settings) and the head's own share."""
    from facekit.recognition.losses import LOSSES

    heads = ["arcface"] + sorted(name for name, spec in LOSSES.items() if spec.kind == "margin" and name != "arcface")
    batch = args.batch[0]
    print(f"\nmargin heads, batch {batch}: the mobilefacenet step over {args.classes} classes; the head alone "
          f"over {args.head_classes} classes")  # fmt: skip
    print(f"{'head':<20}{'step images/s':>14}{'head images/s':>15}")
    for loss in heads[:2] if args.smoke else heads:
        step = step_rate("mobilefacenet", batch=batch, steps=args.steps, classes=args.classes, device=device,
                         fast=True, loss=loss)  # fmt: skip
        alone = head_rate(loss, batch=batch, steps=args.steps, classes=args.head_classes, device=device)
        print(f"{loss:<20}{step:>14.1f}{alone:>15.1f}")


if __name__ == "__main__":
    main()
