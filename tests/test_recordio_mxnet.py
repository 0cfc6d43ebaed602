"""Files facekit writes, read by the real MXNet 1.9.1 the way insightface reads them; byte-identical to MXNet's own."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from mxnet_env import MXNetEnvError, mxnet_python, run_mxnet

from facekit.data.recordio import RecordWriter
from facekit.data.recset import Sample, write_recognition_set

pytestmark = [pytest.mark.mxnet, pytest.mark.slow]

M = struct.pack("<I", 0xCED7230A)

# What arcface_torch's MXFaceDataset (keys, labels, mx.image.imdecode) and insightface's image_iter (id2range,
# unpack_img) do with a record file.
READ_LIKE_INSIGHTFACE = """
import hashlib, json, numbers, sys
import mxnet as mx
import numpy as np

folder = sys.argv[1]
rec = mx.recordio.MXIndexedRecordIO(folder + "/cele.idx", folder + "/cele.rec", "r")
header, _ = mx.recordio.unpack(rec.read_idx(0))
imgidx = list(range(1, int(header.label[0]))) if header.flag > 0 else list(rec.keys)
id2range = {}
for identity in range(int(header.label[0]), int(header.label[1])):
    h, _ = mx.recordio.unpack(rec.read_idx(identity))
    id2range[identity] = [int(h.label[0]), int(h.label[1])]
images, pixels = [], []
for idx in imgidx:
    s = rec.read_idx(idx)
    h, img = mx.recordio.unpack(s)
    label = h.label if isinstance(h.label, numbers.Number) else h.label[0]
    rgb = mx.image.imdecode(img).asnumpy()
    _, bgr = mx.recordio.unpack_img(s)
    pixels.append(bgr)
    images.append({
        "key": idx, "label": int(label), "id": h.id, "sha256": hashlib.sha256(img).hexdigest(),
        "mx_vs_cv2": int(np.abs(rgb[:, :, ::-1].astype(int) - bgr).max()),
    })
np.save(folder + "/mxnet_pixels.npy", np.stack(pixels))
print(json.dumps({"flag": header.flag, "header": [float(v) for v in header.label], "id2range": id2range,
                  "images": images}))
"""


def natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def test_insightface_reads_our_recognition_set(shared_data: Path, tmp_path: Path):
    root = shared_data / "faces/orl_aligned_112"
    people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    files = [
        (label, f)
        for label, person in enumerate(people)
        for f in sorted(person.glob("*.jpg"), key=lambda f: natural_key(f.name))
    ]
    assert [p.name for p in people] == [f"s{i}" for i in range(1, 41)] and len(files) == 400
    samples = [Sample(label, f.read_bytes(), f.relative_to(root).as_posix()) for label, f in files]
    write_recognition_set(tmp_path, samples, image_size=(112, 112))

    seen = json.loads(run_mxnet(READ_LIKE_INSIGHTFACE, tmp_path))
    assert seen["flag"] == 2 and seen["header"] == [401.0, 441.0]
    assert seen["id2range"] == {str(401 + i): [1 + 10 * i, 11 + 10 * i] for i in range(40)}
    assert [image["key"] for image in seen["images"]] == list(range(1, 401))
    for image, sample in zip(seen["images"], samples):
        assert (image["label"], image["id"]) == (sample.label, image["key"])
        assert image["sha256"] == hashlib.sha256(sample.image).hexdigest()  # the file's bytes, untouched
        assert image["mx_vs_cv2"] == 0  # MXFaceDataset's mx.image.imdecode and image_iter's unpack_img agree
    ours = np.stack([cv2.imdecode(np.frombuffer(s.image, np.uint8), cv2.IMREAD_COLOR) for s in samples])
    theirs = np.load(tmp_path / "mxnet_pixels.npy")
    assert theirs.shape == (400, 112, 112, 3)
    assert np.abs(theirs.astype(int) - ours).max() <= 1  # equal with OpenCV 4.11 (MXNet) and 5.0; allow libjpeg drift


# Reads every record of facekit-written files with MXNet's indexed and sequential readers, and writes the same
# payloads with MXNet's writer, for every case in one process.
READ_AND_WRITE = """
import json, sys
import mxnet as mx

