"""`facekit train-recognize` end to end on real faces: artefacts and ONNX interop, every loss kind through the
CLI, Partial FC sampling, exact resume, and two gloo processes against one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facekit.recognition.losses import create_loss

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


@pytest.mark.parametrize(
    ("loss", "extra"),
    [
        # quick for these: test_losses.py trains every registered loss (triplet included) and checks the gradients,
        # margins and centre update by hand; test_pk_sampler.py the P x K batches; sphereface is a margin loss like
        # the arcface of every other CLI training here
        pytest.param("triplet", ["--pk", 6, 4], marks=pytest.mark.slow),
        pytest.param("center", [], marks=pytest.mark.slow),
        pytest.param("sphereface", [], marks=pytest.mark.slow),
        # quick: test_losses.py trains every head on real crops through Partial FC, test_oracle_heads.py checks them
        pytest.param("adaface", ["--sample-rate", 0.5], marks=pytest.mark.slow),
        pytest.param("subcenter_arcface", ["--loss-param", "k=2"], marks=pytest.mark.slow),
    ],
)
def test_loss_kinds_through_the_cli(cli, six_people, tmp_path, loss, extra):
    """Each kind of loss falls over 6 steps on clean crops (augmentation makes 6 steps of a P x K triplet too noisy
    to compare; it is tested on its own)."""
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
        "--no-augment",
        *extra,
    )
    assert result.exit_code == 0, result.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.slow  # ~9 s; quick: test_partial_fc.py's sampling and its exact match with a full classifier
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


def three_people(six_people, tmp_path) -> Path:
    three = tmp_path / "three"
    for person in ("s1", "s2", "s3"):
        shutil.copytree(six_people / person, three / person)
    return three


def interrupted_and_resumed(cli, data, tmp_path, monkeypatch, args) -> tuple[dict, dict]:
    """Train `data` uninterrupted into a/ and, into b/, interrupted before step 8 then resumed from the step-6
    checkpoint (batches of 6 over 30 crops, --save-every 3): checks both ran 10 steps with the same losses and
    weights, and returns both metrics and b's checkpoint."""
    from facekit.recognition import train

    assert cli("train-recognize", data, tmp_path / "a", *args).exit_code == 0
    step = train._Trainer.train_step

    def interrupted_at_step_8(self, images, labels):
        if self.step == 7:
            raise KeyboardInterrupt
        return step(self, images, labels)

    monkeypatch.setattr(train._Trainer, "train_step", interrupted_at_step_8)
    result = cli("train-recognize", data, tmp_path / "b", *args)
    assert result.exit_code == 130
    checkpoint = torch.load(tmp_path / "b/checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 6
    monkeypatch.setattr(train._Trainer, "train_step", step)
    assert cli("train-recognize", data, tmp_path / "b", *args, "--resume").exit_code == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["steps"] == b["steps"] == 10
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
    wa, wb = (torch.load(tmp_path / d / "model.pt", weights_only=True)["state_dict"] for d in "ab")
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)
    return a, checkpoint


RESUME_ARGS = [*SMALL, "--batch-size", 6, "--epochs", 2, "--val-every", 2, "--save-every", 3, "--no-onnx"]


# ~9 s; quick: test_train_detect.py's exact resume goes through the same training.Trainer checkpoint/resume skeleton
@pytest.mark.slow
def test_resume_ends_like_an_uninterrupted_run_with_augmentation(cli, six_people, tmp_path, monkeypatch):
    """3 people (30 crops) in batches of 6: 10 steps over 2 epochs, a checkpoint at step 6 (mid-epoch 2)."""
    args = [*RESUME_ARGS, "--aug-rotate", 10]
    a, _ = interrupted_and_resumed(cli, three_people(six_people, tmp_path), tmp_path, monkeypatch, args)
    assert all(a["trained_with"]["augment"].values())  # every random change on: resume repeats them exactly


