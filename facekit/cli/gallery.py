"""Gallery commands: build-db, recognize, db info|list|remove, evaluate-gallery. Library imports happen inside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from facekit import strict_json
from facekit.cli.calibrate import BEST_ACCURACY, FAR, rule
from facekit.cli.options import (
    ANNOTATED_HELP,
    FLIP,
    INDEX_PARAM,
    SHARD,
    THREADS,
    cli_pipeline,
    listing,
    parse_index_params,
    pick_option,
    pipeline_options,
)

if TYPE_CHECKING:
    from facekit.data.shard import Shard

MODEL = click.Path(exists=True, path_type=Path)
MATCH = click.option(
    "--match",
    type=click.Choice(["image", "template"]),
    default="image",
    show_default=True,
    help="Compare with every gallery photo (a person scores their best) or with each person's mean template.",
)


WAIT = click.option(
    "--wait",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="While another process writes the gallery (it holds GALLERY.lock while it reads and rewrites the file), "
    "wait this long for it (0: fail at once).",
)


def _version(path: Path) -> tuple[int, ...]:
    """Which file `path` is now: every gallery write renames a new file over it, so this changes with each."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _note(line: str) -> None:
    click.echo(f"note: {line}", err=True)


def _listing(title: str, items: list[str]) -> None:
    """The first 20 of `items` under `title`; build-db's --report has them all."""
    listing(title, items, 20, " (see --report)")


@click.command("build-db")
@click.argument("data_path", type=click.Path(exists=True, path_type=Path))
@click.argument("detect_model_path", type=MODEL)
@click.argument("recognize_model_path", type=MODEL)
@click.argument("db_output_path", type=click.Path(path_type=Path))
@click.option("--append", is_flag=True, help="Add to the gallery at DB_OUTPUT_PATH (made by the same recognizer).")
@pick_option()
@FLIP
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the full report as JSON here.")
@WAIT
@SHARD
@pipeline_options()
@THREADS
def build_db_cmd(data_path: Path, detect_model_path: Path, recognize_model_path: Path, db_output_path: Path,
                 append: bool, pick: str, flip: bool, report: Path | None, wait: float, shard: Shard | None,
                 backend: str, device: str, max_size: int, det_threshold: float, max_pixels: int, batch: int,
                 threads: int | None) -> None:  # fmt: skip
    """Build the gallery of known people at DB_OUTPUT_PATH (an .h5 file; a folder gets gallery.h5 inside).

    DATA_PATH: one folder per person (the folder name is the identity), a CSV of `path,identity` rows, or an
    insightface .lst. Each photo gives one face (--pick), aligned and embedded. Photos that cannot be read or show
    no face are skipped and listed; the gallery is written (atomically) when at least one face was found. Runs
    writing one gallery take turns (a lock file beside it): --append adds its faces to the gallery as it is then.
    Exit codes: 0 gallery written, 1 nothing written (bad input, no face at all), 2 usage error.
    """
    from facekit.cli.outputs import Inputs
    from facekit.data.shard import require_some, select_photos
    from facekit.errors import FacekitError
    from facekit.fileio import atomic_write, write_lock
    from facekit.gallery.build import add_new, build_gallery
    from facekit.gallery.sources import enrolment_list
    from facekit.gallery.store import Gallery, gallery_file

    out = gallery_file(db_output_path)
    entries, empty = enrolment_list(data_path)
    reads = Inputs().model(detect_model_path, "detector").model(recognize_model_path, "recognizer")
    reads.photo_source(data_path, [photo for photo, _ in entries], "enrolment").check(files=[out, report])
    total, entries = len(entries), select_photos(shard, data_path, entries, lambda entry: entry[0])
    require_some(shard, len(entries), total, str(data_path))
    pipeline = cli_pipeline(detect_model_path, recognize_model_path, backend, device, max_size, det_threshold, flip,
                            max_pixels, threads)  # fmt: skip
    base, version = None, None
    if append and out.exists():
        version = _version(out)
        base = Gallery.load(out)
        base.check_recognizer(pipeline.recognizer, out)
        pipeline.flip = base.flip
    new, result = build_gallery(entries, pipeline, base=base, pick=pick, batch_images=batch)
    result.empty_folders = empty
    _listing("warning: unreadable photos, skipped", result.unreadable)
    _listing("warning: photos without a face, skipped", result.no_face)
    _listing("note: photos with several faces (kept the " + pick + " one)", result.several_faces)
    _listing("warning: person folders without photos", result.empty_folders)
    gallery = base
    if len(new):
        with write_lock(out, wait=wait, what="gallery", waiting=_note):
            current = None
            if append and out.exists():  # the gallery as it is now: another run may have rewritten it meanwhile
                current = base if _version(out) == version else Gallery.load(out)
                current.check_recognizer(pipeline.recognizer, out)
            gallery = add_new(current, new, result, out)
            if gallery is not current:
                gallery.save(out)
    if result.already_in:
        click.echo(f"note: {len(result.already_in)} photos were in the gallery already", err=True)
    if report is not None:
        with atomic_write(report) as f:
            strict_json.dump(result.as_dict(), f, indent=2)
    if gallery is None:
        raise FacekitError(f"{data_path}: no face found in {result.photos} photos; no gallery written")
    people = len(result.added)
    added = sorted(result.added.items())
    if added:
        shown = ", ".join(f"{name} {n}" for name, n in added[:20]) + (f", ... ({people} people)" if people > 20 else "")
        click.echo(f"faces added per person: {shown}", err=True)
    click.echo(
        f"{out}: {len(gallery)} faces of {len(gallery.identities)} people (added {sum(result.added.values())} faces "
        f"of {people} people from {result.photos} photos; skipped {result.skipped})",
        err=True,
    )