results = []
for case in json.load(open(sys.argv[1])):
    d = case["dir"]
    indexed = mx.recordio.MXIndexedRecordIO(d + "/facekit.idx", d + "/facekit.rec", "r")
    by_key = [[key, indexed.read_idx(key).hex()] for key in indexed.keys]
    indexed.close()
    sequential, reader = [], mx.recordio.MXRecordIO(d + "/facekit.rec", "r")
    while (record := reader.read()) is not None:
        sequential.append(record.hex())
    reader.close()
    writer = mx.recordio.MXIndexedRecordIO(d + "/mxnet.idx", d + "/mxnet.rec", "w")
    for key, payload in case["records"]:
        writer.write_idx(key, bytes.fromhex(payload))
    writer.close()
    results.append({"by_key": by_key, "sequential": sequential})
print(json.dumps(results))
"""

# Pieces that put magic words (and halves of them) at aligned and unaligned offsets, forcing chunked records.
payloads = st.lists(
    st.one_of(st.binary(max_size=40), st.just(M), st.sampled_from([M[:2], M[2:], M[1:]])), min_size=1, max_size=10
).map(b"".join)

EDGE_CASES = {
    0: b"",
    1: M,
    2: M + M,
    3: b"abcd" + M,
    4: M + b"tail",
    5: b"1234" + M + b"5678" + M + M + b"9",
    6: b"x" + M,
}


def hypothesis_cases(n: int) -> list[dict[int, bytes]]:
    """`n` record sets (random keys, payloads full of magic words) drawn by hypothesis, plus the edge cases."""
    cases = [EDGE_CASES]

    @given(st.dictionaries(st.integers(0, 2**62), payloads, min_size=1, max_size=6))
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate])
    def collect(records: dict[int, bytes]) -> None:
        cases.append(records)

    collect()
    return cases


def test_mxnet_reads_our_records_and_writes_the_same_bytes(tmp_path: Path):
    cases = hypothesis_cases(25)
    manifest = []
    for i, records in enumerate(cases):
        case_dir = tmp_path / f"case{i}"
        with RecordWriter(case_dir / "facekit.rec") as writer:
            for key, payload in records.items():
                writer.write(key, payload)
        manifest.append({"dir": str(case_dir), "records": [[key, payload.hex()] for key, payload in records.items()]})
    (tmp_path / "cases.json").write_text(json.dumps(manifest))

    results = json.loads(run_mxnet(READ_AND_WRITE, tmp_path / "cases.json"))
    assert len(results) == len(cases)
    chunked = 0
    for i, (records, seen) in enumerate(zip(cases, results)):
        case_dir = tmp_path / f"case{i}"
        assert seen["by_key"] == [[key, payload.hex()] for key, payload in records.items()], i
        assert seen["sequential"] == [payload.hex() for payload in records.values()], i
        assert (case_dir / "facekit.rec").read_bytes() == (case_dir / "mxnet.rec").read_bytes(), i
        assert (case_dir / "facekit.idx").read_bytes() == (case_dir / "mxnet.idx").read_bytes(), i
        chunked += sum(any(p[j : j + 4] == M for j in range(0, len(p) - 3, 4)) for p in records.values())
    assert chunked >= 10  # records MXNet's writer split into chunks


def test_unbuildable_environment_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Without a package index the build raises (so the tests fail, never skip) and leaves no half-built cache."""
    monkeypatch.setenv("FACEKIT_MXNET_VENV", str(tmp_path / "mx"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    mxnet_python.cache_clear()
    try:
        with pytest.raises(MXNetEnvError, match=re.escape(f"cannot build the MXNet environment at {tmp_path / 'mx'}")):
            mxnet_python()
    finally:
        mxnet_python.cache_clear()
    assert [p.name for p in tmp_path.iterdir()] == [".mx.lock"]
