"""RetinaFace training (`facekit train-detect`): SGD with warm-up and step decay, AMP on CUDA, DDP under torchrun,
a checkpoint every epoch, exact resume, validation AP / NME, TensorBoard scalars, and the model directory at the end.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facekit.data.datasets import DetectionDataset
from facekit.data.labels import LABEL_FILE
from facekit.detection.augment import Target, TrainTransform
from facekit.detection.box_utils import prior_boxes
from facekit.detection.config import ONNX_FILE, DetectorConfig
from facekit.detection.loss import MultiBoxLoss
from facekit.detection.weights import build_detector, load_pretrained
from facekit.distributed import Distributed
from facekit.errors import MissingDataError
from facekit.modeldir import save_model
from facekit.training import CHECKPOINT, InterruptFlag, Throughput, Trainer, check_loss_scale

log = logging.getLogger("facekit.train_detect")


@dataclass
class DetectTrainSettings:
    """Everything `train-detect` can be told. `image_size` None = the body's reference size (640 / 840)."""

    body: str = "mobilenet0.25"
    image_size: int | None = None
    epochs: int = 250
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    decay_at: tuple[float, float] = (0.76, 0.88)  # fractions of the epochs (190 and 220 of 250 in the reference)
    gamma: float = 0.1
    loss_weights: tuple[float, float, float] = (2.0, 1.0, 1.0)  # box, class, landmark
    overlap: float = 0.35
    neg_pos: int = 7
    workers: int = 2
    device: str = "auto"
    amp: bool = True
    eval_every: int = 10
    seed: int = 0
    pretrained: str | None = None
    resume: bool = False
    export_onnx: bool = True
    progress: bool = True


class AugmentedDetection(Dataset):
    """A detection split with TrainTransform, indexed by (epoch, i): sample i of epoch e always gets the same
    augmentation, drawn from a generator seeded with (seed, e, i), in whichever worker process loads it."""

    def __init__(self, base: DetectionDataset, transform: TrainTransform, seed: int) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, Target]:
        epoch, index = key
        return self.transform(self.base[index], np.random.default_rng([self.seed, epoch, index]))


class EpochSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler that yields (epoch, index), so persistent workers know the epoch."""

    def __iter__(self):
        return ((self.epoch, i) for i in super().__iter__())


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def lr_factor(step: int, steps_per_epoch: int, s: DetectTrainSettings) -> float:
    """Linear warm-up over `warmup_epochs`, then x gamma at each `decay_at` fraction of the epochs."""
    warmup = s.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    epoch = step / steps_per_epoch
    return s.gamma ** sum(epoch >= f * s.epochs for f in s.decay_at)


def train_detector(data_path: str | Path, out_dir: str | Path, s: DetectTrainSettings) -> dict:
    """Train on `data_path/{train,val}`; write the model directory to `out_dir`. Returns the final metrics."""
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not (data_path / "train" / LABEL_FILE).is_file():
        raise MissingDataError(f"{data_path}: no train/label.txt (expected detection_train_data/train/label.txt)")
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = Distributed.from_env(s.device)
    try:
        return _Trainer(data_path, out_dir, s, dist).train()
    finally:
        dist.close()


class _Trainer(Trainer):
    """The state of one training run; `run_epoch` is one pass over the training split."""

    def __init__(self, data_path: Path, out_dir: Path, s: DetectTrainSettings, dist: Distributed) -> None:
        super().__init__(out_dir, dist, log)
        self.s = s
        config = DetectorConfig.for_body(s.body)
        if s.image_size:
            config = DetectorConfig.from_dict({**config.as_dict(), "image_size": s.image_size})
        self.config = config
        self.train_set = AugmentedDetection(
            DetectionDataset(data_path / "train"), TrainTransform(config.image_size, config.norm), s.seed
        )
        self.val_dir = data_path / "val" if (data_path / "val" / LABEL_FILE).is_file() else None
        torch.manual_seed(s.seed)  # the initial weights of the parts no checkpoint fills
        self.model = build_detector(config)
        if s.pretrained and not s.resume:
            log.info("initialised from %s (%s)", s.pretrained, load_pretrained(self.model, s.pretrained))
        self.model.to(dist.device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        per_rank_batch = max(1, s.batch_size // dist.world_size)
        self.sampler = EpochSampler(
            self.train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=s.seed
        )
        self.loader = DataLoader(
            self.train_set,
            batch_size=per_rank_batch,
            sampler=self.sampler,
            num_workers=s.workers,
            collate_fn=collate,
            pin_memory=dist.device.type == "cuda",
            persistent_workers=s.workers > 0,
        )
        self.steps_per_epoch = len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, self.steps_per_epoch, s)
        )
        self.use_amp = s.amp and dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.criterion = MultiBoxLoss(
            overlap=s.overlap, neg_pos=s.neg_pos, variances=config.variances, weights=s.loss_weights
        )
        self.priors = prior_boxes((config.image_size,) * 2, config.min_sizes, config.steps).to(dist.device)
        self.start_epoch, self.history = 0, []
        if s.resume:
            self.resume()
            log.info("resumed from %s after epoch %d", out_dir / CHECKPOINT, self.start_epoch)
        self.net = dist.wrap(self.model)
        self.open_writer()
        log.info(
            "training %s on %d images (%d steps/epoch, batch %d x %d ranks) on %s%s",
            config.body,
            len(self.train_set),
            self.steps_per_epoch,
            per_rank_batch,
            dist.world_size,
            dist.device,
            " with AMP" if self.use_amp else "",
        )

    def run(self, interrupted: InterruptFlag) -> None:
        for epoch in range(self.start_epoch, self.s.epochs):
            self.run_epoch(epoch, interrupted)

    def run_epoch(self, epoch: int, interrupted: InterruptFlag) -> None:
        from tqdm import tqdm

        s, dist = self.s, self.dist
        self.sampler.set_epoch(epoch)
        self.net.train()
        sums: dict[str, float] = {}
        seen, rate = 0, Throughput()
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{s.epochs}",
            unit="batch",
            leave=False,
            disable=None if s.progress and dist.is_main else True,
        )
        scale = None
        for i, (images, targets) in enumerate(bar):
            images = images.to(dist.device, non_blocking=True)
            with torch.autocast(dist.device.type, dtype=torch.float16, enabled=self.use_amp):
                losses = self.criterion(self.net(images), self.priors, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            scale = check_loss_scale(self.scaler, epoch * self.steps_per_epoch + i + 1)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(images)
            seen += len(images)
            rate.add(len(images) * dist.world_size)
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
            if interrupted:
                log.warning(
                    "interrupted in epoch %d: the checkpoint after epoch %d is kept; resume with --resume",
                    epoch + 1,
                    epoch,
                )
                raise KeyboardInterrupt
        record = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * self.steps_per_epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": round(rate.per_second(), 2),
            **{
                ("loss" if k == "loss" else f"loss_{k}"): round(dist.mean(v / max(seen, 1)), 5) for k, v in sums.items()
            },
        }
        if scale is not None:  # fp16 AMP on CUDA: the grad scaler's scale at the epoch's end
            record["loss_scale"] = scale
        if self.val_dir is not None and dist.is_main and ((epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs):
            record.update(_validate(self.model, self.config, self.val_dir))
        self.history.append(record)
        self.report("epoch", record)
        self.save_checkpoint(self.checkpoint(epoch + 1))
        dist.barrier()

    def finish(self) -> dict:
        s = self.s
        metrics = {"epochs": s.epochs, "steps": s.epochs * self.steps_per_epoch, "history": self.history}
        evaluated = [h for h in self.history if "val_ap50" in h]
        metrics["final"] = dict(evaluated[-1] if evaluated else self.history[-1] if self.history else {})
        if self.dist.is_main:
            self.writer.close()
            self._write_artifacts(metrics)
        return metrics

    def checkpoint(self, epoch: int) -> dict:
        """The state after `epoch` epochs (Trainer.save_checkpoint adds the RNG states)."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": json.dumps(self.history),
            "config": self.config.as_dict(),
            "settings": json.dumps(asdict(self.s)),
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.history = int(state["epoch"]), json.loads(state["history"])

    def _write_artifacts(self, metrics: dict) -> None:
        from facekit.detection.export import export_scrfd_onnx

        s = self.s
        save_model(
            self.out_dir,
            kind="detector",
            config=self.config.as_dict(),
            state_dict=self.model.state_dict(),
            meta={"trained_with": {k: v for k, v in asdict(s).items() if k != "progress"}, "final": metrics["final"]},
        )
        if s.export_onnx:
            export_scrfd_onnx(self.model.cpu(), self.config, self.out_dir / ONNX_FILE)
        self.write_metrics(metrics)


def _validate(model: torch.nn.Module, config: DetectorConfig, val_dir: Path) -> dict:
    from facekit.detection.evaluate import evaluate_split
    from facekit.detection.faces import DetectSettings
    from facekit.detection.net import RetinaFaceNet

    was_training = model.training
    model.eval()
    result = evaluate_split(
        val_dir,
        RetinaFaceNet(model, config, str(next(model.parameters()).device)),
        DetectSettings(threshold=0.02, max_size=config.image_size * 2),
    )
    model.train(was_training)
    nme = result.nme.nme
    return {"val_ap50": round(float(result.ap.ap), 5), "val_nme": None if math.isnan(nme) else round(nme, 5)}
