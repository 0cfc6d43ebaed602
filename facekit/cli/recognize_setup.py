"""recognize's shared set-up (gallery, pipeline, matcher, threshold) and its video branch."""

from __future__ import annotations

from pathlib import Path

import click

from facekit.cli.options import cli_pipeline, listing


def matching(db_file: Path, detect_model_path: Path, recognize_model_path: Path, backend: str, device: str,
              max_size: int, det_threshold: float, max_pixels: int, threads: int | None, flip: bool | None,
              threshold: float | None, match: str, index: str, params: dict[str, int]):  # fmt: skip
    """recognize's (pipeline, matcher, threshold) for photos and video alike: the pipeline checked against the
    gallery's recognizer and mirroring as the gallery was built (unless --flip says), the threshold given or the
    recognizer's own (said on stderr)."""
    from facekit.gallery.recognize import Matcher, default_threshold
    from facekit.gallery.store import Gallery

    gallery = Gallery.load(db_file)
    pipeline = cli_pipeline(detect_model_path, recognize_model_path, backend, device, max_size, det_threshold, False,
                            max_pixels, threads)  # fmt: skip
    gallery.check_recognizer(pipeline.recognizer, db_file)
    pipeline.flip = gallery.flip if flip is None else flip
    if threshold is None:
        threshold, source = default_threshold(pipeline.recognizer)
        click.echo(f"threshold {threshold:.4f} ({source})", err=True)
    return pipeline, Matcher(gallery, match=match, index=index, cache_prefix=db_file, params=params), threshold


def recognize_video_source(source: str, db_path: Path, detect_model_path: Path, recognize_model_path: Path, *,
                     threshold: float | None, match: str, top_k: int, index: str, params: dict[str, int],
                     out: Path | None, fmt: str,
                     save_annotated: Path | None, flip: bool | None, every: int, retries: int, backend: str,
                     device: str, max_size: int, det_threshold: float, max_pixels: int, batch: int,
                     threads: int | None) -> None:  # fmt: skip
    """recognize's video branch: frames -> tracks (gallery.video), JSON Lines to --out or stdout; faces embedded
    --batch frames at a time."""
    from facekit.cli.outputs import Inputs
    from facekit.gallery.store import gallery_file
    from facekit.gallery.video import WRITE_CODECS, is_stream, recognize_video

    if fmt != "jsonl":
        raise click.UsageError("a video gives JSON Lines (frame and track records); --format csv is for photos")
    if save_annotated is not None and save_annotated.suffix.lower() not in WRITE_CODECS:
        raise click.BadParameter(f"{save_annotated}: an annotated video ends in {', '.join(WRITE_CODECS)}",
                                 param_hint="'--save-annotated'")  # fmt: skip
    db_file = gallery_file(db_path)
    reads = Inputs().file(db_file, "the gallery").model(detect_model_path, "detector")
    reads.model(recognize_model_path, "recognizer").file(None if is_stream(source) else Path(source), "the video")
    reads.check(files=[out, save_annotated])
    pipeline, matcher, threshold = matching(db_file, detect_model_path, recognize_model_path, backend, device,
                                            max_size, det_threshold, max_pixels, threads, flip, threshold, match,
                                            index, params)  # fmt: skip
    report = recognize_video(source, pipeline, matcher, threshold=threshold, top_k=top_k, every=every,
                             retries=retries, out=out, annotated=save_annotated, batch_frames=batch)  # fmt: skip
    listing("warning: frames skipped", report.skipped)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    named = sum(t["identity"] is not None for t in report.tracks)
    click.echo(
        f"{report.frames} frames, {report.faces} faces, {len(report.tracks)} tracks: {named} named, "
        f"{len(report.tracks) - named} unknown" + (f" -> {out}" if out else ""),
        err=True,
    )
