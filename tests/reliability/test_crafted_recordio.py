"""Crafted .idx files beside the real cele.rec (written by MXNet 1.9.1: one key per record, offsets increasing down
the file in the order the records were written, key 0 after the images): many keys on one record, a re-ordered index,
more keys than the .rec can hold, an endless line. train-recognize and inspect stop at once with one line naming
cele.idx (and the keys or line) and say what was expected; memory stays bounded whatever the .idx holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .helpers import clean_error, copy, measured

RECOGNITION = "layouts/recognition_train_data"


@pytest.fixture
def rec(shared_data, tmp_path) -> Path:
    """A writable copy of the real recognition_train_data (300 images of 30 people, MXNet-written)."""
    for name in ("cele.rec", "cele.idx", "cele.lst", "property"):
        copy(shared_data / RECOGNITION / name, tmp_path / "rec" / name)
    return tmp_path / "rec"


def idx_lines(rec: Path) -> list[tuple[int, int]]:
    """(key, offset) of each line of cele.idx, in file order."""
    return [(int(k), int(v)) for k, v in (line.split() for line in (rec / "cele.idx").read_text().splitlines())]


def fails_at_once(cli, rec: Path, tmp_path: Path, problem: str) -> None:
    """inspect lists PROBLEM and train-recognize ends with `Error: PROBLEM` (exit 1, no model), within seconds."""
    start = time.monotonic()
    result = cli("inspect", rec)
    assert result.exit_code == 1 and f"  - {problem}\n" in result.output, result.output
    clean_error(cli("train-recognize", rec, tmp_path / "model"), 1, problem)
    assert not (tmp_path / "model" / "model.pt").exists()
    assert time.monotonic() - start < 20


def test_many_keys_on_one_record(cli, rec, tmp_path):
    """150,000 keys all pointing at offset 0 (key 1's record; fewer than the 186,687 records cele.rec could hold, so
    only the shared offset is wrong): refused before any record is read, naming the first two keys, instead of
    decoding one photo 150,000 times."""
    (rec / "cele.idx").write_text("".join(f"{key}\t0\n" for key in range(1, 150_001)))
    problem = f"{rec / 'cele.idx'}: keys 1 and 2 both point at offset 0; each record has one key"
    fails_at_once(cli, rec, tmp_path, problem)


def test_reordered_idx(cli, rec, tmp_path):
    """A .idx sorted by key (key 0, MXNet's last record, comes first): still one key per record, so inspect passes
    and notes the order. The same .idx with key 7 pointing at key 3's record (two photos of s1: no label tells them
    apart) is refused naming both keys."""
    lines = sorted(idx_lines(rec))
    (rec / "cele.idx").write_text("".join(f"{k}\t{v}\n" for k, v in lines))
    result = cli("inspect", rec)
    assert result.exit_code == 0 and "problems: none" in result.output, result.output
    offsets = dict(lines)
    note = f"  - {rec / 'cele.idx'}: offsets do not increase down the file (key 1 at 0 follows key 0 at {offsets[0]})"
    assert note in result.output, result.output

    lines[7] = (7, offsets[3])
    (rec / "cele.idx").write_text("".join(f"{k}\t{v}\n" for k, v in lines))
    problem = f"{rec / 'cele.idx'}: keys 3 and 7 both point at offset {offsets[3]}; each record has one key"
    fails_at_once(cli, rec, tmp_path, problem)


@pytest.mark.parametrize("craft", ["2,000,000 keys", "256 MiB line"])
def test_idx_bigger_than_the_rec_allows(rec, tmp_path, craft):
    """An .idx of 2,000,000 keys beside a 1.5 MB cele.rec (room for 186,687 records of 8 bytes or more), or one whose
    second line runs on for 256 MiB: inspect stops at the line where it cannot be right. Its peak memory stays
    within 64 MiB of a run that fails on line 1, where reading the whole .idx would take hundreds."""
    idx = rec / "cele.idx"
    idx.write_text("1\t0 0\n")
    code, output, baseline = measured("inspect", rec)
    assert code == 1 and f"{idx}:1: expected 'key<TAB>offset' with integers" in output, output

    size = (rec / "cele.rec").stat().st_size
    if craft == "2,000,000 keys":
        with open(idx, "w") as f:
            f.writelines(f"{key}\t0\n" for key in range(2_000_000))
        problem = f"{idx}:{size // 8 + 1}: more keys than cele.rec can hold ({size} bytes, records of 8 bytes or more: "
        problem += f"{size // 8} at most)"
    else:
        idx.write_text("1\t0\n")
        os.truncate(idx, 256 << 20)  # zeros, sparse on disk
        problem = f"{idx}:2: line longer than 64 bytes, expected 'key<TAB>offset'"
    code, output, peak = measured("inspect", rec)
    assert code == 1 and f"  - {problem}\n" in output and "Traceback" not in output, output
    assert peak - baseline < 64, (peak, baseline)
