"""--shard K/N on build-db, recognize, embed and align: a split of the inputs by the SHA-1 of their relative paths."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from facekit.data.shard import Shard, select_photos, shard_key, shard_of
from facekit.gallery.sources import enrolment_list, query_list

ORL = "faces/orl"
KNN_TRAIN = "faces/face_recognition_examples/examples/knn_examples/train"
# (relative path, its shard of 2, of 4): pinned, so the split cannot change between versions, machines or runs
PINNED = [
    ("s1/1.pgm", 2, 2),
    ("s1/2.pgm", 1, 3),
    ("s2/1.pgm", 1, 3),
    ("s3/5.pgm", 1, 1),
    ("s10/7.pgm", 2, 4),
    ("s40/10.pgm", 2, 2),
]


@pytest.mark.parametrize(("key", "of_2", "of_4"), PINNED)
def test_pinned_assignment(key, of_2, of_4):
    assert (shard_of(key, 2), shard_of(key, 4)) == (of_2, of_4)
    # the documented rule, by hand: the first 8 bytes of SHA-1(UTF-8 path), big-endian, modulo N, plus 1
    assert int(hashlib.sha1(key.encode()).hexdigest()[:16], 16) % 4 + 1 == of_4
    assert all(Shard(k, 4).holds(key) == (k == of_4) for k in range(1, 5))


def test_same_split_in_another_process():
    """Not Python's salted hash(): a fresh interpreter with another hash seed splits alike."""
    code = "from facekit.data.shard import shard_of; print([shard_of(k, 4) for k in ['s1/1.pgm', 's10/7.pgm']])"
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout  # fmt: skip
    assert out.strip() == "[2, 4]"


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_orl_shards_are_disjoint_and_cover_everything(shared_data, count):
    root = shared_data / ORL
    entries, _ = enrolment_list(root)
    shards = [select_photos(Shard(k, count), root, entries, lambda entry: entry[0]) for k in range(1, count + 1)]
    seen = [path for shard in shards for path, _ in shard]
    assert len(seen) == len(set(seen)) == len(entries) == 400
    assert set(seen) == {path for path, _ in entries}
    for shard in shards:  # each keeps the listing's order, and the split is roughly even
        assert shard == [entry for entry in entries if entry in shard]
        assert 400 / count * 0.7 < len(shard) < 400 / count * 1.3


def test_split_does_not_depend_on_where_data_is_mounted(shared_data, tmp_path):
    """Keys are paths relative to DATA_PATH, lexically: a link to the folder splits alike, and so does a list whose
    paths are relative to its own folder."""
    orl, shard = shared_data / ORL, Shard(1, 2)
    (tmp_path / "mount").symlink_to(orl)
    direct = [shard_key(p, orl) for p in select_photos(shard, orl, query_list(orl))]
    mount = tmp_path / "mount"
    linked = [shard_key(p, mount) for p in select_photos(shard, mount, query_list(mount))]
    assert direct == linked
    assert 150 < len(direct) < 250
    lists = tmp_path / "lists"
    lists.mkdir()
    for person in ("s1", "s2", "s10"):
        (lists / person).symlink_to(orl / person)
    listed = lists / "photos.txt"
    listed.write_text("".join(f"{person}/{j}.pgm\n" for person in ("s10", "s1", "s2") for j in range(1, 11)))
    in_list = [shard_key(p, lists) for p in select_photos(shard, listed, query_list(listed))]
    assert sorted(in_list) == sorted(k for k in direct if k.split("/")[0] in ("s1", "s2", "s10"))
    assert in_list[0].startswith("s10/")  # the list's order, not the folder's


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "-1/2", "1/2/3", ""])
def test_bad_shard_values(text):
    with pytest.raises(ValueError, match="expected"):
        Shard.parse(text)


