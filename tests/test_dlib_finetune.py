"""dlib's 150x150 recognizer through the whole workflow: pack and make-bin aligned onto its template, fine-tune with
--pretrained, export, build a gallery and recognise with the fine-tuned model; crops of another size are one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from facekit.align import DLIB_TEMPLATE

pytestmark = pytest.mark.slow

TRAIN_PEOPLE = ("7201", "7202", "7203", "7204")  # CelebA training people
GALLERY_PEOPLE = ("7450", "7451", "7452")  # CelebA evaluation people


def _people(shared_data: Path, names: tuple[str, ...], out: Path) -> Path:
    out.mkdir()
    for name in names:
        (out / name).symlink_to(shared_data / "faces" / "celeba_subset" / name, target_is_directory=True)
    return out


@pytest.fixture(scope="module")
def finetuned(shared_data, scrfd, dlib_dir, tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from facekit.cli import main

    work = tmp_path_factory.mktemp("finetune")

    def run(*args: object) -> None:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    people = _people(shared_data, TRAIN_PEOPLE, work / "people")
    run("pack-rec", people, work / "rec", "--detect", scrfd, "--recognizer", dlib_dir, "--pick", "center")
    run("train-recognize", work / "rec", work / "model", "--pretrained", dlib_dir, "--epochs", 1, "--batch-size", 16,
        "--backbone-lr-mult", 0.1, "--workers", 0)  # fmt: skip
    return work / "model"


def test_finetuned_model_keeps_dlibs_crops(finetuned):
    from facekit.runtime.recognizer import load_face_recognizer

    config = yaml.safe_load((finetuned / "config.yaml").read_text())
    assert (config["backbone"], config["input_size"], config["normalization"]) == ("dlib_resnet", 150, "dlib")
    np.testing.assert_allclose(config["template"], DLIB_TEMPLATE, atol=1e-4)
    onnx = load_face_recognizer(finetuned, backend="onnx")
    assert onnx.input_size == 150
    np.testing.assert_allclose(onnx.template, DLIB_TEMPLATE, atol=1e-4)


def test_finetuned_model_exports_and_recognises(finetuned, shared_data, scrfd, cli, tmp_path):
    """Gallery: the first 3 photos of 3 evaluation people; probes: their 4th photos, named right."""
    gallery = tmp_path / "gallery"
    for name in GALLERY_PEOPLE:
        photos = sorted((shared_data / "faces" / "celeba_subset" / name).iterdir())
        (gallery / name).mkdir(parents=True)
        for photo in photos[:3]:
            (gallery / name / photo.name).symlink_to(photo)
        (tmp_path / "probes").mkdir(exist_ok=True)
        (tmp_path / "probes" / f"{name}.jpg").symlink_to(photos[3])
    exported = tmp_path / "fp16.onnx"
    assert cli("export", finetuned, "--fp16", "--out", exported).exit_code == 0
    from facekit.runtime.recognizer import load_face_recognizer

    assert load_face_recognizer(exported).input_size == 150
    db = tmp_path / "db.h5"
    result = cli("build-db", gallery, scrfd, finetuned, db, "--pick", "center")
    assert result.exit_code == 0, result.output
    out = tmp_path / "answers.jsonl"
    result = cli("recognize", tmp_path / "probes", db, scrfd, finetuned, "--out", out, "--threshold", 0.0)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    answers = {Path(r["image"]).stem: max(r["faces"], key=lambda f: f["similarity"])["identity"] for r in records}
    assert answers == {name: name for name in GALLERY_PEOPLE}


def test_crops_of_another_size_are_one_line(shared_data, dlib_dir, cli, tmp_path):
    data = shared_data / "layouts" / "recognition_train_data"  # 112x112 crops
    result = cli("train-recognize", data, tmp_path / "m", "--pretrained", dlib_dir, "--epochs", 1)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {data}: property says 112x112 crops; dlib_resnet takes 150x150 crops (make them with `facekit align "
        "--recognizer MODEL` or `pack-rec --size`)"
    )


def test_make_bin_aligns_onto_the_recognizers_template(shared_data, scrfd, dlib_dir, cli, tmp_path):
    from facekit.data.verification import load_bin
    from facekit.runtime.recognizer import load_face_recognizer

    people = _people(shared_data, GALLERY_PEOPLE, tmp_path / "people")
    out = tmp_path / "eval.bin"
    result = cli(
        "make-bin", people, out, "--pairs", 20, "--detect", scrfd, "--recognizer", dlib_dir, "--pick", "center"
    )
    assert result.exit_code == 0, result.output
    vset = load_bin(out)
    crops = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in vset.images])
    assert crops.shape[1:] == (150, 150, 3)
    recognizer = load_face_recognizer(dlib_dir)
    embeddings = recognizer.embed(crops)
    cosines = (embeddings[0::2] * embeddings[1::2]).sum(1)
    accuracy = ((cosines >= recognizer.threshold) == np.asarray(vset.issame)).mean()
    assert accuracy >= 0.85, cosines  # dlib's chips at dlib's translated threshold: 19 of these 20 pairs


@pytest.mark.parametrize("command", ["make-bin", "pack-rec"])
def test_recognizer_without_detect_is_a_usage_error(command, shared_data, dlib_dir, cli, tmp_path):
    crops = shared_data / "faces" / "orl_aligned_112"
    out = tmp_path / ("x.bin" if command == "make-bin" else "rec")
    result = cli(command, crops, out, "--recognizer", dlib_dir)
    assert result.exit_code == 2 and "--recognizer" in result.output and "applies with --detect only" in result.output
