"""Galleries that cannot be used as they are: one of another recognizer, a damaged file, something that is not a
gallery. Every command refuses with one line naming the file and what is wrong, and changes nothing."""

from __future__ import annotations

import h5py
import pytest

from .helpers import KNN, clean_error, copy, temp_files


@pytest.fixture(scope="module")
def other_recognizers(tmp_path_factory) -> dict[int, object]:
    """Untrained mobilefacenets: 32-d with other weights than random_recognizer's, and 64-d."""
    import torch

    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    root = tmp_path_factory.mktemp("other_recognizers")
    for size in (32, 64):
        torch.manual_seed(size)
        config = RecognizerConfig(backbone="mobilefacenet", embedding_size=size)
        save_recognizer(root / f"d{size}", create_backbone("mobilefacenet", embedding_size=size), config)
    return {size: root / f"d{size}" for size in (32, 64)}


def test_gallery_from_another_model(cli, shared_data, scrfd, knn_gallery, other_recognizers, tmp_path):
    """A gallery made by another recognizer (same 32-d size but other weights: another sha256; or 64-d): recognize
    and build-db --append refuse with one line naming the gallery, both models and what to do, exit 1; the gallery
    stays byte for byte, and no --out or temporary file is written."""
    db = copy(knn_gallery, tmp_path / "g.h5")
    before = db.read_bytes()
    name = "facekit mobilefacenet (PyTorch)"
    messages = {
        32: f"{db}: gallery was built by recognizer {name} (sha256 ",
        64: f"{db}: gallery holds 32-d embeddings, recognizer {name} makes 64-d ones; use the recognizer that built "
        f"it ({name})",
    }
    out = tmp_path / "out.jsonl"
    for size, model in other_recognizers.items():
        line = clean_error(cli("recognize", shared_data / KNN / "test", db, scrfd, model, "--out", out), 1,
                           messages[size])  # fmt: skip
        if size == 32:
            assert line.endswith("use that recognizer or rebuild the gallery with build-db")
        result = cli("build-db", shared_data / KNN / "train", scrfd, model, db, "--append")
        clean_error(result, 1, messages[size])
    assert db.read_bytes() == before and not out.exists() and temp_files(tmp_path) == []


def damaged(path, offset: int, size: int = 200) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = bytes(range(size))
    return bytes(data)


def test_damaged_gallery_file(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A damaged gallery: 200 bytes overwritten at every 256-byte step of the file, cut in half, a text file named
    .h5, an HDF5 file that is not a gallery, a gallery without one of its attributes. db list, db info, inspect,
    recognize and build-db --append answer with one line naming the file (exit 1) or, where the damage hit bytes the
    gallery does not use, work as with the intact file; never a traceback."""
    good = knn_gallery.read_bytes()
    db = tmp_path / "g.h5"
    outcomes = set()
    for offset in range(0, len(good), 256):
        db.write_bytes(damaged(knn_gallery, offset))
        result = cli("db", "list", db)
        assert "Traceback" not in result.output and result.exit_code in (0, 1), (offset, result.output)
        if result.exit_code:
            outcomes.add(clean_error(result, 1, f"{db}: ").split(" (")[0])
        else:
            assert result.output == cli("db", "list", knn_gallery).output
    assert {f"Error: {db}: damaged gallery file", f"Error: {db}: not an HDF5 file"} <= outcomes, outcomes

    for data in (good[: len(good) // 2], b"identity,embedding\n"):  # cut in half; a text file
        db.write_bytes(data)
        for args in (["db", "info", db], ["inspect", db], ["recognize", shared_data / KNN / "test", db, scrfd,
                     random_recognizer], ["build-db", shared_data / KNN / "train", scrfd, random_recognizer, db,
                     "--append"]):  # fmt: skip
            clean_error(cli(*args), 1, f"{db}: not an HDF5 file (expected a gallery made by facekit build-db)")
        assert db.read_bytes() == data

    with h5py.File(db, "w") as f:
        f["embeddings"] = [[1.0, 0.0]]
    clean_error(cli("db", "info", db), 1, f"{db}: an HDF5 file, but not a facekit gallery (no format attribute)")
    db.write_bytes(good)
    with h5py.File(db, "a") as f:
        del f.attrs["recognizer_fingerprint"]
    clean_error(cli("recognize", shared_data / KNN / "test", db, scrfd, random_recognizer), 1,
                f"{db}: gallery lacks attribute recognizer_fingerprint; rebuild it with build-db")  # fmt: skip
