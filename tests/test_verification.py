"""insightface verification .bin files, read without unpickling anything dangerous."""

from __future__ import annotations

import pickle

import pytest

from facekit.data.verification import VerificationSet, load_bin, write_bin
from facekit.errors import DataFormatError


def test_real_orl_val_bin(shared_data):
    vset = load_bin(shared_data / "layouts/recognition_train_data/orl_val.bin")
    assert len(vset) == 400 and sum(vset.issame) == 200
    assert len(vset.images) == 800 and all(b[:2] == b"\xff\xd8" for b in vset.images)


def test_real_insightface_bin_with_numpy_arrays(shared_data):
    """insightface's own small_lfw.bin stores the JPEG bytes as uint8 numpy arrays."""
    root = shared_data / "fixtures/insightface_small_lfw_bin"
    vset = load_bin(root / "small_lfw.bin")
    assert len(vset) == 10 and all(vset.issame)
    import cv2
    import numpy as np

    for i in (0, 7, 19):
        ours = cv2.imdecode(np.frombuffer(vset.images[i], np.uint8), cv2.IMREAD_COLOR)
        ref = cv2.imread(str(root / f"small_lfw_decoded/{i:02d}.jpg"))
        assert ours.shape == (112, 112, 3)
        assert np.abs(ours.astype(int) - ref.astype(int)).mean() < 2.0


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [Boom(), ([b"x", Boom()], [True])])
def test_refuses_code_in_pickle(tmp_path, payload):
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataFormatError, match="global 'builtins.print' is not allowed"):
        load_bin(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"a": 1}, r"expected a pickle of \(bins, issame_list\)"),
        (([b"a"], [True]), r"1 images for 1 pairs \(expected 2\)"),
        ((["a", "b"], [True]), "'bins' must be a list of encoded images"),
        (([b"a", b"b"], ["yes"]), "'issame_list' must be a list of booleans"),
    ],
)
def test_wrong_structure(tmp_path, obj, message):
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DataFormatError, match=message):
        load_bin(path)


def test_truncated_bin(shared_data, tmp_path):
    data = (shared_data / "fixtures/insightface_small_lfw_bin/small_lfw.bin").read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cut.bin: not a verification .bin pickle"):
        load_bin(path)


@pytest.mark.parametrize("protocol", [2, 4])
def test_round_trip(tmp_path, protocol):
    vset = VerificationSet([b"\xff\xd8a", b"\xff\xd8b", b"c", b"d"], [True, False])
    write_bin(tmp_path / "a.bin", vset)
    assert load_bin(tmp_path / "a.bin") == vset
    (tmp_path / "b.bin").write_bytes(pickle.dumps((vset.images, vset.issame), protocol=protocol))
    assert load_bin(tmp_path / "b.bin") == vset
