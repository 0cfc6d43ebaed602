"""Shared fixtures. Tests on ../shared/data fail under CI=true when it is missing, and skip only outside CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

SHARED_DATA = Path(
    os.environ.get("FACEKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The 5-minute ORL recognizer stays out of `make check`: a test that requests it must be marked slow."""
    unmarked = [i.nodeid for i in items if "orl_recognizer" in i.fixturenames and not i.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"tests that train the ORL recognizer must be marked slow: {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data folder (../shared/data relative to the project root)."""
    if not (SHARED_DATA / "README.md").is_file():
        message = f"real test data not found at {SHARED_DATA} (set FACEKIT_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke `facekit ARGS...`; returns the click Result."""
    from facekit.cli import main

    def invoke(*args: object, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture(scope="session")
def orl_recognizer(shared_data, tmp_path_factory) -> Path:
    """A recognizer trained from scratch through the CLI on ORL s1-s30 (layouts/recognition_train_data, ~5 min on 2
    CPU cores) with train-recognize's defaults (the small-dataset recipe, augmentation), validated on orl_val.bin
    (s31-s40): the model directory, with recognizer.onnx. Shared by the train-recognize and gallery tests; trained
    once per recipe, data and facekit source (tests/trained_cache.py) and copied from ~/.cache/facekit after that."""
    from trained_cache import cached_model, recipe_key

    from facekit.cli import main

    args = ["--backbone", "mobilefacenet", "--workers", "2"]  # no recipe flag: the defaults are what is tested
    data = shared_data / "layouts/recognition_train_data"

    def train(out: Path) -> None:
        result = CliRunner().invoke(main, ["train-recognize", str(data), str(out), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    key = recipe_key(["train-recognize", *args], data, ["facekit.cli", "facekit.cli.train_recognize"])
    return cached_model("orl_recognizer", key, train, tmp_path_factory.mktemp("orl_recognizer") / "model")


@pytest.fixture(scope="session")
def random_recognizer(tmp_path_factory) -> Path:
    """An untrained 32-d mobilefacenet recognizer directory (seeded): fast, for tests of plumbing, not accuracy."""
    import torch

    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("random_recognizer") / "model"
    config = RecognizerConfig(backbone="mobilefacenet", embedding_size=32)
    save_recognizer(out, create_backbone("mobilefacenet", embedding_size=32), config)
    return out


@pytest.fixture(scope="session")
def scrfd(shared_data) -> Path:
    """insightface's published SCRFD-500M detector with 5 key points (ONNX)."""
    return shared_data / "weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx"


@pytest.fixture(scope="session")
def facenet_wheel() -> Path:
    """facenet-pytorch's wheel (MIT), which ships MTCNN's weights: downloaded once into the cache of
    tests/pypi_files.py, never installed. Fails under CI=true when it cannot be fetched, skips only outside CI."""
    from pypi_files import FACENET_PYTORCH, DownloadError, pypi_file

    try:
        return pypi_file(*FACENET_PYTORCH)
    except DownloadError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mtcnn_dir(facenet_wheel, tmp_path_factory) -> Path:
    """MTCNN imported from the wheel by `facekit import-model mtcnn`: a detector directory."""
    from facekit.cli import main

    out = tmp_path_factory.mktemp("mtcnn") / "model"
    result = CliRunner().invoke(main, ["import-model", "mtcnn", str(facenet_wheel), str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def dlib_dir(tmp_path_factory) -> Path:
    """dlib's published recognizer (face-recognition-models, public domain) imported by `facekit import-model
    dlib-resnet`: a 150x150 recognizer directory aligned to dlib's chips."""
    from dlib_env import dlib_models

    from facekit.cli import main

    out = tmp_path_factory.mktemp("dlib") / "model"
    dat = dlib_models() / "dlib_face_recognition_resnet_model_v1.dat"
    result = CliRunner().invoke(main, ["import-model", "dlib-resnet", str(dat), str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out
