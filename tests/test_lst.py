"""The .lst (face2rec2 and im2rec styles) and property files."""

from __future__ import annotations

import pytest

from facekit.data.lst import LstEntry, Property, read_lst, read_property, write_lst, write_property
from facekit.errors import DataFormatError, MissingDataError


def test_real_face2rec2_lst(shared_data):
    style, entries = read_lst(shared_data / "layouts/recognition_train_data/cele.lst")
    assert style == "face2rec2"
    assert len(entries) == 300
    assert entries[0] == LstEntry(path="s1/1.jpg", label=0.0, aligned=True)
    assert entries[-1].label == 29


def test_real_property(shared_data):
    assert read_property(shared_data / "layouts/recognition_train_data/property") == Property(30, 112, 112)
    assert read_property(shared_data / "fixtures/mxnet_recordio/plain/property") == Property(5, 112, 112)


def test_im2rec_style(tmp_path):
    path = tmp_path / "a.lst"
    path.write_text("0\t3.000000\tid003/0.jpg\n1\t4.000000\t2.0\tid004/1.jpg\n")
    style, entries = read_lst(path)
    assert style == "im2rec"
    assert entries[0] == LstEntry(path="id003/0.jpg", label=3.0, index=0)
    assert entries[1].label == 4.0 and entries[1].index == 1


def test_face2rec2_with_box_and_landmarks(tmp_path):
    path = tmp_path / "a.lst"
    # insightface stores the five x values, then the five y values
    path.write_text("0\tp/a.jpg\t7\t1\t2\t30\t40\t10 20 15 11 19 5 5 9 14 14\n")
    _, (entry,) = read_lst(path)
    assert entry.aligned is False and entry.box == (1, 2, 30, 40)
    assert entry.landmarks == ((10, 5), (20, 5), (15, 9), (11, 14), (19, 14))
    out = tmp_path / "b.lst"
    write_lst(out, [entry])
    assert read_lst(out)[1] == [entry]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("only\ttwo\n", "a.lst:1: expected at least 3 tab-separated columns"),
        ("1\tp.jpg\tx\n", "a.lst:1: face2rec2 line must be"),
        ("1\tp.jpg\t3\t1 2 3\n", "a.lst:1: after the label expected 4 box numbers"),
        ("1\tp.jpg\t3\n0\t3\tq.jpg\n", "a.lst:2: im2rec line in a face2rec2 .lst"),
        ("x\t3\tq.jpg\n", "a.lst:1: im2rec line must be"),
    ],
)
def test_malformed_lst(tmp_path, text, message):
    path = tmp_path / "a.lst"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_lst(path)


@pytest.mark.parametrize("text", ["", "30,112\n", "a,b,c\n", "0,112,112\n", "30;112;112\n"])
def test_malformed_property(tmp_path, text):
    path = tmp_path / "property"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=r"property:1: expected 'num_classes,height,width'"):
        read_property(path)


def test_missing_property(tmp_path):
    with pytest.raises(MissingDataError, match="no such property file"):
        read_property(tmp_path / "property")


def test_property_round_trip(tmp_path):
    write_property(tmp_path / "property", Property(85742, 112, 112))
    assert (tmp_path / "property").read_text() == "85742,112,112\n"
