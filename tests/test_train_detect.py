"""`facekit train-detect` end to end: fine-tuning the published detector, learning from an ImageNet backbone, and
exact resume after an interruption."""

from __future__ import annotations

import json

import pytest
import torch
from orl_scenes import label_orl, write_layout

WEIGHTS = "weights/pytorch_retinaface_mnet025"
ARTIFACTS = ["checkpoint.pt", "config.yaml", "detector.onnx", "metrics.json", "model.pt", "tensorboard", "train.log"]


@pytest.fixture(scope="module")
def orl_faces(shared_data):
    return label_orl(shared_data, range(1, 41))


def val_ap(model_dir, split):
    from facekit.detection.evaluate import evaluate_split
    from facekit.runtime.detector import DetectSettings, load_face_detector

    return float(
        evaluate_split(split, load_face_detector(model_dir), DetectSettings(threshold=0.02, max_size=640)).ap.ap
    )


@pytest.mark.slow
def test_fine_tune_published_detector(cli, shared_data, tmp_path):
    from insightface.model_zoo import get_model

    from facekit.detection.weights import import_pytorch_retinaface

    import_pytorch_retinaface(shared_data / WEIGHTS / "mobilenet0.25_Final.pth", tmp_path / "start")
    data = shared_data / "layouts/detection_train_data"
    before = val_ap(tmp_path / "start", data / "val")
    out = tmp_path / "tuned"
    result = cli(
        "train-detect",
        data,
        out,
        "--pretrained",
        tmp_path / "start",
        "--epochs",
        2,
        "--batch-size",
        4,
        "--image-size",
        320,
        "--eval-every",
        1,
        "--workers",
        2,
        "--lr",
        1e-4,
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ARTIFACTS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 * 3 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(h["images_per_s"] > 0 and h["loss"] > 0 for h in metrics["history"])
    assert metrics["final"]["val_ap50"] >= before - 0.05
    assert val_ap(out, data / "val") >= before - 0.05
    assert list((out / "tensorboard").iterdir())
    assert "images_per_s=" in (out / "train.log").read_text()
    assert type(get_model(str(out / "detector.onnx"), providers=["CPUExecutionProvider"])).__name__ == "SCRFD"


@pytest.mark.slow
def test_learns_orl_scenes_from_imagenet_backbone(cli, shared_data, orl_faces, tmp_path):
    """Matching, coding and loss learn: from the ImageNet backbone to val AP >= 0.8 on pasted ORL faces."""
    data = write_layout(tmp_path / "data", orl_faces, {"train": 64, "val": 16}, size=256, seed=0)
    out = tmp_path / "model"
    result = cli(
        "train-detect",
        data,
        out,
        "--pretrained",
        shared_data / WEIGHTS / "mobilenetV1X0.25_pretrain.tar",
        "--epochs",
        12,
        "--batch-size",
        8,
        "--image-size",
        256,
        "--lr",
        5e-3,
        "--eval-every",
        12,
        "--workers",
        2,
        "--no-onnx",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert metrics["final"]["val_ap50"] >= 0.8, metrics["final"]


def test_resume_ends_like_an_uninterrupted_run(cli, orl_faces, tmp_path, monkeypatch):
    from facekit.detection import train

    data = write_layout(tmp_path / "data", orl_faces, {"train": 8, "val": 4}, size=128, seed=1)
    args = ["--epochs", 3, "--batch-size", 4, "--image-size", 128, "--workers", 0, "--eval-every", 3, "--no-onnx"]
    assert cli("train-detect", data, tmp_path / "a", *args).exit_code == 0

    run_epoch = train._Trainer.run_epoch

    def interrupted_in_third_epoch(self, epoch, flag):
        if epoch == 2:
            raise KeyboardInterrupt
        run_epoch(self, epoch, flag)

    monkeypatch.setattr(train._Trainer, "run_epoch", interrupted_in_third_epoch)
    result = cli("train-detect", data, tmp_path / "b", *args)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert (tmp_path / "b/checkpoint.pt").is_file() and not (tmp_path / "b/model.pt").exists()
    monkeypatch.setattr(train._Trainer, "run_epoch", run_epoch)
    result = cli("train-detect", data, tmp_path / "b", *args, "--resume")
    assert result.exit_code == 0, result.output

    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["steps"] == b["steps"] == 6
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["step"] == hb["step"] and ha["lr"] == pytest.approx(hb["lr"])
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
    wa, wb = (torch.load(tmp_path / d / "model.pt", weights_only=True)["state_dict"] for d in "ab")
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


def test_resume_without_checkpoint_is_a_clean_error(cli, orl_faces, tmp_path):
    data = write_layout(tmp_path / "data", orl_faces, {"train": 2}, size=96, seed=2)
    result = cli("train-detect", data, tmp_path / "m", "--resume", "--epochs", 1)
    assert result.exit_code == 1 and "checkpoint.pt: no checkpoint to resume from" in result.output


def test_resume_from_a_checkpoint_of_another_model_is_a_clean_error(cli, orl_faces, tmp_path):
    """A checkpoint.pt whose weights do not fit the model (another body, a hand-made file): one line, exit 1."""
    data = write_layout(tmp_path / "data", orl_faces, {"train": 2}, size=96, seed=2)
    (tmp_path / "m").mkdir()
    torch.save({"epoch": 1, "model": {"conv.weight": torch.zeros(1)}}, tmp_path / "m/checkpoint.pt")
    result = cli("train-detect", data, tmp_path / "m", "--resume", "--epochs", 1, "--workers", 0)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    last = result.output.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"Error: {tmp_path / 'm/checkpoint.pt'}: not a checkpoint of this training"), last


def test_missing_train_split(cli, tmp_path):
    (tmp_path / "d").mkdir()
    result = cli("train-detect", tmp_path / "d", tmp_path / "m")
    assert result.exit_code == 1 and "no train/label.txt" in result.output


@pytest.mark.slow
def test_ddp_under_torchrun_gloo(orl_faces, tmp_path):
    """Two CPU processes (gloo) split the global batch; rank 0 writes the model and reports once."""
    import subprocess
    import sys

    data = write_layout(tmp_path / "data", orl_faces, {"train": 16, "val": 4}, size=128, seed=3)
    out = tmp_path / "m"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "facekit",
        "train-detect",
        str(data),
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--image-size",
        "128",
        "--workers",
        "0",
        "--no-onnx",
        "--eval-every",
        "2",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained 2 epochs (4 steps)") == 1
    assert "batch 4 x 2 ranks" in (out / "train.log").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and "val_ap50" in metrics["final"]
