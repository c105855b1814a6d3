"""``trtdet run``: detect on images, directories, videos, cameras or streams."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import click

from trtdet.cli.common import (
    EXIT_INPUTS_FAILED,
    EXIT_OK,
    detector_options,
    handle_errors,
    load_detector,
    model_options,
)
from trtdet.detections import Detections
from trtdet.devices import is_cuda, torch_device
from trtdet.errors import InputError, UsageError
from trtdet.io.sources import Frame, Source, collect_sources, count_frames
from trtdet.pipeline import NonFiniteDetectionsWarning

DEFAULT_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jpg"


def _jpeg_decoder(decode_on: str, device: str):
    """A GPU JPEG decoder when asked for (or ``auto`` on a CUDA run where one works), else None."""
    if decode_on == "cpu" or (decode_on == "auto" and not is_cuda(device)):
        return None
    if not is_cuda(device):
        raise UsageError("--decode cuda needs --device cuda")
    from trtdet.io.gpu_jpeg import CudaJpegDecoder, unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return CudaJpegDecoder(device=str(torch_device(device)))
    if decode_on == "cuda":
        raise UsageError(f"--decode cuda: {reason}")
    return None


def _summary(frame: Frame, detections: Detections, class_names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for label in detections.labels(class_names):
        counts[label] = counts.get(label, 0) + 1
    where = frame.name if frame.index is None else f"{frame.name}#{frame.index}"
    found = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
    return f"{where}: {found}"


@dataclass
class RunTally:
    """What a run did, for the summary at its end."""

    inputs: set[str] = field(default_factory=set)
    frames: int = 0
    detections: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def line(self, skipped: int) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        done = self.frames - self.failed
        parts = [
            f"{len(self.inputs)} input(s)" + (f", {self.frames} frames" if self.frames != len(self.inputs) else ""),
            f"{self.detections} detection(s)",
            f"{self.failed} failed",
        ]
        if skipped:
            parts.append(f"{skipped} file(s) skipped (not an image or video)")
        parts.append(f"{done / seconds:.1f} images/s")
        return ", ".join(parts)


def _where_results_went(output: str | None, json_path: str | None, written: int) -> str:
    places = []
    if output:
        places.append(f"annotated files in {os.path.join(output, '')} ({written})")
    if json_path and json_path != "-":
        places.append(f"detections in {json_path}")
    if json_path == "-":
        places.append("detections on stdout")
    if not places:
        return "nothing saved: add --output DIR for annotated images/videos or --json FILE (or -) for detections"
    return "results: " + "; ".join(places)


@click.command("run", short_help="Detect objects in images, folders, videos, cameras or streams.")
@model_options
@click.option("--source", "-s", "sources", multiple=True,
              help="Image, directory (its image and video files), glob ('photos/*.png'), video, camera index or URL "
                   "(repeatable).  [default: the model's sample photo]")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per engine call.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Write annotated images/videos here, mirroring the inputs' paths below their folder.")
@click.option("--json", "json_path", help="Write detections as JSON lines to FILE, or - for stdout.")
@click.option("--track", is_flag=True, help="Track objects across video frames (ByteTrack; needs trtdet[track]).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summaries.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads reading images ahead of detection (default: up to 4, one per CPU core).")
@click.option("--decode", "decode_on", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where JPEGs are decoded: cuda = nvJPEG via torchvision (auto: when --device cuda and available).")
@handle_errors
def run_command(model, sources, batch, output, json_path, track, quiet, workers, decode_on, **model_flags):
    """Detect objects and report every input, good or bad (exit 2 if any input failed).

    Prints one line per image (on stderr when --json - keeps stdout for the records) and a
    summary at the end saying where the results went.
    """
    from tqdm import tqdm

    from trtdet.io.sinks import (
        AnnotatedMediaSink,
        JsonLinesSink,
        check_writable_file,
        frame_record,
        prepare_output_directory,
    )
    from trtdet.plugins import get_model
    from trtdet.streaming import detect_stream

    warnings.simplefilter("ignore", NonFiniteDetectionsWarning)  # reported per input below, once
    options = detector_options(model_flags, batch=batch)
    device = options.device
    get_model(model)  # unknown models fail before any loading
    if output:  # an unusable --output or --json is one line, before the model loads
        prepare_output_directory(output)
    if json_path and json_path != "-":
        check_writable_file(json_path, "--json")
    tracker = None
    if track:
        from trtdet.tracking import VideoTracker

        tracker = VideoTracker()
    jpeg_decoder = _jpeg_decoder(decode_on, device)
    detector = load_detector(model, options)
    provider = getattr(detector.engine, "providers", None)
    if not quiet:
        where = f" ({provider[0]})" if provider else ""
        decoding = ", JPEGs decoded on the GPU" if jpeg_decoder is not None else ""
        click.echo(f"{detector.spec.name}: {detector.model_source} on {detector.backend}{where}, device {device}{decoding}", err=True)
        for reason in getattr(detector, "backend_passed_over", ()) if is_cuda(device) else ():
            click.echo(f"  (not {reason})", err=True)
    if not sources:
        sample = detector.spec.sample_image() if detector.spec.sample_image else DEFAULT_SAMPLE
        sources = (str(sample),)
    collected = collect_sources(sources)
    expanded: list[Source] = collected.sources
    total = count_frames(expanded)
    class_names = detector.class_names
    tally = RunTally()
    to_stdout = json_path == "-"
    with ExitStack() as stack:
        json_sink = None
        if to_stdout:
            json_sink = JsonLinesSink(sys.stdout)
        elif json_path:
            try:
                json_file = stack.enter_context(open(json_path, "w", encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"--json {json_path}: cannot write the file ({exc.strerror})") from None
            json_sink = JsonLinesSink(json_file)
        media_sink = AnnotatedMediaSink(Path(output), class_names) if output else None
        if media_sink is not None:
            stack.callback(media_sink.close)  # after an error too (a second close does nothing)
        show_bar = not quiet and (total is None or total > 1)
        bar = stack.enter_context(tqdm(total=total, disable=not show_bar, unit="img", file=sys.stderr, leave=False))
        for frame, detections in detect_stream(detector, expanded, workers=workers, jpeg_decoder=jpeg_decoder):
            tally.inputs.add(frame.name)
            tally.frames += 1
            if detections is not None and tracker is not None and frame.index is not None:
                detections = tracker.update(frame.name, detections, frame.fps)
            written_to = None
            if detections is not None and media_sink is not None:
                try:
                    written_to = media_sink.write(frame, detections)
                except InputError as exc:  # the annotated copy could not be written: that input failed
                    frame.error, detections = str(exc), None
            if frame.error:
                tally.failed += 1
                bar.clear()
                click.echo(f"error: {frame.error}", err=True)
            elif frame.warning:
                bar.clear()
                click.echo(f"warning: {frame.warning}", err=True)
            record = frame_record(frame, detections, class_names)
            if written_to is not None:
                record["output"] = str(written_to)
            if detections is not None:
                tally.detections += len(detections)
                if not quiet and frame.index is None:
                    bar.clear()
                    click.echo(_summary(frame, detections, class_names), err=to_stdout)
            if json_sink is not None:
                json_sink.write(record)
            bar.update(1)
        for error in media_sink.close() if media_sink is not None else ():
            tally.failed += 1
            click.echo(f"error: {error}", err=True)
    if not quiet:
        click.echo(tally.line(len(collected.skipped)), err=True)
        written = len(media_sink.written) if media_sink is not None else 0
        click.echo(_where_results_went(output, json_path, written), err=True)
    if tally.failed:
        click.echo(f"{tally.failed} input(s) failed", err=True)
        sys.exit(EXIT_INPUTS_FAILED)
    sys.exit(EXIT_OK)
