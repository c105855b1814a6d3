"""``trtdet run``: detect on images, directories, videos, cameras or streams."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
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
from trtdet.errors import UsageError
from trtdet.io.sources import Frame, Source, count_frames, expand_sources, iter_frames
from trtdet.scheduler import Outcome, Scheduler

DEFAULT_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jpg"


def _outcomes(frames: Iterator[Frame], scheduler: Scheduler) -> Iterator[tuple[Frame, Detections | None]]:
    """Every frame, in order, with its detections (None: unreadable, or its detection failed).

    The detector's scheduler forms the batches (readable frames only; unreadable ones are
    reported in order) and retries a failed batch one by one, so a bad image fails alone.
    """
    with scheduler:
        for frame in frames:
            yield from _settle(scheduler.add(frame.image, frame, run=frame.image is not None))
        yield from _settle(scheduler.drain())


def _settle(outcomes: list[Outcome]) -> Iterator[tuple[Frame, Detections | None]]:
    for outcome in outcomes:
        frame: Frame = outcome.tag
        if outcome.error is not None:  # an input the model chokes on: report, go on
            exc = outcome.error
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            frame.error = f"{frame.name}: detection failed: {message}"
            frame.image = None
        yield frame, outcome.result


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
    for cls in detections.class_id.tolist():
        label = class_names[cls] if 0 <= cls < len(class_names) else str(cls)
        counts[label] = counts.get(label, 0) + 1
    where = frame.name if frame.index is None else f"{frame.name}#{frame.index}"
    found = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
    return f"{where}: {found}"


@click.command("run")
@model_options
@click.option("--source", "-s", "sources", multiple=True, help="Image, directory, video, camera index or URL (repeatable).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per engine call.")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Write annotated images/videos here.")
@click.option("--json", "json_path", help="Write detections as JSON lines to FILE, or - for stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summaries.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads reading images ahead of detection (default: up to 4, one per CPU core).")
@click.option("--decode", "decode_on", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where JPEGs are decoded: cuda = nvJPEG via torchvision (auto: when --device cuda and available).")
@handle_errors
def run_command(model, sources, batch, output, json_path, quiet, workers, decode_on, **model_flags):
    """Detect objects and report every input, good or bad (exit 2 if any input failed)."""
    from tqdm import tqdm

    from trtdet.io.sinks import AnnotatedMediaSink, JsonLinesSink, frame_record
    from trtdet.plugins import get_model

    options = detector_options(model_flags, batch=batch)
    device = options.device
    get_model(model)  # unknown models fail before any loading
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
    expanded: list[Source] = expand_sources(sources)
    total = count_frames(expanded)
    class_names = detector.class_names
    failed = 0
    with ExitStack() as stack:
        json_sink = None
        if json_path == "-":
            json_sink = JsonLinesSink(sys.stdout)
        elif json_path:
            json_sink = JsonLinesSink(stack.enter_context(open(json_path, "w", encoding="utf-8")))
        media_sink = AnnotatedMediaSink(Path(output), class_names) if output else None
        if media_sink is not None:
            stack.callback(media_sink.close)
        show_bar = not quiet and (total is None or total > 1)
        bar = stack.enter_context(tqdm(total=total, disable=not show_bar, unit="img", file=sys.stderr, leave=False))
        workers = workers or min(4, os.cpu_count() or 1)
        chunk = detector.batch_size if jpeg_decoder is not None else 4
        frame_iter = iter_frames(expanded, workers=workers, jpeg_decoder=jpeg_decoder, chunk=chunk)
        for frame, detections in _outcomes(frame_iter, detector.scheduler()):
            if frame.error:
                failed += 1
                bar.clear()
                click.echo(f"error: {frame.error}", err=True)
            if json_sink is not None:
                json_sink.write(frame_record(frame, detections, class_names))
            if detections is not None:
                if media_sink is not None:
                    media_sink.write(frame, detections)
                if json_path != "-" and not quiet and frame.index is None:
                    bar.clear()
                    click.echo(_summary(frame, detections, class_names))
            bar.update(1)
    if media_sink is not None and not quiet:
        click.echo(f"annotated output: {Path(output)}", err=True)
    if failed:
        click.echo(f"{failed} input(s) failed", err=True)
        sys.exit(EXIT_INPUTS_FAILED)
    sys.exit(EXIT_OK)
