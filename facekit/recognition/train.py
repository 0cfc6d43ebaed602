"""Recognizer training (`facekit train-recognize`): a backbone from the registry (from scratch or fine-tuned from
--pretrained, with its own learning-rate multiplier and optional frozen first epochs), a loss from the registry
(margin losses through Partial FC), the dataset's recipe for whatever is not given (recipe.py), keyed augmentation
(augment.py), SGD or AdamW with warm-up then polynomial or cosine decay, AMP on CUDA, channels_last, gradient
clipping, DDP under torchrun, atomic checkpoints every N steps with exact resume (also with another number of
processes), verification on .bin sets with the threshold calibrated on one of them, TensorBoard, and the model
directory at the end.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader

from facekit.data.datasets import open_training_source
from facekit.distributed import Distributed
from facekit.errors import FacekitError, MissingDataError
from facekit.recognition.batches import GlobalBatchSampler
from facekit.recognition.calibration import Calibration
from facekit.recognition.config import RecognizerConfig
from facekit.recognition.partial_fc import PartialFC, shard_bounds
from facekit.recognition.settings import RecognizeTrainSettings, describe, resolve_settings
from facekit.recognition.trainset import (
    KeyedFaces,
    KeyedSampler,
    check_crop_size,
    source_labels,
)
from facekit.training import CHECKPOINT, InterruptFlag, Throughput, Trainer, check_loss_scale

log = logging.getLogger("facekit.train_recognize")


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then polynomial (power 2, as arcface_torch) or cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, total - warmup)
    return (1 - done) ** 2 if schedule == "poly" else 0.5 * (1 + math.cos(math.pi * done))


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


class _Trainer(Trainer):
    def __init__(
        self,
        data_path: Path,
        out_dir: Path,
        s: RecognizeTrainSettings,
        dist: Distributed,
        *,
        source,  # RecognitionSet | IdentityFolders, opened by open_training_source
        num_classes: int,
    ) -> None:
        from facekit.recognition.backbones import create_backbone, load_backbone_weights
        from facekit.recognition.losses import LOSSES, create_loss
        from facekit.recognition.validation import verification_sets

        super().__init__(out_dir, dist, log)
        self.source, self.num_classes = source, num_classes
        images = len(self.source)
        s, self.recipe, self.from_recipe = resolve_settings(
            s, images=images, classes=self.num_classes, world_size=dist.world_size
        )
        self.s, self.spec = s, LOSSES[s.loss]
        log.info("%s", describe(s, self.recipe, self.from_recipe, images=images, classes=self.num_classes))
        log.info("augmentation: %s", s.augment.describe())
        if s.freeze_backbone_epochs and self.spec.kind != "margin":
            raise FacekitError(f"--freeze-backbone-epochs needs a margin loss (a head to train), not {s.loss}")
        self.config = RecognizerConfig(backbone=s.backbone, embedding_size=s.embedding_size)
        check_crop_size(self.source, data_path, self.config)
        self.dataset = KeyedFaces(
            self.source, seed=s.seed, aug=s.augment, norm=self.config.norm, size=self.config.input_size,
            name=str(data_path), what=f"{s.backbone} takes",
        )  # fmt: skip
        self.val = verification_sets(data_path, s.val, self.source)
        torch.manual_seed(s.seed)
        self.backbone = create_backbone(s.backbone, embedding_size=s.embedding_size)
        if s.pretrained and not s.resume:
            load_backbone_weights(self.backbone, s.pretrained)
            log.info("backbone initialised from %s; the %d people here get a new head", s.pretrained, self.num_classes)
        self.loss_fn = create_loss(
            s.loss, embedding_size=s.embedding_size, num_classes=self.num_classes, **s.loss_params
        )
        self.head = (
            PartialFC(
                embedding_size=s.embedding_size,
                num_classes=self.num_classes,
                sample_rate=s.sample_rate,
                seed=s.seed,
                centres_per_class=getattr(self.loss_fn, "centres_per_class", 1),  # sub-center ArcFace's k
            )
            if self.spec.kind == "margin"
            else None
        )
        cuda = dist.device.type == "cuda"
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(s.amp) if cuda else None
        memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        trunk = Trunk(self.backbone, self.loss_fn, self.head is not None).to(dist.device, memory_format=memory_format)
        if self.head is not None:
            self.head.to(dist.device)
        self.net = dist.wrap(trunk) if any(p.requires_grad for p in trunk.parameters()) else trunk
        # groups: backbone (lr x --backbone-lr-mult), the loss's own parameters, the class centres (always last)
        groups = [
            {"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": s.lr * s.backbone_lr_mult},
            {"params": [p for p in self.loss_fn.parameters() if p.requires_grad]},
            {"params": [self.head.weight] if self.head is not None else []},
        ]
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
                sampler=KeyedSampler(self.sampler),
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
                batch_sampler=KeyedSampler(self.sampler),
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
        self.step, self.history, self.calibration, self.results = 0, [], None, {}
        self.loss_scale: float | None = None
        if s.resume:
            self.resume()
            log.info("resumed from %s at step %d", out_dir / CHECKPOINT, self.step)
        self.open_writer()
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
        frozen = self.step < self.s.freeze_backbone_epochs * self.steps_per_epoch  # BatchNorm statistics too
        self.backbone.train(not frozen)
        amp = torch.autocast(self.dist.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype))
        with amp, torch.set_grad_enabled(not frozen):
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
        self.loss_scale = check_loss_scale(self.scaler, self.step)
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
        window_loss, window = 0.0, Throughput()
        end = min(self.total_steps, s.stop_at_step or self.total_steps)  # the schedule stays total_steps long
        if self.step >= end:
            log.info("step %d: nothing left to train before step %d", self.step, end)
        while self.step < end:
            epoch, position = divmod(self.step, self.steps_per_epoch)
            self.sampler.resume_at(epoch, position)
            for images, labels in self.loader:
                loss = self.train_step(images, labels)
                window_loss += loss * len(images)
                window.add(len(images) * dist.world_size)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                at_epoch_end = self.step % self.steps_per_epoch == 0
                last = self.step == end
                verify = self.step % s.val_every == 0 or last
                if verify or at_epoch_end or self.step % s.log_every == 0:
                    loss = window_loss * dist.world_size / max(window.images, 1)
                    self._report(loss, window.per_second(), verify)
                    window_loss = 0.0
                    window.reset()
                if self.step % s.save_every == 0 or at_epoch_end or last:
                    self.save_checkpoint(self.checkpoint())
                if interrupted:
                    log.warning(
                        "interrupted at step %d; resume with --resume (checkpoint every %d steps)",
                        self.step,
                        s.save_every,
                    )
                    raise KeyboardInterrupt
                if self.step % self.steps_per_epoch == 0 or self.step >= end:
                    break
        bar.close()
        if end < self.total_steps:
            log.info("stopped at step %d of %d as --stop-at-step asked; --resume continues the schedule", end,
                     self.total_steps)  # fmt: skip

    def _report(self, loss: float, images_per_s: float, verify: bool) -> None:
        record = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 3),
            "lr": self.optimizer.param_groups[-1]["lr"],  # the head's: --lr on the schedule
            "loss": round(self.dist.mean(loss), 5),
            "images_per_s": round(images_per_s, 1),
        }
        if self.loss_scale is not None:  # fp16 on CUDA: the grad scaler's scale, which check_loss_scale watches
            record["loss_scale"] = self.loss_scale
        if verify and self.dist.is_main:
            record.update(self._verify())
        self.history.append(record)
        self.report("step", record)

    def _verify(self) -> dict:
        from facekit.recognition.validation import calibrate_on
        from facekit.recognition.verification import embed_pairs, verification_metrics

        if not self.val:
            return {}
        out, embeddings = {}, {}
        training = self.backbone.training
        self.backbone.eval()
        for name, v in self.val.items():
            embeddings[name] = embed_pairs(v.pairs, self.embed, flip=self.s.flip, source=v.path)
            result = verification_metrics(embeddings[name], np.asarray(v.pairs.issame))
            out[f"val_{name}_acc"] = round(float(result.accuracy), 5)
            self.results[name] = result
        self.backbone.train(training)
        self.calibration = calibrate_on(self.val, embeddings)
        out["threshold"] = round(self.calibration.threshold, 5)
        return out

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 BGR crops [N, S, S, 3] -> L2-normalised embeddings [N, D] with the current backbone."""
        x = torch.from_numpy(np.stack([self.config.norm(c) for c in crops])).to(self.dist.device)
        return torch.nn.functional.normalize(self.backbone(x).float()).cpu().numpy()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _full_head(self, shard: torch.Tensor) -> torch.Tensor:
        """The whole [C, D] (or [C, K, D]) tensor from the ranks' shards (on every rank)."""
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

    def checkpoint(self) -> dict:
        """The state after this step, the class centres gathered from every rank (a collective: every rank calls
        it); Trainer.save_checkpoint adds the RNG states."""
        opt = self.optimizer.state_dict()
        head_state = {}
        if self.head is not None:
            index = _head_index(opt)
            per_param = opt["state"].pop(index, {})
            head_state = {
                k: self._full_head(v) if torch.is_tensor(v) and v.dim() >= 2 else v for k, v in per_param.items()
            }
            head_weight = self._full_head(self.head.weight)
        return {
            "step": self.step,
            "backbone": self.backbone.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "head": head_weight if self.head is not None else None,
            "head_optimizer": head_state,
            "optimizer": opt,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": json.dumps(self.history),
            "calibration": json.dumps(self.calibration.as_dict() if self.calibration else None),
            "settings": json.dumps(asdict(self.s)),
        }

    def restore(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
        self.loss_fn.load_state_dict(state["loss"])
        opt = state["optimizer"]
        if self.head is not None:
            a, b = self.head.start, self.head.end
            with torch.no_grad():
                self.head.weight.copy_(state["head"][a:b])
            index = _head_index(opt)
            opt["state"][index] = {
                k: v[a:b] if torch.is_tensor(v) and v.dim() >= 2 else v for k, v in state["head_optimizer"].items()
            }
        self.optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        calibration = json.loads(state.get("calibration", "null"))
        self.calibration = Calibration.from_dict(calibration) if calibration else None

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
        from facekit.recognition.modelfile import save_recognizer

        self.writer.close()
        calibration = self.calibration.as_dict() if self.calibration else None
        threshold = self.calibration.threshold if self.calibration else None
        config = replace(self.config, threshold=threshold, calibration=calibration)
        trained_with = {k: v for k, v in asdict(self.s).items() if k != "progress"}
        trained_with["recipe"] = {**self.recipe.as_dict(), "taken": self.from_recipe}
        metrics |= {"trained_with": trained_with, "calibration": calibration}
        metrics["verification_people"] = {name: v.as_dict() for name, v in self.val.items()}
        save_recognizer(
            self.out_dir,
            self.backbone.cpu().eval(),
            config,
            {"trained_with": trained_with, "final": metrics["final"]},
            onnx=self.s.export_onnx,
        )
        if self.results:
            from facekit.recognition.verification import plot_roc

            plot_roc(self.results, self.out_dir / "roc.png")
            metrics["verification"] = {name: r.as_dict() for name, r in self.results.items()}
        self.write_metrics(metrics)
        return metrics


def _head_index(optimizer_state: dict) -> int:
    """The index of the class centres (the last group's one parameter) in an optimizer state dict."""
    return sum(len(group["params"]) for group in optimizer_state["param_groups"][:-1])


def train_recognizer(data_path: str | Path, out_dir: str | Path, s: RecognizeTrainSettings) -> dict:
    """Train on `data_path` (recognition_train_data/ or identity folders); write the model directory to `out_dir`.
    The settings left None are resolved first (settings.resolve_settings) and logged, the recipe's line first."""
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.is_dir():
        raise MissingDataError(f"{data_path}: no such folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = Distributed.from_env(s.device)
    source = None
    try:
        source, num_classes = open_training_source(data_path)
        return _Trainer(data_path, out_dir, s, dist, source=source, num_classes=num_classes).train()
    finally:
        if hasattr(source, "close"):  # a RecordIO set; identity folders hold no open file
            source.close()
        dist.close()
