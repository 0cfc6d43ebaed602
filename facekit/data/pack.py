"""Identity folders -> recognition_train_data/ (`facekit pack-rec`), in insightface's face2rec2 convention."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facekit import ARCFACE_SIZE, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS
from facekit.data.folders import scan_identity_folders
from facekit.data.images import decode_image, encode_jpeg, read_file
from facekit.data.lst import Property
from facekit.data.recset import Sample, write_recognition_set
from facekit.errors import DataFormatError, FacekitError

_KEEP_AS_IS = (b"\xff\xd8\xff", b"\x89PNG")  # JPEG and PNG bytes go in unchanged: no generation loss


@dataclass
class PackResult:
    prop: Property
    images: int
    identities: list[str]
    skipped: list[str] = field(default_factory=list)  # one message per unreadable image
    empty: list[str] = field(default_factory=list)  # person folders without images


def pack_identity_folders(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int = ARCFACE_SIZE,
    resize: bool = False,
    quality: int = DEFAULT_JPEG_QUALITY,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PackResult:
    """Pack `src/<person>/<image>` into `out_dir/{cele.rec, cele.idx, cele.lst, property}`.

    Every image is decoded first: unreadable ones (and those over `max_pixels`) are skipped and reported; images
    that are not `size` x `size` refuse the whole job unless `resize` (then they are resized and re-encoded as JPEG).
    """
    import cv2

    folders = scan_identity_folders(src)
    skipped: list[str] = []
    decoded: list[tuple[Path, int, tuple[int, int]]] = []  # (path, class, (height, width)) of readable images
    for path, label in folders.items:
        try:
            image = decode_image(read_file(path, max_pixels), str(path), max_pixels)
        except FacekitError as exc:
            skipped.append(str(exc))
            continue
        decoded.append((path, label, image.shape[:2]))
    wrong = [(p, s) for p, _, s in decoded if s != (size, size)]
    if wrong and not resize:
        examples = ", ".join(f"{p.relative_to(folders.root)} ({s[1]}x{s[0]})" for p, s in wrong[:3])
        raise DataFormatError(
            f"{folders.root}: {len(wrong)} of {len(decoded)} images are not {size}x{size} (e.g. {examples}); "
            "align them first or pass --resize"
        )
    used = sorted({label for _, label, _ in decoded})
    relabel = {old: new for new, old in enumerate(used)}

    def samples() -> Iterator[Sample]:
        for path, label, shape in decoded:
            data = read_file(path, max_pixels)
            if shape != (size, size) or not data.startswith(_KEEP_AS_IS):
                image = decode_image(data, str(path), max_pixels)
                if shape != (size, size):
                    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                data = encode_jpeg(image, quality)
            yield Sample(relabel[label], data, path.relative_to(folders.root).as_posix())

    prop = write_recognition_set(out_dir, samples(), image_size=(size, size))
    unreadable = [name for i, name in enumerate(folders.identities) if i not in relabel]
    return PackResult(prop, len(decoded), [folders.identities[i] for i in used], skipped, folders.empty + unreadable)
