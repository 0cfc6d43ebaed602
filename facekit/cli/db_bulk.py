"""db merge | import | export: bulk and distributed enrolment. They join the `db` group of facekit.cli.gallery,
which `facekit db` loads from here. Library imports happen inside."""

from __future__ import annotations

from pathlib import Path

import click

from facekit.cli.gallery import WAIT, _note, db_group

GALLERY = click.Path(exists=True, dir_okay=False, path_type=Path)


def _not_an_input(out: Path, inputs: list[Path]) -> None:
    """Refuse an output that is one of the inputs (compared after resolving symlinks)."""
    for path in inputs:
        if out.resolve() == path.resolve():
            raise click.BadParameter(f"{out} is also an input ({path}); write the result to another file")


@db_group.command("merge")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@WAIT
def db_merge_cmd(paths: tuple[Path, ...], wait: float) -> None:
    """Merge galleries A.h5 B.h5 ... into OUT.h5 (the last path), e.g. the shards of one build-db.

    Every entry of every gallery is kept, in the order given; a name found in several galleries is one person
    (their faces join one identity). Galleries made by another recognizer, detector, alignment or mirror averaging
    than the first are refused. OUT.h5 is written atomically and may not be one of the inputs."""
    from facekit.fileio import write_lock
    from facekit.gallery.bulk import merge
    from facekit.gallery.store import gallery_file

    if len(paths) < 3:
        raise click.BadParameter("expected two galleries or more and the output: A.h5 B.h5 ... OUT.h5")
    *inputs, out = paths
    for path in inputs:
        if not path.is_file():
            raise click.BadParameter(f"{path}: no such gallery file")
    out = gallery_file(out)
    _not_an_input(out, inputs)
    merged = merge(inputs)
    with write_lock(out, wait=wait, what="gallery", waiting=_note):
        merged.save(out)
    click.echo(f"{out}: {len(merged)} faces of {len(merged.identities)} people from {len(inputs)} galleries",
               err=True)  # fmt: skip


@db_group.command("import")
@click.argument("embeddings_path", type=GALLERY)
@click.argument("db_path", type=click.Path(path_type=Path))
@WAIT
def db_import_cmd(embeddings_path: Path, db_path: Path, wait: float) -> None:
    """Add the faces of EMBEDDINGS_PATH (an .h5 written by facekit embed or db export, or another tool in that
    layout) to the gallery DB_PATH, appending in place when it exists (made by the same models), else creating it.

    Identity names: the file's `identities` dataset (db export writes it), else the folder each image lies in
    (photos/alice/1.jpg is alice), as build-db names identity folders. Rows of the wrong shape, non-finite or not
    L2-normalised are refused with one line naming the file and row; nothing is written then."""
    from facekit.fileio import write_lock
    from facekit.gallery.bulk import import_embeddings, same_models
    from facekit.gallery.store import Enrolment, Gallery, gallery_file

    out = gallery_file(db_path)
    _not_an_input(out, [embeddings_path])
    new = import_embeddings(embeddings_path)
    with write_lock(out, wait=wait, what="gallery", waiting=_note):
        gallery = new
        if out.exists():
            current = Gallery.load(out)
            same_models(current, new, embeddings_path, out)
            enrolment = Enrolment(current)
            enrolment.add(new.embeddings, [new.identities[i] for i in new.identity_index], new.sources, new.boxes,
                          new.landmarks, new.det_scores)  # fmt: skip
            gallery = enrolment.gallery()
        gallery.save(out)
    click.echo(f"{out}: {len(gallery)} faces of {len(gallery.identities)} people (imported {len(new)} faces of "
               f"{len(new.identities)} people)", err=True)  # fmt: skip


@db_group.command("export")
@click.argument("db_path", type=GALLERY)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def db_export_cmd(db_path: Path, out: Path) -> None:
    """Write the embeddings of gallery DB_PATH with their identity names, sources, boxes, landmarks and detection
    scores to OUT (.h5, the layout facekit embed writes plus an identities dataset): what db import reads back."""
    from facekit.gallery.bulk import export
    from facekit.gallery.store import Gallery

    if out.suffix.lower() != ".h5":
        raise click.BadParameter(f"{out}: expected an output ending in .h5")
    _not_an_input(out, [db_path])
    g = Gallery.load(db_path)
    export(g, out)
    click.echo(f"{out}: {len(g)} faces of {len(g.identities)} people", err=True)