@pytest.mark.parametrize(
    ("loss", "running"),
    [("adaface", ["batch_mean", "batch_std"]), pytest.param("curricularface", ["t"], marks=pytest.mark.slow)],
)  # ~9 s each; curricularface's t is checkpointed by the same loss state dict as adaface's statistics
def test_resume_continues_the_heads_running_statistics(cli, six_people, tmp_path, monkeypatch, loss, running):
    """The running values are in the checkpoint (not their initial values) and the resumed run's losses equal the
    uninterrupted run's; a resume that restarted them would change every later logit."""
    args = [*RESUME_ARGS, "--loss", loss, "--no-augment"]
    _, checkpoint = interrupted_and_resumed(cli, three_people(six_people, tmp_path), tmp_path, monkeypatch, args)
    initial = create_loss(loss, embedding_size=32, num_classes=3).state_dict()
    for key in running:
        assert not torch.equal(checkpoint["loss"][key], initial[key]), key


@pytest.mark.slow
def test_two_gloo_processes_match_one(six_people, random_recognizer, tmp_path):
    """The same global batches on 1 and 2 torchrun processes (gloo, centres sharded over the 2) give the same losses
    and the same trained centres, to float tolerance. The backbone is frozen (eval mode) so that BatchNorm does not
    normalise each process's half batch on its own: what is compared is the distributed path itself, i.e. the data
    split, Partial FC's gathers and gradients (exact on their own in test_partial_fc.py), the head's optimiser and the
    checkpoint's gather of the shards."""
    from facekit.recognition.partial_fc import initial_centres

    args = ["train-recognize", str(six_people), None, "--backbone", "mobilefacenet", "--embedding-size", "32",
            "--workers", "0", "--batch-size", "20", "--epochs", "2", "--val-every", "1", "--no-onnx", "--no-flip",
            "--no-augment", "--pretrained", str(random_recognizer), "--freeze-backbone-epochs", "2"]  # fmt: skip
    runs = []
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        args[2] = str(out)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(29530 + nproc), "-m", "facekit", *args]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        history = json.loads((out / "metrics.json").read_text())["history"]
        runs.append((history, torch.load(out / "checkpoint.pt", weights_only=True)["head"]))
    (one, head_one), (two, head_two) = runs
    assert [h["step"] for h in one] == [h["step"] for h in two] == [1, 2, 3, 4, 5, 6]
    for h1, h2 in zip(one, two, strict=True):
        assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-5)
    assert head_one.shape == head_two.shape == (6, 32)
    torch.testing.assert_close(head_two, head_one, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(head_one, initial_centres(6, 32, 0, 6, seed=0), atol=1e-3)  # the head learnt


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


def pairs_bin(shared_data, path, people, same, different, seed=0):
    """A verification .bin of `same` + `different` pairs of ORL aligned crops of `people`, and its sidecar."""
    from facekit.data.verification import VerificationSet, write_bin

    rng = np.random.default_rng(seed)
    images, issame = [], []
    for k in range(same + different):
        a = rng.choice(people)
        b = a if k < same else rng.choice([p for p in people if p != a])
        i, j = rng.choice(10, 2, replace=False) + 1
        images += [(shared_data / f"faces/orl_aligned_112/{p}/{n}.jpg").read_bytes() for p, n in ((a, i), (b, j))]
        issame.append(k < same)
    write_bin(path, VerificationSet(images, issame))
    path.with_suffix(".json").write_text(json.dumps({"format": "facekit-pairs/1", "people": sorted(people)}))
    return path


@pytest.mark.slow
def test_fine_tuning_learns_new_people_and_keeps_unseen_ones(cli, orl_recognizer, shared_data, tmp_path):
    """The ORL s1-s30 recognizer fine-tuned on new people (s31-s35, a new head) with --backbone-lr-mult 0.1 and a
    frozen first epoch: better on pairs of s31-s35 (new.bin, flagged as sharing people with the training data, so
    not used for the threshold), as good on s36-s40 (unseen.bin, seen by neither run; measured 0.89 -> 0.875 and
    0.86 -> 0.893). Its backbone and embedding size come from the model's config."""
    from facekit.data.verification import load_bin
    from facekit.recognition.verification import embed_pairs, verification_metrics
    from facekit.runtime.recognizer import load_face_recognizer

    data = tmp_path / "data"
    for person in range(31, 36):
        shutil.copytree(shared_data / f"faces/orl_aligned_112/s{person}", data / f"s{person}")
    bins = {
        "unseen": pairs_bin(shared_data, tmp_path / "unseen.bin", [f"s{p}" for p in range(36, 41)], 100, 100),
        "new": pairs_bin(shared_data, tmp_path / "new.bin", [f"s{p}" for p in range(31, 36)], 150, 150),
    }
    before_model = load_face_recognizer(orl_recognizer)
    before = {}
    for name, path in bins.items():
        vset = load_bin(path)
        before[name] = verification_metrics(embed_pairs(vset, before_model.embed, flip=True), vset.issame).accuracy

    out = tmp_path / "tuned"
    args = ["--pretrained", orl_recognizer, "--backbone-lr-mult", 0.1, "--freeze-backbone-epochs", 1, "--epochs", 3]
    vals = ["--val", bins["unseen"], "--val", bins["new"]]
    result = cli("train-recognize", data, out, *args, *vals, "--workers", 0, "--no-onnx")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics["final"]
    assert final["val_new_acc"] > before["new"], (final, before)
    assert final["val_unseen_acc"] >= before["unseen"] - 0.03, (final, before)
    trained = metrics["trained_with"]
    config = before_model.config
    assert (trained["backbone"], trained["embedding_size"]) == (config.backbone, config.embedding_size)
    assert metrics["calibration"]["source"] == str(bins["unseen"])  # new.bin has more pairs, but known people
    assert metrics["calibration"]["people"] == [f"s{p}" for p in range(36, 41)]
    assert metrics["verification_people"]["new"]["shared_with_training"] == [f"s{p}" for p in range(31, 36)]
    log = (out / "train.log").read_text()
    assert "new.bin shares 5 of its 5 people with the training data" in log
    assert "the 5 people here get a new head" in log
    after = load_face_recognizer(out)
    assert after.config.calibration["source"] == str(bins["unseen"])
    assert after.threshold == metrics["calibration"]["threshold"]


def test_freezing_keeps_the_backbone_and_its_statistics(cli, six_people, random_recognizer, tmp_path):
    """Two frozen epochs: the backbone (weights and BatchNorm running statistics) ends exactly as it started; an
    arcface_torch-style backbone.pth (module.-prefixed state dict) loads as well as a model directory."""
    from facekit.recognition.partial_fc import initial_centres

    start = torch.load(random_recognizer / "model.pt", weights_only=True)["state_dict"]
    pth = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in start.items()}, pth)
    args = ["--backbone", "mobilefacenet", "--embedding-size", 32, "--workers", 0, "--no-onnx", "--batch-size", 12]
    result = cli("train-recognize", six_people, tmp_path / "m", *args, "--pretrained", pth,
                 "--freeze-backbone-epochs", 2, "--epochs", 2)  # fmt: skip
    assert result.exit_code == 0, result.output
    frozen = torch.load(tmp_path / "m/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(frozen[k], start[k]) for k in start)
    head = torch.load(tmp_path / "m/checkpoint.pt", weights_only=True)["head"]
    assert not torch.allclose(head, initial_centres(6, 32, 0, 6, seed=0), atol=1e-4)  # the new head learnt


@pytest.mark.slow  # ~9 s; quick: test_resume_continues_the_heads_running_statistics[adaface] resumes the same way
def test_stop_at_step_then_resume_ends_like_an_uninterrupted_run(cli, six_people, tmp_path):
    """--stop-at-step 6 of 10 writes a model and a checkpoint at step 6 with the 10-step schedule; --resume then
    ends exactly where the uninterrupted run does."""
    three = three_people(six_people, tmp_path)
    args = [*RESUME_ARGS, "--no-augment"]
    assert cli("train-recognize", three, tmp_path / "a", *args).exit_code == 0
    result = cli("train-recognize", three, tmp_path / "b", *args, "--stop-at-step", 6)
    assert result.exit_code == 0, result.output
    assert "trained 6 steps" in result.output
    assert torch.load(tmp_path / "b/checkpoint.pt", weights_only=True)["step"] == 6
    assert cli("train-recognize", three, tmp_path / "b", *args, "--resume").exit_code == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["steps"] == b["steps"] == 10
    assert [h["lr"] for h in a["history"]] == [h["lr"] for h in b["history"]]  # one schedule
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4)
