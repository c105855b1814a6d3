"""Where ``trtdet run`` puts its results: ``--output`` as a folder or one file, ``--json`` as a file or stdout.

Everything here is checked before the model loads, so an unusable destination costs one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trtdet.errors import UsageError
from trtdet.io.sources import CollectedSources

#: ``--output`` names one file (not a folder) when it ends in one of these and is no folder.
IMAGE_FILE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_FILE_SUFFIXES = frozenset({".mp4"})


@dataclass(frozen=True)
class Destinations:
    """Checked destinations: an annotated-media ``folder`` or ``file`` (or neither), and ``json``."""

    folder: Path | None = None
    file: Path | None = None
    json: str | None = None

    @property
    def annotates(self) -> bool:
        return self.folder is not None or self.file is not None


def names_a_file(output: str) -> bool:
    """Whether ``--output`` names one annotated file: an image or .mp4 name that is not a folder."""
    path = Path(output)
    return path.suffix.lower() in IMAGE_FILE_SUFFIXES | VIDEO_FILE_SUFFIXES and not path.is_dir()


def _check_single_file(output: str, collected: CollectedSources) -> Path:
    """``--output NAME.jpg`` (or ``.mp4``): exactly one input, of the file's kind."""
    count = len(collected.sources)
    if count != 1:
        raise UsageError(
            f"--output {output}: names one file, but there are {count} inputs; "
            "give a folder (e.g. --output results/) to hold an annotated copy of each"
        )
    (source,) = collected.sources
    suffix = Path(output).suffix.lower()
    if source.is_video_like and suffix not in VIDEO_FILE_SUFFIXES:
        raise UsageError(f"--output {output}: the input {source.name} is a video; name an .mp4 file or a folder")
    if not source.is_video_like and suffix not in IMAGE_FILE_SUFFIXES:
        raise UsageError(f"--output {output}: the input {source.name} is an image; name an image file or a folder")
    return Path(output)


def check_destinations(output: str | None, json_path: str | None, collected: CollectedSources) -> Destinations:
    """The destinations ``--output``/``--json`` name, checked (``UsageError`` with one line if unusable)."""
    from trtdet.io.sinks import check_writable_file, prepare_output_directory

    folder = file = None
    if output and names_a_file(output):
        file = _check_single_file(output, collected)
        prepare_output_directory(file.parent)  # created if missing, written beside through a temporary
    elif output:
        folder = prepare_output_directory(output)
    if json_path and json_path != "-":
        check_writable_file(json_path, "--json")
    return Destinations(folder, file, json_path)


def where_results_went(destinations: Destinations, written: int) -> str:
    """The summary's last line: where the annotated files and the records are."""
    places = []
    if destinations.folder is not None:
        places.append(f"annotated files in {os.path.join(destinations.folder, '')} ({written})")
    if destinations.file is not None:
        places.append(f"annotated file {destinations.file}" if written else f"annotated file {destinations.file} (not written)")
    json_path = destinations.json
    if json_path and json_path != "-":
        places.append(f"detections in {json_path}")
    if json_path == "-":
        places.append("detections on stdout")
    if not places:
        return "nothing saved: add --output DIR for annotated images/videos or --json FILE (or -) for detections"
    return "results: " + "; ".join(places)
