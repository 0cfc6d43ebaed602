"""Outputs never replace inputs: an output path that names one of the command's inputs (symbolic links resolved)
is refused before any work with one line naming the output and what it is, exit 2, every input byte for byte as
it was. Annotated copies never replace a photo, and two photos never share one copy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .helpers import BIDEN, OBAMA, OBAMA2, clean_error, copy, copy_tree

RETINAFACE = "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"
REFUSED = "(an input); choose another output path"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (through links) and its bytes."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_that_is_an_input_is_refused(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """The swapped arguments of issue 11 (build-db's DB_OUTPUT_PATH on the recognizer's model.pt or on a photo to
    enrol, recognize --out on its gallery, detect --out on its detector's model.pt), the same through a symbolic
    link, a photo of an enrolment list, another file of a model directory, training into the pretrained model's
    folder and align into its photo folder: exit 2, one line naming the output and the input it is; nothing changed,
    nothing written. A new file beside a model (recognize --out into its folder) is no input and is written."""
    rec = copy_tree(random_recognizer, tmp_path / "rec")
    det = tmp_path / "det"
    assert cli("import-model", "pytorch-retinaface", shared_data / RETINAFACE, det).exit_code == 0
    people = tmp_path / "people"
    photo = copy(shared_data / OBAMA, people / "obama/obama.jpg")
    biden = copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    listed = people / "people.csv"
    listed.write_text("path,identity\nobama/obama.jpg,obama\nbiden/biden2.jpg,biden\n")
    db = copy(knn_gallery, tmp_path / "g.h5")
    link = tmp_path / "link.pt"
    link.symlink_to(rec / "model.pt")
    before = snapshot(tmp_path)
    cases = [
        (["build-db", people, scrfd, rec, rec / "model.pt"], f"{rec / 'model.pt'}: is the recognizer model file"),
        (["build-db", people, scrfd, rec, photo], f"{photo}: is a photo in the enrolment folder {people}"),
        (["recognize", photo, db, scrfd, rec, "--out", db], f"{db}: is the gallery"),
        (["detect", photo, "--model", det, "--out", det / "model.pt"],
         f"{det / 'model.pt'}: is the detector model file"),
        (["build-db", people, scrfd, rec, link], f"{link}: is the recognizer model file {rec / 'model.pt'}"),
        (["build-db", listed, scrfd, rec, biden], f"{biden}: is a photo listed in {listed}"),
        (["recognize", photo, db, scrfd, rec, "--out", rec / "config.yaml"],
         f"{rec / 'config.yaml'}: is a file of the recognizer model directory {rec}"),
        (["build-db", people, scrfd, rec, db, "--report", db], f"{db}: is given twice as an output;"),
        (["train-recognize", people, rec, "--pretrained", link], f"{rec}: is the pretrained model directory"),
        (["align", people, people / "aligned", "--detect", scrfd], f"{people / 'aligned'}: lies inside the photo "
         f"folder {people}"),
    ]  # fmt: skip
    for args, message in cases:
        line = clean_error(cli(*args), 2, message)
        assert line.endswith("; choose another output path"), line
    assert snapshot(tmp_path) == before
    result = cli("recognize", photo, db, scrfd, rec, "--out", rec / "faces.jsonl")  # a new file beside a model is fine
    assert result.exit_code == 0 and (rec / "faces.jsonl").is_file(), result.output


def test_annotated_copies_never_replace_a_photo(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """--save-annotated into the photo folder (or a link to it), into a folder inside it, or, with one photo named,
    into that photo's own folder: detect and recognize refuse with one line, exit 2; every photo byte for byte as it
    was, nothing written."""
    photos = tmp_path / "photos"
    photo = copy(shared_data / OBAMA, photos / "obama.jpg")
    copy(shared_data / BIDEN, photos / "biden.jpg")
    link = tmp_path / "link"
    link.symlink_to(photos)
    before = snapshot(tmp_path)
    commands = {"image": lambda data: ["detect", data, "--model", scrfd],
                "photo": lambda data: ["recognize", data, knn_gallery, scrfd, random_recognizer]}  # fmt: skip
    for role, command in commands.items():
        cases = [
            (photos, photos, f"{photos}: is the {role} folder {REFUSED}"),
            (photos, link, f"{link}: is the {role} folder {photos} {REFUSED}"),
            (photos, photos / "annotated", f"{photos / 'annotated'}: lies inside the {role} folder {photos}"),
            (photo, photos, f"{photos}: the annotated copy of {photo} would replace it (an input)"),
        ]
        for data, folder, message in cases:
            clean_error(cli(*command(data), "--save-annotated", folder), 2, message)
    assert snapshot(tmp_path) == before


def test_photos_of_one_name_keep_their_own_annotated_copy(cli, shared_data, scrfd, knn_gallery, random_recognizer,
                                                          tmp_path):  # fmt: skip
    """x.jpg, x.png and x.png.jpg in one folder, three different photos: detect and recognize give each its own
    annotated copy, the size of its own photo (a .jpg photo's keeps its name, any other's gets .jpg added, and a
    number when that name is taken: x.jpg, x.png.jpg, x.png.2.jpg); a second run writes the same names."""
    photos = tmp_path / "photos"
    copy(shared_data / OBAMA, photos / "x.jpg")
    assert cv2.imwrite(str(photos / "x.png"), cv2.imread(str(shared_data / BIDEN)))
    copy(shared_data / OBAMA2, photos / "x.png.jpg")
    sizes = {name: cv2.imread(str(shared_data / source)).shape for name, source in
             (("x.jpg", OBAMA), ("x.png.2.jpg", BIDEN), ("x.png.jpg", OBAMA2))}  # fmt: skip
    assert len(set(sizes.values())) == 3
    for command in (["detect", photos, "--model", scrfd], ["recognize", photos, knn_gallery, scrfd,
                    random_recognizer]):  # fmt: skip
        annotated = tmp_path / f"{command[0]}_annotated"
        for _ in range(2):
            result = cli(*command, "--save-annotated", annotated)
            assert result.exit_code == 0, result.output
            written = {p.name: cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR).shape for p in
                       annotated.iterdir()}  # fmt: skip
            assert written == sizes


def test_every_command_that_writes_checks_its_outputs(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """train-detect, eval-detect, evaluate-gallery, pack-rec, make-bin, split-people and import-model refuse an
    output folder inside (or equal to) a data folder they read, an output linked to a model file, or a checkpoint
    that the import would overwrite: exit 2, one line, before any work; nothing changed, nothing written."""
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/obama.jpg")
    probes = tmp_path / "probes"
    copy(shared_data / OBAMA2, probes / "obama/obama2.jpg")
    det = tmp_path / "det"
    assert cli("import-model", "pytorch-retinaface", shared_data / RETINAFACE, det).exit_code == 0
    checkpoint = copy(shared_data / RETINAFACE, tmp_path / "ckpt/model.pt")
    pairs = tmp_path / "pairs.bin"
    pairs.symlink_to(det / "model.pt")
    before = snapshot(tmp_path)
    cases = [
        (["train-detect", people, people / "model"], f"{people / 'model'}: lies inside the training data folder"),
        (["eval-detect", people, "--model", scrfd, "--out", people], f"{people}: is the evaluation split (an input)"),
        (["evaluate-gallery", people, probes, scrfd, random_recognizer, "--out", probes / "metrics"],
         f"{probes / 'metrics'}: lies inside the probe folder {probes}"),
        (["pack-rec", people, people / "rec"], f"{people / 'rec'}: lies inside the image folder {people}"),
        (["make-bin", people, pairs, "--detect", det], f"{pairs}: is the detector model file {det / 'model.pt'}"),
        (["split-people", people, people / "split"], f"{people / 'split'}: lies inside the people folder {people}"),
        (["import-model", "pytorch-retinaface", checkpoint, checkpoint.parent], f"{checkpoint}: is the checkpoint"),
    ]  # fmt: skip
    for args, message in cases:
        clean_error(cli(*args), 2, message, REFUSED)
    assert snapshot(tmp_path) == before