class PathOrUrl(click.Path):
    """An existing path, or a stream URL (rtsp://, http://, ...) kept as the text given."""

    def convert(self, value, param, ctx):
        from facekit.gallery.video import is_stream

        return value if isinstance(value, str) and is_stream(value) else super().convert(value, param, ctx)


@click.command("recognize")
@click.argument("data_path", type=PathOrUrl(exists=True, path_type=Path))
@click.argument("db_path", type=click.Path(exists=True, path_type=Path))
@click.argument("detect_model_path", type=MODEL)
@click.argument("recognize_model_path", type=MODEL)
@click.option(
    "--threshold",
    type=click.FloatRange(-1, 1),
    help="Cosine similarity from which a face is its best match (default: the recognizer's calibrated threshold, "
    "else 0.3); below it the face is unknown.",
)
@MATCH
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Candidates listed per face.")
@click.option(
    "--index",
    type=click.Choice(["auto", "exact", "flat", "ivf", "hnsw", "lsh"]),
    default="auto",
    show_default=True,
    help="exact: blocked matrix products; flat / ivf / hnsw: a faiss index cached beside the gallery (ivf, hnsw: "
    "approximate); lsh: 256-bit sim-hash codes built in memory, the nearest 256 codes re-ranked exactly "
    "(approximate, for millions of faces); auto: exact below 100,000 faces, else lsh.",
)
@INDEX_PARAM
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write results here instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option(
    "--save-annotated",
    type=click.Path(path_type=Path),
    help="Draw boxes and names on copies of the photos here: " + ANNOTATED_HELP + " For a video: one annotated "
    "video file (.mp4, .avi or .mkv) with each face's track number and name.",
)
@click.option("--flip/--no-flip", default=None, help="Mirror averaging (default: as the gallery was built).")
@click.option(
    "--every", default=1, show_default=True, type=click.IntRange(min=1), metavar="N", help="Video: every N-th frame."
)
@click.option(
    "--retries",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stream URL: reopen a stream that drops this many times in a row (waiting 0.5, 1, 2, ... s), then end.",
)
@SHARD
@pipeline_options()
@THREADS
def recognize_cmd(data_path: Path, db_path: Path, detect_model_path: Path, recognize_model_path: Path,
                  threshold: float | None, match: str, top_k: int, index: str, index_params: tuple[str, ...],
                  out: Path | None, fmt: str,
                  save_annotated: Path | None, flip: bool | None, every: int, retries: int, shard: Shard | None,
                  backend: str, device: str, max_size: int, det_threshold: float, max_pixels: int, batch: int,
                  threads: int | None) -> None:  # fmt: skip
    """Recognize the faces in DATA_PATH (an image, a folder searched recursively, a .txt / .csv / .lst list, a video
    file .mp4 / .avi / .mkv / .mov / .webm or a stream URL such as rtsp://...) against the gallery DB_PATH.

    One JSON object per photo: {"image", "width", "height", "faces": [{"box": [x1, y1, x2, y2], "score",
    "landmarks", "identity" (null = unknown), "similarity", "candidates": [{"identity", "similarity"}]}]}.
    Unreadable photos are skipped and listed. With --shard K/N, the photos of shard K only, in the same order:
    the outputs of shards 1..N, concatenated in that order (CSV: one header), hold every photo's record once.
    Exit codes: 0 done, 1 bad gallery / model / no readable photo.

    A video gives one {"type": "frame", "frame", "time", "faces": [{"track", "box", ..., "identity", "similarity",
    "candidates"}]} per processed frame, and one {"type": "track", "track", "first_time", "last_time", "identity",
    "votes", "best_similarity", ...} per track once it has ended (or the video has).
    """
    from facekit.cli.outputs import Inputs
    from facekit.cli.recognize_setup import matching, recognize_video_source
    from facekit.data.shard import require_some, select_photos
    from facekit.errors import FacekitError
    from facekit.gallery.recognize import NoReadablePhotos, recognize_images
    from facekit.gallery.sources import query_list
    from facekit.gallery.store import gallery_file
    from facekit.gallery.video import is_video

    params = parse_index_params(index, index_params)
    if is_video(data_path):
        if shard is not None:
            raise click.UsageError("--shard splits photos between machines; a video or stream is one input")
        return recognize_video_source(
            str(data_path), db_path, detect_model_path, recognize_model_path, threshold=threshold, match=match,
            top_k=top_k, index=index, params=params, out=out, fmt=fmt, save_annotated=save_annotated, flip=flip,
            every=every, retries=retries, backend=backend, device=device, max_size=max_size,
            det_threshold=det_threshold, max_pixels=max_pixels, batch=batch, threads=threads,
        )  # fmt: skip
    for name in ("every", "retries"):
        if click.get_current_context().get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
            raise click.UsageError(f"--{name} applies to a video or stream DATA_PATH")
    if save_annotated is not None and save_annotated.is_file():
        raise click.BadParameter(f"{save_annotated}: is a file; photos' annotated copies go to a folder",
                                 param_hint="'--save-annotated'")  # fmt: skip
    paths = query_list(data_path)
    if not paths:
        raise FacekitError(f"{data_path}: no photos to recognize (expected an image, a folder of images or a list)")
    db_file = gallery_file(db_path)
    reads = Inputs().file(db_file, "the gallery").model(detect_model_path, "detector")
    reads.model(recognize_model_path, "recognizer").photo_source(data_path, paths, "photo")
    reads.check(files=[out], folders=[save_annotated])
    total, paths = len(paths), select_photos(shard, data_path, paths)
    require_some(shard, len(paths), total, str(data_path))
    pipeline, matcher, threshold = matching(db_file, detect_model_path, recognize_model_path, backend, device,
                                            max_size, det_threshold, max_pixels, threads, flip, threshold, match,
                                            index, params)  # fmt: skip
    try:
        report = recognize_images(
            paths, pipeline, matcher, threshold=threshold, top_k=top_k, out=out, fmt=fmt,
            annotated_dir=save_annotated, batch_images=batch,
        )  # fmt: skip
    except NoReadablePhotos as exc:
        if len(exc.unreadable) == 1:  # the only photo: its own error
            raise FacekitError(exc.unreadable[0]) from None
        listing("warning: unreadable photos, skipped", exc.unreadable)
        raise FacekitError(f"{data_path}: {exc}") from None
    listing("warning: unreadable photos, skipped", report.unreadable)  # recognize has no --report: all of them
    found = ", ".join(f"{name} {n}" for name, n in report.found.most_common())
    click.echo(
        f"{report.images} photos, {report.faces} faces: {sum(report.found.values())} recognized, {report.unknown} "
        f"unknown, {report.no_face} photos without a face"
        + (f" [{found}]" if found else "")
        + (f" -> {out}" if out else ""),
        err=True,
    )


