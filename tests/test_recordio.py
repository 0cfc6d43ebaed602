"""Pure-Python RecordIO: IRHeader packing, chunking at magic words, round trips, atomic writes, corruption."""

from __future__ import annotations

import math
import pickle
import re
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facekit.data.recordio import IRHeader, RecordReader, RecordWriter, encode_record, pack, read_idx, unpack
from facekit.data.recset import Sample, open_recognition_set, write_recognition_set
from facekit.errors import DataFormatError, FacekitError, MissingDataError

MAGIC = 0xCED7230A
M = struct.pack("<I", MAGIC)  # b"\x0a\x23\xd7\xce"


def head(cflag: int, length: int) -> bytes:
    """A record header as dmlc-core writes it."""
    return struct.pack("<II", MAGIC, cflag << 29 | length)


def dmlc_write_record(payload: bytes) -> bytes:
    """Line-by-line port of dmlc-core's RecordIOWriter::WriteRecord, the oracle for encode_record."""
    out, dptr, n = bytearray(), 0, len(payload)
    for i in range(0, n - n % 4, 4):
        if payload[i : i + 4] == M:
            out += head(1 if dptr == 0 else 2, i - dptr) + payload[dptr:i]
            dptr = i + 4
    out += head(3 if dptr else 0, n - dptr) + payload[dptr:] + bytes(-n % 4)
    return bytes(out)


# Payloads built from pieces so that magic words (and halves of them) land at aligned and unaligned offsets.
payloads = st.lists(
    st.one_of(st.binary(max_size=9), st.just(M), st.sampled_from([M[:2], M[2:], M[:3], M[1:]])), max_size=8
).map(b"".join)
record_sets = st.dictionaries(st.integers(0, 2**40), payloads, max_size=8)


def write(path: Path, records: dict[int, bytes]) -> Path:
    with RecordWriter(path) as writer:
        for key, payload in records.items():
            writer.write(key, payload)
    return path


# --- IRHeader ---------------------------------------------------------------------------------------------------


def test_pack_scalar_label_layout():
    assert pack(3.0, b"jpg", id=7, id2=9) == struct.pack("<IfQQ", 0, 3.0, 7, 9) + b"jpg"
    assert pack(5, b"") == struct.pack("<IfQQ", 0, 5.0, 0, 0)


def test_pack_list_label_layout():
    expected = struct.pack("<IfQQ", 2, 0.0, 12, 0) + struct.pack("<ff", 4.0, 1.0) + b"img"
    assert pack([4.0, 1.0], b"img", id=12) == expected
    assert pack((301, 331), b"") == struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<ff", 301.0, 331.0)


def test_unpack_inverts_pack():
    header, image = unpack(pack(2.5, b"\xff\xd8", id=3, id2=4))
    assert header == IRHeader(0, 2.5, 3, 4) and image == b"\xff\xd8" and header.class_label == 2.5
    header, image = unpack(pack([7.0, 1.0, 0.5], b"png"))
    assert header == IRHeader(3, (7.0, 1.0, 0.5)) and image == b"png" and header.class_label == 7.0


def test_unpack_rejects_short_records():
    with pytest.raises(DataFormatError, match="key 4: 23 bytes, too short for the 24-byte IRHeader"):
        unpack(bytes(23), "key 4")
    with pytest.raises(DataFormatError, match="announces 3 labels but the record has 32 bytes"):
        unpack(struct.pack("<IfQQ", 3, 0.0, 0, 0) + bytes(8))


# --- encode_record: chunking at aligned magic words ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"", head(0, 0)),
        (b"abcd", head(0, 4) + b"abcd"),
        (b"abcde", head(0, 5) + b"abcde" + bytes(3)),
        (b"abcd" + M + b"xyz", head(1, 4) + b"abcd" + head(3, 3) + b"xyz" + bytes(1)),  # middle
        (M + b"tail", head(1, 0) + head(3, 4) + b"tail"),  # payload starts with the magic
        (b"head" + M, head(1, 4) + b"head" + head(3, 0)),  # payload ends with the magic
        (M, head(1, 0) + head(3, 0)),
        (b"ab12" + M + M + b"z", head(1, 4) + b"ab12" + head(2, 0) + head(3, 1) + b"z" + bytes(3)),  # consecutive
        (M + b"1234" + M + b"5678" + M, head(1, 0) + head(2, 4) + b"1234" + head(2, 4) + b"5678" + head(3, 0)),
        (b"x" + M + b"yyy", head(0, 8) + b"x" + M + b"yyy"),  # unaligned: not split
        (b"xy" + M + b"zz", head(0, 8) + b"xy" + M + b"zz"),
        (b"xyz" + M, head(0, 7) + b"xyz" + M + bytes(1)),
        (b"x" + M + b"yyy" + M, head(1, 8) + b"x" + M + b"yyy" + head(3, 0)),  # unaligned, then aligned
        (M[2:] + M + M[:2], head(0, 8) + M[2:] + M + M[:2]),  # the word straddles an aligned boundary
    ],
)
def test_encode_record(payload: bytes, expected: bytes):
    assert encode_record(payload) == expected == dmlc_write_record(payload)