@pytest.mark.parametrize("command", ["recognize", "build-db", "embed", "align"])
def test_bad_shard_is_a_one_line_usage_error(cli, shared_data, scrfd, tmp_path, command):
    data = shared_data / KNN_TRAIN
    args = {
        "recognize": [data, tmp_path, scrfd, scrfd],
        "build-db": [data, scrfd, scrfd, tmp_path / "g.h5"],
        "embed": [data, "--detect", scrfd, "--recognize", scrfd, "--out", tmp_path / "e.h5"],
        "align": [data, tmp_path / "out", "--detect", scrfd],
    }[command]
    result = cli(command, *args, "--shard", "3/2")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == ["Error: Invalid value for '--shard': '3/2': expected 1 <= K <= N and N >= 1 (shards are "
                      "numbered from 1, e.g. 1/4 .. 4/4)"]  # fmt: skip
    assert "Traceback" not in result.output


@pytest.fixture
def orl_people(shared_data, tmp_path) -> Path:
    """Identity folders s1-s4 of ORL (40 photos), copied: paths relative to it are ORL's own."""
    root = tmp_path / "orl"
    for person in ("s1", "s2", "s3", "s4"):
        shutil.copytree(shared_data / ORL / person, root / person)
    return root


@pytest.mark.slow  # six recognize runs, ~35 s on 2 busy cores; quicker: test_align_shards
def test_recognize_shards_concatenated_are_the_unsharded_output(cli, shared_data, scrfd, random_recognizer,
                                                                 orl_people, tmp_path):  # fmt: skip
    db = tmp_path / "g.h5"
    assert cli("build-db", shared_data / KNN_TRAIN, scrfd, random_recognizer, db).exit_code == 0
    run = lambda out, *more: cli("recognize", orl_people, db, scrfd, random_recognizer, "--out", out, *more)  # noqa: E731
    assert run(tmp_path / "all.jsonl").exit_code == 0
    whole = (tmp_path / "all.jsonl").read_text().splitlines()
    parts = []
    for k in (1, 2):
        assert run(tmp_path / f"{k}.jsonl", "--shard", f"{k}/2", "--threads", "1").exit_code == 0
        parts.append((tmp_path / f"{k}.jsonl").read_text().splitlines())
    assert len(whole) == 40 and all(parts)
    assert sorted(parts[0] + parts[1]) == sorted(whole)  # the same records, each once
    # the documented order: shard 1's records, then shard 2's, each in the unsharded order
    image = lambda line: Path(json.loads(line)["image"]).relative_to(orl_people).as_posix()  # noqa: E731
    assert parts[0] + parts[1] == [r for k in (1, 2) for r in whole if shard_of(image(r), 2) == k]
    # CSV: each shard has the header; shards 2..N are concatenated without it
    for name, more in [("all.csv", ()), ("1.csv", ("--shard", "1/2")), ("2.csv", ("--shard", "2/2"))]:
        assert run(tmp_path / name, "--format", "csv", *more).exit_code == 0
    rows = [list(csv.reader((tmp_path / name).read_text().splitlines())) for name in ("all.csv", "1.csv", "2.csv")]
    assert rows[1][0] == rows[2][0] == rows[0][0]
    assert sorted(rows[1][1:] + rows[2][1:]) == sorted(rows[0][1:])