@click.group("db")
def db_group() -> None:
    """Look into and edit a gallery (.h5 made by build-db)."""


@db_group.command("info")
@click.argument("db_path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def db_info_cmd(db_path: Path, as_json: bool) -> None:
    """What the gallery holds and which models made it; temporaries that killed writes left beside it."""
    from facekit.gallery.store import Gallery, gallery_file, stale_temporaries

    path = gallery_file(db_path)
    g = Gallery.load(path)
    stale = [p.name for p in stale_temporaries(path)]
    info = {
        "path": str(path),
        "faces": len(g),
        "identities": len(g.identities),
        "embedding_dim": g.dim,
        "recognizer": g.recognizer.name,
        "recognizer_fingerprint": g.recognizer.fingerprint,
        "detector": g.detector.name,
        "detector_fingerprint": g.detector.fingerprint,
        "crop_size": g.crop_size,
        "alignment_template": [[round(float(v), 4) for v in point] for point in g.template],  # crop pixels
        "flip": g.flip,
        "created": g.created,
        "bytes": path.stat().st_size,
        "stale_temporaries": stale,
    }
    if as_json:
        click.echo(strict_json.dumps(info, indent=2))
    else:
        info["stale_temporaries"] = ", ".join(map(one_line, stale)) or "none"
        click.echo("\n".join(f"{k:24} {v}" for k, v in info.items()))
    if stale:
        _note(f"stale temporaries of killed writes beside {path.name}: {len(stale)}; the next write removes them")


@db_group.command("list")
@click.argument("db_path", type=click.Path(exists=True, path_type=Path))
@click.option("--sources", is_flag=True, help="List every photo of each identity.")
def db_list_cmd(db_path: Path, sources: bool) -> None:
    """Identities and their number of faces (tab-separated), in gallery order; a backslash or control character
    in a name or path is escaped (\\\\, \\n, \\t, \\r, \\xNN), so each entry stays one line."""
    from facekit.gallery.store import Gallery, gallery_file

    g = Gallery.load(gallery_file(db_path))
    for i, (name, count) in enumerate(g.counts().items()):
        click.echo(f"{one_line(name)}\t{count}")
        if sources:
            for source in (s for s, j in zip(g.sources, g.identity_index, strict=True) if j == i):
                click.echo(f"\t{one_line(source)}")


def one_line(text: str) -> str:
    """`text` with backslash and control characters escaped (\\\\, \\n, \\t, \\r, \\xNN), so one entry is one line."""
    named = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return "".join(named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c) for c in text)


