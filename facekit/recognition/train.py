"""Recognizer training (`facekit train-recognize`): a backbone from the registry, a loss from the registry
(margin losses through Partial FC), SGD or AdamW with warm-up then polynomial or cosine decay, AMP and
channels_last on CUDA, gradient clipping, DDP under torchrun, atomic checkpoints every N steps with exact resume
(also with another number of processes), verification on .bin sets, TensorBoard, and the model directory at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader

from facekit.data.datasets import RecognitionDataset
from facekit.distributed import Distributed
from facekit.errors import FacekitError, MissingDataError
from facekit.fileio import atomic_write
from facekit.modeldir import read_torch_file
from facekit.recognition.batches import GlobalBatchSampler
from facekit.recognition.partial_fc import PartialFC, shard_bounds
from facekit.training import InterruptFlag, log_to, rng_state, set_rng_state

log = logging.getLogger("facekit.train_recognize")
CHECKPOINT = "checkpoint.pt"


@dataclass
class RecognizeTrainSettings:
    """Everything `train-recognize` can be told."""

    backbone: str = "iresnet50"
    embedding_size: int = 512
    loss: str = "arcface"
    loss_params: dict[str, float] = field(default_factory=dict)
    sample_rate: float = 1.0
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 20
    batch_size: int = 128  # global
    pk: tuple[int, int] = (32, 4)  # identities x images per batch, for metric losses
    warmup_epochs: float = 0.0
    schedule: str = "poly"  # or "cosine"
    amp: str = "bf16"  # "none", "fp16", "bf16"; CUDA only
    channels_last: bool = True  # CUDA only
    clip_grad: float = 5.0
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    pretrained: str | None = None
    resume: bool = False
    val: list[str] = field(default_factory=list)
    val_every: int = 1000  # steps; also after the last step
    log_every: int = 50  # steps; also at each epoch's end
    flip: bool = True
    save_every: int = 1000  # steps; also at each epoch's end
    export_onnx: bool = True
    progress: bool = True


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then polynomial (power 2, as arcface_torch) or cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, total - warmup)
    return (1 - done) ** 2 if schedule == "poly" else 0.5 * (1 + math.cos(math.pi * done))


def open_training_source(data_path: Path):  # noqa: ANN201 - RecognitionSet | IdentityFolders
    """recognition_train_data/ (cele.rec ...) or identity folders, and its class count."""
    from facekit.data.folders import scan_identity_folders
    from facekit.data.recset import open_recognition_set

    if any(data_path.glob("*.rec")):
        source = open_recognition_set(data_path)
        classes = source.num_classes
        if classes is None:
            classes = 1 + max(source.read(k)[0] for k in source.image_keys)
        return source, classes
    folders = scan_identity_folders(data_path)
    return folders, len(folders.identities)


def source_labels(source) -> list[int]:  # noqa: ANN001
    """The class of every item (reads each record's header for RecordIO sets)."""
    if hasattr(source, "items"):
        return [label for _, label in source.items]
    if source.identity_ranges:
        labels = [0] * len(source.image_keys)
        for ident, (a, b) in source.identity_ranges.items():
            for key in range(a, b):
                labels[key - 1] = ident
        return labels
    return [source.read(k)[0] for k in source.image_keys]


class KeyedFaces(torch.utils.data.Dataset):
    """Training crops indexed by (epoch, i): the random flip of sample i in epoch e comes from a generator seeded
    with (seed, e, i), so it is the same in any worker, after any restart."""

    def __init__(self, base: RecognitionDataset, seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        image, label = self.base[index]
        if np.random.default_rng([self.seed, epoch, index]).random() < 0.5:
            image = image.flip(-1)
        return image, label


class _Keyed(torch.utils.data.Sampler):
    """Pairs each index (or batch of indices) of `sampler` with the epoch it was drawn for."""

    def __init__(self, sampler: torch.utils.data.Sampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):  # noqa: ANN204
        epoch = self.sampler.epoch
        for item in self.sampler:
            yield [(epoch, i) for i in item] if isinstance(item, list) else (epoch, item)


class Trunk(nn.Module):
    """Backbone + loss as one module, so DDP sees every parameter that gets a gradient.

    forward(images [B, 3, H, W], labels [B]) -> embeddings [B, D] float32 when the loss is a margin function
    (Partial FC, outside DDP, applies it), else the scalar loss.
    """

    def __init__(self, backbone: nn.Module, loss: nn.Module, margin: bool) -> None:
        super().__init__()
        self.backbone, self.loss, self.margin = backbone, loss, margin

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(images).float()
        return embeddings if self.margin else self.loss(embeddings, labels)


class _Trainer:
    def __init__(self, data_path: Path, out_dir: Path, s: RecognizeTrainSettings, dist: Distributed) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from facekit.recognition.backbones import create_backbone, load_backbone_weights
        from facekit.recognition.losses import LOSSES, create_loss

        self.s, self.dist, self.out_dir = s, dist, out_dir
        if s.loss not in LOSSES:
            raise FacekitError(f"unknown loss {s.loss!r}; known: {', '.join(sorted(LOSSES))}")
        self.spec = LOSSES[s.loss]
        if dist.is_main:
            log_to(out_dir / "train.log")
        self.source, self.num_classes = open_training_source(data_path)
        self.dataset = KeyedFaces(RecognitionDataset(self.source, name=str(data_path)), s.seed)
        self.val_sets = _verification_sets(data_path, s.val)
        torch.manual_seed(s.seed)
        self.backbone = create_backbone(s.backbone, embedding_size=s.embedding_size)
        if s.pretrained and not s.resume:
            load_backbone_weights(self.backbone, s.pretrained)
            log.info("backbone initialised from %s", s.pretrained)
        self.loss_fn = create_loss(
            s.loss, embedding_size=s.embedding_size, num_classes=self.num_classes, **s.loss_params
        )
        self.head = (
            PartialFC(
                embedding_size=s.embedding_size, num_classes=self.num_classes, sample_rate=s.sample_rate, seed=s.seed
            )
            if self.spec.kind == "margin"
            else None
        )
        cuda = dist.device.type == "cuda"
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(s.amp) if cuda else None
        memory_format = torch.channels_last if cuda and s.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        trunk = Trunk(self.backbone, self.loss_fn, self.head is not None).to(dist.device, memory_format=memory_format)
        if self.head is not None:
            self.head.to(dist.device)
        self.net = dist.wrap(trunk) if any(p.requires_grad for p in trunk.parameters()) else trunk
        params = [p for p in trunk.parameters() if p.requires_grad]
        head_params = [self.head.weight] if self.head is not None else []
        groups = [{"params": params}, {"params": head_params}]
        if s.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        if self.spec.needs_pk_sampler:
            from facekit.recognition.sampler import PKSampler

            p, k = s.pk
            if p * k != s.batch_size:
                raise FacekitError(f"--pk {p} {k} gives batches of {p * k}, not --batch-size {s.batch_size}")
            self.sampler = PKSampler(
                source_labels(self.source), p, k, seed=s.seed, rank=dist.rank, world_size=dist.world_size
            )
            self.loader = DataLoader(
                self.dataset,
                batch_size=self.sampler.batch_size,
                sampler=_Keyed(self.sampler),
                num_workers=s.workers,
                persistent_workers=s.workers > 0,
                generator=torch.Generator(),  # leaves the global RNG (restored on resume) alone
            )
            self.steps_per_epoch = self.sampler.num_batches
        else:
            self.sampler = GlobalBatchSampler(
                len(self.dataset), s.batch_size, seed=s.seed, rank=dist.rank, world_size=dist.world_size
            )
            self.loader = DataLoader(
                self.dataset,
                batch_sampler=_Keyed(self.sampler),
                num_workers=s.workers,
                pin_memory=cuda,
                persistent_workers=s.workers > 0,
                generator=torch.Generator(),  # leaves the global RNG (restored on resume) alone
            )
            self.steps_per_epoch = len(self.sampler)
        self.total_steps = s.epochs * self.steps_per_epoch
        warmup = round(s.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, self.total_steps, warmup, s.schedule)
        )
        self.step, self.history, self.threshold, self.results = 0, [], None, {}
        if s.resume:
            self._resume(out_dir / CHECKPOINT)
        self.writer = SummaryWriter(str(out_dir / "tensorboard")) if dist.is_main else None
        log.info(
            "training %s + %s on %d images of %d identities (%d steps/epoch, global batch %d on %d ranks, %s)%s",
            s.backbone,
            s.loss,
            len(self.dataset),
            self.num_classes,
            self.steps_per_epoch,
            s.batch_size,
            dist.world_size,
            dist.device,
            f", AMP {s.amp}" if self.amp_dtype else "",
        )

    # -- one step ------------------------------------------------------------------------------------------
    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.to(self.dist.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        labels = labels.to(self.dist.device)
        with torch.autocast(self.dist.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)):
            out = self.net(images, labels)
        return self.head(out, labels, self.loss_fn) if self.head is not None else out

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        if hasattr(self.loss_fn, "set_step"):  # annealed margins (SphereFace, L-Softmax)
            self.loss_fn.set_step(self.step)
        loss = self._loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.s.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), self.s.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, interrupted: InterruptFlag) -> None:
        from tqdm import tqdm

        s, dist = self.s, self.dist
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            leave=False,
            disable=None if s.progress and dist.is_main else True,
        )
        window_loss, window_images, window_start = 0.0, 0, time.perf_counter()
        while self.step < self.total_steps:
            epoch, position = divmod(self.step, self.steps_per_epoch)
            self.sampler.resume_at(epoch, position)
            for images, labels in self.loader:
                loss = self.train_step(images, labels)
                window_loss += loss * len(images)
                window_images += len(images) * dist.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                at_epoch_end = self.step % self.steps_per_epoch == 0
                last = self.step == self.total_steps
                verify = self.step % s.val_every == 0 or last
                if verify or at_epoch_end or self.step % s.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    loss = window_loss * dist.world_size / max(window_images, 1)
                    self._report(loss, window_images / elapsed, verify)
                    window_loss, window_images, window_start = 0.0, 0, time.perf_counter()
                if self.step % s.save_every == 0 or at_epoch_end or last:
                    self._save_checkpoint(self.out_dir / CHECKPOINT)
                if interrupted:
                    log.warning(
                        "interrupted at step %d; resume with --resume (checkpoint every %d steps)",
                        self.step,
                        s.save_every,
                    )
                    raise KeyboardInterrupt
                if self.step % self.steps_per_epoch == 0 or self.step >= self.total_steps:
                    break
        bar.close()

    def _report(self, loss: float, images_per_s: float, verify: bool) -> None:
        record = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 3),
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": round(self.dist.mean(loss), 5),
            "images_per_s": round(images_per_s, 1),
        }
        if verify and self.dist.is_main:
            record.update(self._verify())
        self.history.append(record)
        if self.dist.is_main:
            log.info("step %s", " ".join(f"{k}={v}" for k, v in record.items()))
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(k if k.startswith("val_") else f"train/{k}", v, self.step)

    def _verify(self) -> dict:
        from facekit.recognition.verification import embed_pairs, verification_metrics

        if not self.val_sets:
            return {}
        out = {}
        self.backbone.eval()
        for name, vset in self.val_sets.items():
            emb = embed_pairs(vset, self.embed, flip=self.s.flip, source=f"{name}.bin")
            result = verification_metrics(emb, np.asarray(vset.issame))
            out[f"val_{name}_acc"] = round(float(result.accuracy), 5)
            self.results[name] = result
        self.threshold = float(np.mean([r.cosine_threshold for r in self.results.values()]))
        out["threshold"] = round(self.threshold, 5)
        self.backbone.train()
        return out

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 BGR crops [N, 112, 112, 3] -> L2-normalised embeddings [N, D] with the current backbone."""
        from facekit.norms import ARCFACE

        x = torch.from_numpy(np.stack([ARCFACE(c) for c in crops])).to(self.dist.device)
        return torch.nn.functional.normalize(self.backbone(x).float()).cpu().numpy()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _full_head(self, shard: torch.Tensor) -> torch.Tensor:
        """The whole [C, D] tensor from the ranks' shards (on every rank)."""
        if self.dist.world_size == 1:
            return shard.detach().cpu()
        largest = shard_bounds(self.num_classes, 0, self.dist.world_size)
        rows = largest[1] - largest[0]
        padded = torch.zeros(rows, *shard.shape[1:], device=shard.device, dtype=shard.dtype)
        padded[: len(shard)] = shard.detach()
        parts = [torch.empty_like(padded) for _ in range(self.dist.world_size)]
        torch_dist.all_gather(parts, padded)
        pieces = []
        for r, part in enumerate(parts):
            a, b = shard_bounds(self.num_classes, r, self.dist.world_size)
            pieces.append(part[: b - a])
        return torch.cat(pieces).cpu()

    def _save_checkpoint(self, path: Path) -> None:
        opt = self.optimizer.state_dict()
        head_state = {}
        if self.head is not None:
            index = len(opt["param_groups"][0]["params"])
            per_param = opt["state"].pop(index, {})
            head_state = {
                k: self._full_head(v) if torch.is_tensor(v) and v.dim() == 2 else v for k, v in per_param.items()
            }
            head_weight = self._full_head(self.head.weight)
        if not self.dist.is_main:
            return
        state = {
            "step": self.step,
            "backbone": self.backbone.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "head": head_weight if self.head is not None else None,
            "head_optimizer": head_state,
            "optimizer": opt,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "history": json.dumps(self.history),
            "threshold": -2.0 if self.threshold is None else self.threshold,
            "settings": json.dumps(asdict(self.s)),
        }
        with atomic_write(path, "wb") as f:
            torch.save(state, f)

    def _resume(self, path: Path) -> None:
        if not path.is_file():
            raise MissingDataError(f"{path}: no checkpoint to resume from")
        state = read_torch_file(path)
        self.backbone.load_state_dict(state["backbone"])
        self.loss_fn.load_state_dict(state["loss"])
        opt = state["optimizer"]
        if self.head is not None:
            a, b = self.head.start, self.head.end
            with torch.no_grad():
                self.head.weight.copy_(state["head"][a:b])
            index = len(opt["param_groups"][0]["params"])
            opt["state"][index] = {
                k: v[a:b] if torch.is_tensor(v) and v.dim() == 2 else v for k, v in state["head_optimizer"].items()
            }
        self.optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        self.threshold = None if state["threshold"] < -1 else float(state["threshold"])
        log.info("resumed from %s at step %d", path, self.step)

    # -- artefacts -----------------------------------------------------------------------------------------
    def finish(self) -> dict:
        metrics = {
            "steps": self.step,
            "epochs": self.s.epochs,
            "history": self.history,
            "final": dict(self.history[-1]) if self.history else {},
        }
        if not self.dist.is_main:
            return metrics
        from facekit.recognition.config import RecognizerConfig
        from facekit.runtime.recognizer import save_recognizer

        self.writer.close()
        config = RecognizerConfig(
            backbone=self.s.backbone, embedding_size=self.s.embedding_size, threshold=self.threshold
        )
        model_file = save_recognizer(
            self.out_dir,
            self.backbone.cpu().eval(),
            config,
            {"trained_with": {k: v for k, v in asdict(self.s).items() if k != "progress"}, "final": metrics["final"]},
        )
        if self.s.export_onnx:
            from facekit.fileio import sha256_file
            from facekit.recognition.export import ONNX_FILE, export_arcface_onnx

            export_arcface_onnx(self.backbone, config, self.out_dir / ONNX_FILE, fingerprint=sha256_file(model_file))
        if self.results:
            from facekit.recognition.verification import plot_roc

            plot_roc(self.results, self.out_dir / "roc.png")
            metrics["verification"] = {name: r.as_dict() for name, r in self.results.items()}
        with atomic_write(self.out_dir / "metrics.json") as f:
            json.dump(metrics, f, indent=2)
        log.info("wrote %s", ", ".join(p.name for p in sorted(self.out_dir.iterdir())))
        return metrics


def _verification_sets(data_path: Path, extra: list[str]) -> dict:
    from facekit.data.verification import load_bin

    paths = sorted(data_path.glob("*.bin")) + [Path(p) for p in extra]
    return {p.stem: load_bin(p) for p in paths}


def train_recognizer(data_path: str | Path, out_dir: str | Path, s: RecognizeTrainSettings) -> dict:
    """Train on `data_path` (recognition_train_data/ or identity folders); write the model directory to `out_dir`."""
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.is_dir():
        raise MissingDataError(f"{data_path}: no such folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = Distributed.from_env(s.device)
    trainer = None
    try:
        trainer = _Trainer(data_path, out_dir, s, dist)
        with InterruptFlag() as interrupted:
            trainer.run(interrupted)
        return trainer.finish()
    finally:
        if trainer is not None and hasattr(trainer.source, "close"):
            trainer.source.close()
        dist.close()
