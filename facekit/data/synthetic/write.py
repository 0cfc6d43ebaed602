"""make_example_data: the named people of the example set and the files of every layout written from them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.data.images import encode_jpeg
from facekit.data.labels import LABEL_FILE, ImageLabels, write_labels
from facekit.data.recset import Sample, write_recognition_set
from facekit.data.synthetic.identity import Identity, sample_identity, sample_variation
from facekit.data.synthetic.scene import CROP_SIZE, THEMES, Face, aligned_crop, scene_photo
from facekit.data.verification import VerificationSet, write_bin
from facekit.fileio import atomic_write

JPEG_QUALITY = 90

DETECTION_IMAGES = {"train": 80, "val": 20, "test": 10}
RECOGNITION_IDENTITIES, RECOGNITION_PER_IDENTITY = 40, 15
VERIFICATION_IDENTITIES, VERIFICATION_PER_IDENTITY, VERIFICATION_PAIRS = 10, 10, 300
GALLERY_PEOPLE, GALLERY_PHOTOS, PROBE_PHOTOS = 10, 3, 3  # 3 enrolment photos each, as the open-set protocol
STRANGERS, STRANGER_PHOTOS = 8, 2
CALIBRATION_PHOTOS = 6  # scene photos of each verification (held-out) person, to calibrate the open-set threshold

_STREAMS = ("identities", "detection", "recognition", "verification", "gallery", "probe", "calibration")


@dataclass(frozen=True)
class ExampleSummary:
    """What make_example_data wrote. detection_faces["test"] counts faces drawn (test label.txt lists paths only)."""

    detection_images: dict[str, int]
    detection_faces: dict[str, int]
    recognition_identities: int
    recognition_images: int
    verification_identities: int
    verification_pairs: int
    verification_same_pairs: int
    gallery_people: int
    gallery_photos: int
    probe_known_photos: int
    probe_unknown_people: int
    probe_unknown_photos: int
    calibration_people: int
    calibration_photos: int

    def as_dict(self) -> dict:
        return asdict(self)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per part of the data, each depending only on the seed."""
    return {
        name: np.random.default_rng(s) for name, s in zip(_STREAMS, np.random.SeedSequence(seed).spawn(len(_STREAMS)))
    }


def example_identities(seed: int) -> dict[str, Identity]:
    """The named people of make_example_data(seed): recognition `id0000`.., verification `heldout_00`..,
    gallery `person_00`.. and probe-only `stranger_00`.."""
    rng = _streams(seed)["identities"]
    groups = (("id{:04d}", RECOGNITION_IDENTITIES), ("heldout_{:02d}", VERIFICATION_IDENTITIES))
    groups += (("person_{:02d}", GALLERY_PEOPLE), ("stranger_{:02d}", STRANGERS))
    return {pattern.format(i): sample_identity(rng) for pattern, count in groups for i in range(count)}


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(image, JPEG_QUALITY))


def _image_labels(path: str, faces: list[Face]) -> ImageLabels:
    return ImageLabels(
        path=path,
        boxes=np.array([f.box for f in faces], np.float32).reshape(-1, 4),
        landmarks=np.array([f.landmarks for f in faces], np.float32).reshape(-1, 5, 2),
        landmark_mask=np.ones(len(faces), bool),
        scores=np.array([f.score for f in faces], np.float32),
    )


def _write_detection(root: Path, rng: np.random.Generator) -> tuple[dict[str, int], dict[str, int]]:
    """detection_train_data/{train,val,test}; returns (images, faces) per split. test's label.txt lists paths only."""
    images, faces = {}, {}
    for split, count in DETECTION_IMAGES.items():
        labels = []
        faces[split] = 0
        for index in range(count):
            theme = list(THEMES)[rng.integers(len(THEMES))]
            people = [sample_identity(rng) for _ in range(rng.integers(1, 5))]
            image, placed = scene_photo(people, (24, 160), 0.85, np.array(THEMES[theme], np.float32), rng)
            name = f"{theme}/{theme.split('--')[1]}_{split}_{index:04d}.jpg"
            _write_jpeg(root / split / "images" / name, image)
            labels.append(ImageLabels(path=name) if split == "test" else _image_labels(name, placed))
            faces[split] += len(placed)
        write_labels(root / split / LABEL_FILE, labels)
        images[split] = count
    return images, faces


def _write_recognition(root: Path, people: dict[str, Identity], rng: np.random.Generator) -> int:
    """recognition_train_data/cele.*: RECOGNITION_PER_IDENTITY aligned crops per identity; returns the image count."""
    samples = [
        Sample(
            label=label,
            image=encode_jpeg(aligned_crop(ident, sample_variation(rng), rng), JPEG_QUALITY),
            path=f"{name}/{k}.jpg",
        )
        for label, (name, ident) in enumerate(people.items())
        for k in range(RECOGNITION_PER_IDENTITY)
    ]
    write_recognition_set(root, samples, image_size=(CROP_SIZE, CROP_SIZE))
    return len(samples)