@db_group.command("remove")
@click.argument("db_path", type=click.Path(exists=True, path_type=Path))
@click.argument("names", nargs=-1, required=True)
@WAIT
def db_remove_cmd(db_path: Path, names: tuple[str, ...], wait: float) -> None:
    """Remove identities NAMES (all their faces) from the gallery, rewriting it atomically (after any other process
    writing it)."""
    from facekit.errors import FacekitError
    from facekit.fileio import write_lock
    from facekit.gallery.store import Gallery, gallery_file

    path = gallery_file(db_path)
    with write_lock(path, wait=wait, what="gallery", waiting=_note):
        g = Gallery.load(path)
        try:
            smaller = g.remove(names)
        except KeyError as exc:
            raise FacekitError(f"{path}: no identity {exc.args[0]} in the gallery (see facekit db list)") from None
        if not len(smaller):
            raise FacekitError(
                f"{path}: removing {', '.join(names)} would leave the gallery empty; delete the file instead"
            )
        smaller.save(path)
    click.echo(f"{path}: removed {len(g) - len(smaller)} faces of {len(names)} people, {len(smaller)} left", err=True)


@click.command("evaluate-gallery")
@click.argument("gallery_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("probe_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("detect_model_path", type=MODEL)
@click.argument("recognize_model_path", type=MODEL)
@click.option(
    "--calibration",
    type=click.Path(exists=True, path_type=Path),
    help="Calibrate every method's threshold on these people (a verification .bin, or identity folders of photos, "
    "detected and aligned like the gallery's), who should be neither gallery nor probe people.",
)
@FAR
@BEST_ACCURACY
@click.option(
    "--threshold",
    type=click.FloatRange(-1, 1),
    help="facekit's open-set threshold, instead of its model's (recognize's default); not with --calibration.",
)
@MATCH
@FLIP
@pick_option()
@click.option(
    "--baseline-fit",
    type=click.Path(exists=True, path_type=Path),
    help="Also run the eigenfaces baseline, fitted on these aligned crops (recognition_train_data or identity "
    "folders; use the recognizer's training data), its threshold calibrated by the same rule on the same set "
    "(--calibration, else the set the model's threshold was calibrated on).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Write metrics.json, cmc.png and roc.png here."
)
@pipeline_options(batch=False)
@THREADS
def evaluate_gallery_cmd(gallery_dir: Path, probe_dir: Path, detect_model_path: Path, recognize_model_path: Path,
                         calibration: Path | None, far: float | None, best_accuracy: bool, threshold: float | None,
                         match: str, flip: bool, pick: str, baseline_fit: Path | None, out: Path | None, backend: str,
                         device: str, max_size: int, det_threshold: float, max_pixels: int,
                         threads: int | None) -> None:  # fmt: skip
    """Open-set identification on GALLERY_DIR (one folder per known person) and PROBE_DIR (one folder per person;
    people without a gallery folder are unknowns): rank-1 / rank-5, TAR at FAR 1e-2 and 1e-3, rejection of
    unknowns at the threshold; CMC and ROC curves with --out. Prints the metrics as JSON; metrics.json records
    each threshold's source and the calibration, gallery and unknown people.

    Honest numbers need calibration people who are neither gallery nor probe people (a warning says when they
    overlap) and unknowns the recognizer never trained on; `facekit split-people` cuts such a split.
    """
    from facekit.cli.outputs import Inputs
    from facekit.fileio import atomic_write
    from facekit.gallery.evaluate import plot_cmc, plot_identification_roc
    from facekit.gallery.protocol import evaluate_gallery, fit_eigenfaces, open_set_thresholds

    far = rule(far, best_accuracy)
    if calibration is not None and threshold is not None:
        raise click.UsageError("--threshold and --calibration exclude each other")
    if calibration is None and (far is not None or best_accuracy):
        raise click.UsageError("--far / --best-accuracy choose how --calibration calibrates; give --calibration")
    reads = Inputs().data(gallery_dir, "the gallery folder").data(probe_dir, "the probe folder")
    reads.data(calibration, "the calibration set").data(baseline_fit, "the baseline's training data")
    reads.model(detect_model_path, "detector").model(recognize_model_path, "recognizer").check(folders=[out])
    pipeline = cli_pipeline(detect_model_path, recognize_model_path, backend, device, max_size, det_threshold, flip,
                            max_pixels, threads)  # fmt: skip
    baselines = {"eigenfaces": fit_eigenfaces(baseline_fit).embed} if baseline_fit is not None else {}
    thresholds, left_out = open_set_thresholds(
        pipeline, baselines, calibration=calibration, far=far, threshold=threshold, pick=pick
    )
    _listing("warning: calibration photos left out", left_out)
    evaluation = evaluate_gallery(
        gallery_dir, probe_dir, pipeline, thresholds=thresholds, match=match, baselines=baselines, pick=pick
    )
    _listing("warning: photos left out", evaluation.skipped)
    if evaluation.overlap:
        click.echo(
            f"warning: {len(evaluation.overlap)} calibration people are also gallery or probe people "
            f"({', '.join(evaluation.overlap[:10])}): the thresholds are not calibrated on unseen people",
            err=True,
        )
    elif thresholds.calibration_people is None and any("rule" in s for s in thresholds.sources.values()):
        click.echo("note: the calibration people are unknown; cannot check that they are neither gallery nor probe "
                   "people", err=True)  # fmt: skip
    text = strict_json.dumps(evaluation.as_dict(), indent=2)
    if out is not None:
        with atomic_write(out / "metrics.json") as f:
            f.write(text + "\n")
        plot_cmc(evaluation.results, out / "cmc.png")
        plot_identification_roc(evaluation.results, out / "roc.png")
    click.echo(text)
    rate = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    for name, r in evaluation.results.items():
        click.echo(
            f"{name}: rank-1 {rate(r.rank1)}, rank-5 {rate(r.rank5)} over {r.known_probes} known probes; "
            f"TAR {rate(r.tar_at_far[1e-2])} at FAR 1e-2; {rate(r.rejection_rate)} of {r.unknown_probes} unknown "
            f"probes rejected at threshold {r.threshold:.4f}",
            err=True,
        )