@given(payloads)
@settings(max_examples=200, deadline=None)
def test_encode_record_matches_dmlc(payload: bytes):
    data = encode_record(payload)
    assert data == dmlc_write_record(payload)
    assert len(data) % 4 == 0


def test_padding_is_zero(tmp_path):
    for n in range(9):
        data = encode_record(b"\xff" * n)
        assert data == head(0, n) + b"\xff" * n + bytes(-n % 4)
    rec = write(tmp_path / "p.rec", {k: b"\xff" * k for k in range(9)})
    assert read_idx(rec.with_suffix(".idx")) == {k: 8 * k + 4 * sum((j + 3) // 4 for j in range(k)) for k in range(9)}


def test_reader_joins_chunks(tmp_path):
    payload = M + b"1234" + M + M + b"xyz" + M
    rec = write(tmp_path / "c.rec", {5: payload, 6: b"after"})
    assert rec.read_bytes().count(M) == 6  # 5 chunk headers for key 5, 1 record header for key 6
    with RecordReader(rec) as reader:
        assert reader.read(5) == payload and reader.read(6) == b"after"


# --- round trips -----------------------------------------------------------------------------------------------------


@given(record_sets)
@settings(max_examples=60, deadline=None)
def test_round_trip(records: dict[int, bytes]):
    with tempfile.TemporaryDirectory() as tmp:
        rec = write(Path(tmp) / "r.rec", records)
        with RecordReader(rec) as reader:
            assert reader.keys == list(records)
            assert {key: reader.read(key) for key in records} == records
            scanned = list(reader.scan())
            assert [offset for offset, _ in scanned] == list(reader.offsets.values())
            assert [payload for _, payload in scanned] == list(records.values())
            assert sum(len(encode_record(p)) for p in records.values()) == rec.stat().st_size


def test_writer_exception_keeps_previous_files(tmp_path):
    write(tmp_path / "a.rec", {0: b"old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RuntimeError, match="boom"), RecordWriter(tmp_path / "a.rec") as writer:
        writer.write(0, b"new" * 1000)
        raise RuntimeError("boom")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files left either
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "new" / "b.rec") as writer:
        writer.write(0, b"x")
        raise RuntimeError
    assert list((tmp_path / "new").iterdir()) == []


def test_reader_is_picklable(tmp_path):
    rec = write(tmp_path / "a.rec", {3: b"three", 9: M + b"nine"})
    with RecordReader(rec) as reader:
        assert reader.read(3) == b"three"  # the file is mapped now
        copy = pickle.loads(pickle.dumps(reader))
    with copy:
        assert copy.read(9) == M + b"nine" and copy.read(3) == b"three" and copy.keys == [3, 9]


# --- corruption ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a small recognition set (3 identities, chunked records) written by our writer."""
    out = tmp_path_factory.mktemp("small_set")
    images = [b"\xff\xd8" + M + b"ab", M + b"jpeg", b"\xff\xd8\xff\xe0", b"", b"1234" + M]
    labels = [0, 0, 1, 2, 2]
    samples = [Sample(label, image, f"s{label}/{i}.jpg") for i, (label, image) in enumerate(zip(labels, images))]
    write_recognition_set(out, samples, image_size=(112, 112))
    return {name: (out / name).read_bytes() for name in ("cele.rec", "cele.idx")}


def read_everything(folder: Path) -> None:
    """Open the set both ways and read every record; only FacekitError may come out."""
    try:
        with RecordReader(folder / "cele.rec") as reader:
            for key in reader.keys:
                reader.read(key)
            list(reader.scan())
    except FacekitError:
        pass
    try:
        with open_recognition_set(folder) as rset:
            for key in rset.reader.keys:
                rset.reader.read(key)
            for key in rset.image_keys:
                rset.read(key)
    except FacekitError:
        pass


def corrupted(files: dict[str, bytes], name: str, data: bytes) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory()
    for other, content in files.items():
        Path(tmp.name, other).write_bytes(data if other == name else content)
    return tmp


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_truncated_rec_raises_only_facekit_errors(small_set, data):
    size = data.draw(st.integers(0, len(small_set["cele.rec"]) - 1))
    with corrupted(small_set, "cele.rec", small_set["cele.rec"][:size]) as tmp:
        read_everything(Path(tmp))


@given(data=st.data(), name=st.sampled_from(["cele.rec", "cele.idx"]))
@settings(max_examples=150, deadline=None)
def test_bit_flips_raise_only_facekit_errors(small_set, data, name):
    content = bytearray(small_set[name])
    for bit in data.draw(st.lists(st.integers(0, 8 * len(content) - 1), min_size=1, max_size=3)):
        content[bit // 8] ^= 1 << bit % 8
    with corrupted(small_set, name, bytes(content)) as tmp:
        read_everything(Path(tmp))


def test_bad_magic_names_file_and_offset(tmp_path):
    rec = write(tmp_path / "a.rec", {1: b"first", 2: b"second"})
    offset = read_idx(tmp_path / "a.idx")[2]
    data = bytearray(rec.read_bytes())
    data[offset : offset + 4] = b"\0\0\0\0"
    rec.write_bytes(data)
    message = rf"{re.escape(str(rec))}: offset {offset} \(key 2\): bad magic 0x00000000 at byte {offset}"
    with RecordReader(rec) as reader:
        assert reader.read(1) == b"first"
        with pytest.raises(DataFormatError, match=message):
            reader.read(2)


def test_idx_offset_past_end(tmp_path):
    rec = write(tmp_path / "a.rec", {1: b"first", 2: b"second"})
    size = rec.stat().st_size
    (tmp_path / "a.idx").write_text(f"1\t0\n2\t{size + 96}\n")
    idx = re.escape(str(tmp_path / "a.idx"))
    message = rf"{idx}: key 2 points at offset {size + 96}, past the end of a.rec \({size} bytes\)"
    with pytest.raises(DataFormatError, match=message):
        RecordReader(rec)


def test_missing_key(tmp_path):
    rec = write(tmp_path / "a.rec", {1: b"first"})
    message = rf"{re.escape(str(tmp_path / 'a.idx'))}: no record with key 7"
    with RecordReader(rec) as reader, pytest.raises(DataFormatError, match=message):
        reader.read(7)
    (tmp_path / "a.idx").unlink()
    with pytest.raises(MissingDataError, match="a.idx: no such .idx file"):
        RecordReader(rec)


def test_truncated_payload(tmp_path):
    rec = write(tmp_path / "a.rec", {1: b"first", 2: bytes(100)})
    rec.write_bytes(rec.read_bytes()[:-10])
    message = r"offset \d+ \(key 2\): payload of 100 bytes runs past the end of the file"
    with RecordReader(rec) as reader, pytest.raises(DataFormatError, match=message):
        reader.read(2)


def test_chunk_flags_out_of_order(tmp_path):
    rec = write(tmp_path / "a.rec", {1: b"abcd" + M + b"efgh"})
    rec.write_bytes(head(3, 4) + rec.read_bytes()[8:])
    with RecordReader(rec) as reader, pytest.raises(DataFormatError, match="chunk flag 3 at byte 0, expected one of"):
        reader.read(1)


def test_set_missing_image_key(tmp_path, small_set):
    (tmp_path / "cele.rec").write_bytes(small_set["cele.rec"])
    lines = small_set["cele.idx"].decode().splitlines(keepends=True)
    (tmp_path / "cele.idx").write_text("".join(line for line in lines if not line.startswith("2\t")))
    with pytest.raises(DataFormatError, match=r"header record promises keys 1..8, 1 missing \(first: \[2\]\)"):
        open_recognition_set(tmp_path)


@pytest.mark.parametrize(
    "header, message",
    [
        ([math.inf, 8.0], r"key 0: identity key range: \[inf, 8.0\] are not integer keys"),
        ([6.0, math.nan], r"key 0: identity key range: \[6.0, nan\] are not integer keys"),
        ([6.5, 8.0], r"key 0: identity key range: \[6.5, 8.0\] are not integer keys"),
        ([6.0, 1e30], r"header record promises keys 1\.\.\d+, \d+ missing \(first: \[6, 7, 8, 9, 10\]\)"),
    ],
    ids=["infinity", "nan", "fraction", "huge"],
)
def test_corrupt_header_labels(tmp_path, header, message):
    records = {k: pack([0.0, 1.0], b"img") for k in range(1, 6)} | {0: pack(header, b"")}
    write(tmp_path / "cele.rec", records)
    with pytest.raises(DataFormatError, match=message):
        open_recognition_set(tmp_path)


def test_corrupt_identity_range(tmp_path):
    records = {1: pack([0.0, 1.0], b"img"), 0: pack([2.0, 3.0], b""), 2: pack([1.0, math.inf], b"")}
    write(tmp_path / "cele.rec", records)
    with pytest.raises(DataFormatError, match=r"key 2: identity image range: \[1.0, inf\] are not integer keys"):
        open_recognition_set(tmp_path)
