"""`facekit train-recognize` end to end on real faces: artefacts and ONNX interop, every loss kind through the
CLI, Partial FC sampling, exact resume, and two gloo processes against one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

REC = "layouts/recognition_train_data"
SMALL = ["--backbone", "mobilefacenet", "--embedding-size", 32, "--workers", 0, "--lr", 0.01, "--no-flip"]


@pytest.fixture(scope="module")
def six_people(shared_data, tmp_path_factory):
    """Identity folders of ORL s1-s6 (60 aligned crops), with orl_val.bin beside them."""
    root = tmp_path_factory.mktemp("six")
    for person in range(1, 7):
        shutil.copytree(shared_data / f"faces/orl_aligned_112/s{person}", root / f"s{person}")
    return root


def crops(shared_data, n=8):
    import cv2

    return np.stack(
        [cv2.imread(str(shared_data / f"faces/orl_aligned_112/s{31 + i % 10}/{1 + i // 10}.jpg")) for i in range(n)]
    )


@pytest.mark.slow
def test_artifacts_threshold_and_onnx_interop(cli, shared_data, tmp_path):
    from insightface.model_zoo import get_model

    from facekit.runtime.recognizer import load_face_recognizer

    out = tmp_path / "model"
    result = cli("train-recognize", shared_data / REC, out, *SMALL, "--batch-size", 60, "--epochs", 1, "--val-every", 5)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "checkpoint.pt",
        "config.yaml",
        "metrics.json",
        "model.pt",
        "recognizer.onnx",
        "roc.png",
        "tensorboard",
        "train.log",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and 0 <= metrics["final"]["val_orl_val_acc"] <= 1
    assert "threshold:" in (out / "config.yaml").read_text()
    torch_model = load_face_recognizer(out)
    assert torch_model.config.threshold == pytest.approx(metrics["final"]["threshold"], abs=1e-4)
    theirs = get_model(str(out / "recognizer.onnx"), providers=["CPUExecutionProvider"])
    assert type(theirs).__name__ == "ArcFaceONNX"
    faces = crops(shared_data)
    ours = torch_model.embed(faces)
    other = np.stack([theirs.get_feat(face)[0] for face in faces])
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert (np.sum(ours * other, 1) >= 0.999).all()


@pytest.mark.parametrize(("loss", "extra"), [("triplet", ["--pk", 6, 4]), ("center", []), ("sphereface", [])])
def test_loss_kinds_through_the_cli(cli, six_people, tmp_path, loss, extra):
    out = tmp_path / loss
    result = cli(
        "train-recognize",
        six_people,
        out,
        *SMALL,
        "--loss",
        loss,
        "--batch-size",
        24,
        "--epochs",
        3,
        "--val-every",
        1,
        "--no-onnx",
        *extra,
    )
    assert result.exit_code == 0, result.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_partial_fc_sample_rate_half_trains(cli, six_people, tmp_path):
    result = cli(
        "train-recognize",
        six_people,
        tmp_path / "m",
        *SMALL,
        "--sample-rate",
        0.5,
        "--batch-size",
        12,
        "--epochs",
        3,
        "--val-every",
        1,
        "--no-onnx",
        "--loss-param",
        "s=16",
    )
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "m/metrics.json").read_text())["history"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_resume_ends_like_an_uninterrupted_run(cli, six_people, tmp_path, monkeypatch):
    from facekit.recognition import train

    args = [*SMALL, "--batch-size", 12, "--epochs", 2, "--val-every", 2, "--save-every", 3, "--no-onnx"]
    assert cli("train-recognize", six_people, tmp_path / "a", *args).exit_code == 0
    step = train._Trainer.train_step

    def interrupted_at_step_8(self, images, labels):
        if self.step == 7:
            raise KeyboardInterrupt
        return step(self, images, labels)

    monkeypatch.setattr(train._Trainer, "train_step", interrupted_at_step_8)
    result = cli("train-recognize", six_people, tmp_path / "b", *args)
    assert result.exit_code == 130
    assert torch.load(tmp_path / "b/checkpoint.pt", weights_only=True)["step"] == 6
    monkeypatch.setattr(train._Trainer, "train_step", step)
    assert cli("train-recognize", six_people, tmp_path / "b", *args, "--resume").exit_code == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["steps"] == b["steps"] == 10
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
    wa, wb = (torch.load(tmp_path / d / "model.pt", weights_only=True)["state_dict"] for d in "ab")
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


@pytest.mark.slow
def test_two_gloo_processes_match_one(six_people, tmp_path):
    """Same global batch on 1 and 2 processes (centres sharded over the 2): the losses agree. Not to the last
    digit: BatchNorm normalises each process's half batch (Partial FC itself is exact: test_partial_fc.py)."""
    args = ["train-recognize", str(six_people), None, "--backbone", "mobilefacenet", "--embedding-size", "32",
            "--workers", "0", "--lr", "0.001", "--batch-size", "60", "--epochs", "4", "--val-every", "1",
            "--no-onnx", "--no-flip"]  # fmt: skip
    histories = []
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        args[2] = str(out)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(29530 + nproc),
            "-m",
            "facekit",
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        histories.append(json.loads((out / "metrics.json").read_text())["history"])
    one, two = histories
    assert [h["step"] for h in one] == [h["step"] for h in two] == [1, 2, 3, 4]
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=0.01)  # same weights, BatchNorm on halves
    for h1, h2 in zip(one, two, strict=True):  # later steps drift apart a little, as BatchNorm's noise compounds
        assert h1["loss"] == pytest.approx(h2["loss"], rel=0.1)
    assert one[-1]["loss"] < one[0]["loss"] and two[-1]["loss"] < two[0]["loss"]


