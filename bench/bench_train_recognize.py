"""Recognizer training speed: images/s of one optimisation step (forward, Partial FC + ArcFace, backward, SGD) for
iresnet50 and mobilefacenet, facekit's settings beside the plain fp32 / contiguous step they replace.

    python bench/bench_train_recognize.py [--batch 64] [--steps 5] [--classes 10000] [--device auto] [--smoke]

On CUDA facekit's settings are bf16 autocast + channels_last (insightface reports about 660 images/s per V100 for
iresnet50); on the CPU they are channels_last in fp32 (oneDNN's convolutions run faster in NHWC order).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from paths import ROOT


def step_rate(backbone_name: str, *, batch: int, steps: int, classes: int, device: torch.device, fast: bool) -> float:
    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.losses import create_loss
    from facekit.recognition.partial_fc import PartialFC

    fmt = torch.channels_last if fast else torch.contiguous_format
    amp = fast and device.type == "cuda"
    backbone = create_backbone(backbone_name, embedding_size=512).to(device, memory_format=fmt).train()
    head = PartialFC(embedding_size=512, num_classes=classes).to(device)
    margin = create_loss("arcface", embedding_size=512, num_classes=classes)
    optimizer = torch.optim.SGD([*backbone.parameters(), head.weight], lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, 3, 112, 112, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            embeddings = backbone(images).float()
        loss = head(embeddings, labels, margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5.0)
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="mobilefacenet, 1 step of 2, 16 classes: measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.steps, args.classes = 2, 1, 16
    sys.path.insert(0, str(ROOT))
    from facekit.distributed import resolve_device

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"recognizer training step, batch {args.batch}, {args.classes} classes, {where}")
    print(f"{'backbone':<16}{'settings':<34}{'images/s':>10}")
    for name in ("mobilefacenet",) if args.smoke else ("mobilefacenet", "iresnet50"):
        for fast in (False, True):
            label = (
                ("bf16 autocast + channels_last" if device.type == "cuda" else "channels_last, fp32")
                if fast
                else "plain fp32, contiguous"
            )
            rate = step_rate(name, batch=args.batch, steps=args.steps, classes=args.classes, device=device, fast=fast)
            print(f"{name:<16}{label:<34}{rate:>10.1f}")


if __name__ == "__main__":
    main()