@pytest.mark.slow  # four build-db runs, ~9 s; quicker: test_align_shards (the same split, through align)
def test_build_db_shards_hold_the_unsharded_gallery(cli, scrfd, random_recognizer, orl_people, tmp_path):
    """Issue 15's done-when 4 without `db merge`: the faces of the shard galleries are the unsharded gallery's, with
    the same embeddings."""

    def faces(path: Path) -> dict[tuple[str, str], np.ndarray]:
        with h5py.File(path, "r") as f:
            names = [n.decode() for n in f["identities"][()]]
            return {
                (s.decode(), names[i]): e
                for s, i, e in zip(f["sources"][()], f["identity_index"][()], f["embeddings"][()], strict=True)
            }

    assert cli("build-db", orl_people, scrfd, random_recognizer, tmp_path / "all.h5").exit_code == 0
    shards = []
    for k in (1, 2, 3):
        result = cli("build-db", orl_people, scrfd, random_recognizer, tmp_path / f"{k}.h5", "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
        shards.append(faces(tmp_path / f"{k}.h5"))
    whole = faces(tmp_path / "all.h5")
    assert len(whole) == 40 and sum(map(len, shards)) == 40
    joined = {key: value for shard in shards for key, value in shard.items()}
    assert joined.keys() == whole.keys()
    for key, embedding in whole.items():
        np.testing.assert_allclose(joined[key], embedding, atol=1e-5)


@pytest.mark.slow  # three embed runs, ~7 s; quicker: test_align_shards (the same split, through align)
def test_embed_shards(cli, scrfd, random_recognizer, orl_people, tmp_path):
    args = [orl_people, "--detect", scrfd, "--recognize", random_recognizer]
    assert cli("embed", *args, "--out", tmp_path / "all.npy").exit_code == 0
    rows, vectors = [], []
    for k in (1, 2):
        assert cli("embed", *args, "--out", tmp_path / f"{k}.npy", "--shard", f"{k}/2").exit_code == 0
        lines = [json.loads(line) for line in (tmp_path / f"{k}.jsonl").read_text().splitlines()]
        assert {shard_of(Path(r["image"]).relative_to(orl_people).as_posix(), 2) for r in lines} == {k}
        rows += [r["image"] for r in lines]
        vectors.append(np.load(tmp_path / f"{k}.npy"))
    whole = [json.loads(line)["image"] for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    order = [whole.index(image) for image in rows]
    assert sorted(order) == list(range(len(whole)))
    np.testing.assert_allclose(np.concatenate(vectors), np.load(tmp_path / "all.npy")[order], atol=1e-5)


def test_align_shards(cli, scrfd, orl_people, tmp_path):
    """Each shard aligns its photos into its own OUT; the crops of both are the unsharded run's, and an OUT keeps
    to its shard."""
    assert cli("align", orl_people, tmp_path / "all", "--detect", scrfd).exit_code == 0
    crops = lambda out: {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}  # noqa: E731
    parts = []
    for k in (1, 2):
        out = tmp_path / f"part{k}"
        assert cli("align", orl_people, out, "--detect", scrfd, "--shard", f"{k}/2").exit_code == 0
        assert json.loads((out / "alignment.json").read_text())["shard"] == f"{k}/2"
        parts.append(crops(out))
    assert not parts[0] & parts[1] and parts[0] | parts[1] == crops(tmp_path / "all")
    for name in parts[0]:
        assert (tmp_path / "part1" / name).read_bytes() == (tmp_path / "all" / name).read_bytes()
    result = cli("align", orl_people, tmp_path / "part1", "--detect", scrfd, "--shard", "2/2")
    assert result.exit_code == 1 and "shard 1/2 -> 2/2" in result.output
    result = cli("align", orl_people, tmp_path / "part1", "--detect", scrfd)  # unsharded into a shard's OUT
    assert result.exit_code == 1 and "shard 1/2 -> None" in result.output


def test_empty_shard_is_a_one_line_error(cli, shared_data, scrfd, random_recognizer, tmp_path):
    photo = shared_data / ORL / "s1/1.pgm"  # key "1.pgm", relative to its folder
    other = 1 if shard_of("1.pgm", 2) == 2 else 2
    db = tmp_path / "g.h5"
    assert cli("build-db", shared_data / KNN_TRAIN, scrfd, random_recognizer, db).exit_code == 0
    result = cli("recognize", photo, db, scrfd, random_recognizer, "--shard", f"{other}/2")
    assert result.exit_code == 1
    message = f"Error: {photo}: shard {other}/2 holds none of its 1 photos; use fewer shards"
    assert result.output.strip().splitlines()[-1] == message