@pytest.mark.slow
def test_beats_eigenfaces_on_unseen_people(orl_recognizer, shared_data):
    """From scratch on CPU: ORL s1-s30 (300 crops) -> orl_val.bin (s31-s40, never seen). The eigenfaces baseline
    (PCA fitted on the same 300 crops) runs in the same test under the same 10-fold protocol."""
    from facekit.data.images import decode_image
    from facekit.data.recset import open_recognition_set
    from facekit.data.verification import load_bin
    from facekit.recognition.eigenfaces import Eigenfaces
    from facekit.recognition.verification import embed_pairs, verification_metrics

    with open_recognition_set(shared_data / REC) as rset:
        train = np.stack([decode_image(rset[i][1], f"item {i}") for i in range(len(rset))])
    vset = load_bin(shared_data / REC / "orl_val.bin")
    baseline = verification_metrics(embed_pairs(vset, Eigenfaces.fit(train).embed), vset.issame).accuracy
    accuracy = json.loads((orl_recognizer / "metrics.json").read_text())["final"]["val_orl_val_acc"]
    assert accuracy > baseline, (accuracy, baseline)


@pytest.mark.slow
def test_resume_with_another_number_of_processes(cli, six_people, tmp_path, monkeypatch):
    """Interrupted on 1 process, resumed on 2: the class centres are re-sharded, the run ends at the same step."""
    from facekit.recognition import train

    out = tmp_path / "m"
    common = ["--backbone", "mobilefacenet", "--embedding-size", "32", "--workers", "0", "--lr", "0.001",
              "--batch-size", "20", "--epochs", "2", "--val-every", "1", "--save-every", "2", "--no-onnx"]  # fmt: skip
    step = train._Trainer.train_step

    def interrupted_at_step_5(self, images, labels):
        if self.step == 4:
            raise KeyboardInterrupt
        return step(self, images, labels)

    monkeypatch.setattr(train._Trainer, "train_step", interrupted_at_step_5)
    assert cli("train-recognize", six_people, out, *common).exit_code == 130
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "-m", "facekit", "train-recognize", str(six_people), str(out), *common, "--resume"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and [h["step"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    assert "resumed from" in (out / "train.log").read_text()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["head"].shape == (6, 32)