def _write_verification(
    path: Path, people: dict[str, Identity], rng: np.random.Generator, seed: int
) -> list[tuple[str, str]]:
    """A .bin of VERIFICATION_PAIRS pairs (the first half same, the rest different, then shuffled) of crops of
    `people`, with the sidecar that names them; returns the names in each pair."""
    crops = {
        name: [
            encode_jpeg(aligned_crop(ident, sample_variation(rng), rng), JPEG_QUALITY)
            for _ in range(VERIFICATION_PER_IDENTITY)
        ]
        for name, ident in people.items()
    }
    names = list(people)
    pairs = []
    for k in range(VERIFICATION_PAIRS):
        a = names[k % len(names)]
        b = a if k < VERIFICATION_PAIRS // 2 else names[(k + rng.integers(1, len(names))) % len(names)]
        i, j = rng.choice(VERIFICATION_PER_IDENTITY, 2, replace=False)
        pairs.append((a, int(i), b, int(j)))
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    images = [image for a, i, b, j in pairs for image in (crops[a][i], crops[b][j])]
    issame = [a == b for a, _, b, _ in pairs]
    sidecar = {"people": sorted(people), "pairs": len(pairs), "same": sum(issame), "folds": None,
               "person_disjoint_folds": False, "seed": seed, "source": "facekit make-example-data",
               "aligned_by": None, "size": CROP_SIZE}  # fmt: skip
    write_bin(path, VerificationSet(images, issame), sidecar)
    return [(a, b) for a, _, b, _ in pairs]


def _write_photos(
    out: Path, folder: str, people: dict[str, Identity], photos: int, in_gallery: bool, rng: np.random.Generator
) -> dict[str, dict]:
    """`folder`/<name>/<k>.jpg scene photos with one face each; returns their truth entries by path under `out`."""
    truth = {}
    for name, ident in people.items():
        for k in range(photos):
            palette = np.array(list(THEMES.values())[rng.integers(len(THEMES))], np.float32)
            image, (face,) = scene_photo([ident], (64, 160), 1.0, palette, rng)
            path = f"{folder}/{name}/{k}.jpg"
            _write_jpeg(out / path, image)
            truth[path] = {
                "identity": name,
                "in_gallery": in_gallery,
                "boxes": [[round(float(v), 2) for v in face.box]],
                "landmarks": [[[round(float(v), 2) for v in p] for p in face.landmarks]],
            }
    return truth


def make_example_data(out_dir: str | os.PathLike, *, seed: int = 0) -> ExampleSummary:
    """Write a small synthetic instance of every layout under `out_dir`, deterministic for `seed`:

    detection_train_data/{train,val,test}, recognition_train_data/{cele.rec,cele.idx,cele.lst,property,
    example_val.bin + example_val.json} (verification pairs of identities not in cele.rec, and their names),
    gallery/<person>/*.jpg, probe/<person or stranger>/*.jpg, calibration/<held-out person>/*.jpg (photos of the
    verification people, to calibrate the threshold on people outside the gallery) and truth.json: {"seed",
    "images": {path under out_dir: {"identity", "in_gallery", "boxes": [[x1, y1, x2, y2]], "landmarks":
    [[[x, y] x 5]]}}, "verification_pairs": [[name, name]]}.
    """
    out = Path(out_dir)
    rngs = _streams(seed)
    people = example_identities(seed)
    group = {p: {n: i for n, i in people.items() if n.startswith(p)} for p in ("id", "heldout", "person", "stranger")}
    det_images, det_faces = _write_detection(out / "detection_train_data", rngs["detection"])
    rec_images = _write_recognition(out / "recognition_train_data", group["id"], rngs["recognition"])
    pairs = _write_verification(
        out / "recognition_train_data" / "example_val.bin", group["heldout"], rngs["verification"], seed
    )
    truth = _write_photos(out, "gallery", group["person"], GALLERY_PHOTOS, True, rngs["gallery"])
    truth |= _write_photos(out, "probe", group["person"], PROBE_PHOTOS, True, rngs["probe"])
    truth |= _write_photos(out, "probe", group["stranger"], STRANGER_PHOTOS, False, rngs["probe"])
    truth |= _write_photos(out, "calibration", group["heldout"], CALIBRATION_PHOTOS, False, rngs["calibration"])
    with atomic_write(out / "truth.json") as f:
        strict_json.dump({"seed": seed, "images": truth, "verification_pairs": pairs}, f, indent=1)
    return ExampleSummary(
        detection_images=det_images,
        detection_faces=det_faces,
        recognition_identities=len(group["id"]),
        recognition_images=rec_images,
        verification_identities=len(group["heldout"]),
        verification_pairs=len(pairs),
        verification_same_pairs=sum(a == b for a, b in pairs),
        gallery_people=len(group["person"]),
        gallery_photos=len(group["person"]) * GALLERY_PHOTOS,
        probe_known_photos=len(group["person"]) * PROBE_PHOTOS,
        probe_unknown_people=len(group["stranger"]),
        probe_unknown_photos=len(group["stranger"]) * STRANGER_PHOTOS,
        calibration_people=len(group["heldout"]),
        calibration_photos=len(group["heldout"]) * CALIBRATION_PHOTOS,
    )
