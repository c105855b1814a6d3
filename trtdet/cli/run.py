"""``trtdet run``: detect on images, directories, videos, cameras or streams."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from trtdet.cli.common import (
    EXIT_INPUTS_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    detector_options,
    handle_errors,
    load_detector,
    model_options,
)
from trtdet.cli.run_output import Destinations, check_destinations, where_results_went
from trtdet.contracts.engine import RunsOnProviders
from trtdet.detections import Detections
from trtdet.devices import Device, parse_device, torch_device
from trtdet.errors import InputError, UsageError
from trtdet.io.sinks import frame_record
from trtdet.io.sources import CollectedSources, Frame, collect_sources, count_frames
from trtdet.pipeline import NonFiniteDetectionsWarning
from trtdet.results import STAGES, speed_record

#: Exit code of a run stopped by Ctrl-C (SIGINT), as shells report it: 128 + 2.
EXIT_INTERRUPTED = 130

DEFAULT_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jpg"


def _jpeg_decoder(decode_on: str, device: Device):
    """A GPU JPEG decoder when asked for (or ``auto`` on a CUDA run where one works), else None."""
    if decode_on == "cpu" or (decode_on == "auto" and not device.is_cuda):
        return None
    if not device.is_cuda:
        raise UsageError("--decode cuda needs --device cuda")
    from trtdet.io.gpu_jpeg import CudaJpegDecoder, unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return CudaJpegDecoder(device=str(torch_device(device)))
    if decode_on == "cuda":
        raise UsageError(f"--decode cuda: {reason}")
    return None


def _milliseconds(speed: dict[str, float]) -> str:
    """``1.2ms preprocess, 3.4ms inference, 0.8ms postprocess`` (Ultralytics' ``Speed:`` wording)."""
    return ", ".join(f"{speed[stage]:.1f}ms {stage}" for stage in STAGES if stage in speed)


def _summary(frame: Frame, detections: Detections, class_names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for label in detections.labels(class_names):
        counts[label] = counts.get(label, 0) + 1
    where = frame.name if frame.index is None else f"{frame.name}#{frame.index}"
    found = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
    speed = _milliseconds(getattr(detections, "speed", {}))
    return f"{where}: {found}" + (f" ({speed})" if speed else "")


@dataclass
class RunTally:
    """What a run did, for the summary at its end."""

    inputs: set[str] = field(default_factory=set)
    frames: int = 0
    detections: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    #: Milliseconds per stage summed over the images that ran, and how many did.
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    timed: int = 0

    def add_speed(self, speed: dict[str, float]) -> None:
        if speed:
            self.timed += 1
            for stage in STAGES:
                self.stage_ms[stage] += speed.get(stage, 0.0)

    def speed_line(self, shape: tuple[int, ...]) -> str | None:
        """Ultralytics' ``Speed: ... per image at shape (B, 3, H, W)``; None when no image ran."""
        if not self.timed:
            return None
        mean = {stage: total / self.timed for stage, total in self.stage_ms.items()}
        return f"Speed: {_milliseconds(mean)} per image at shape {shape}"

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


@dataclass(frozen=True)
class RunRequest:
    """What ``trtdet run`` was asked to do: its options as click parsed them."""

    model: str
    sources: Sequence[str]
    batch: int
    output: str | None
    json_path: str | None
    track: bool
    quiet: bool
    workers: int | None
    decode_on: str
    model_flags: dict[str, Any]


@dataclass
class RunLoop:
    """The per-frame work of ``trtdet run``: track, annotate, print and record each frame."""

    class_names: Sequence[str]
    quiet: bool
    to_stdout: bool
    tracker: Any = None
    media_sink: Any = None
    json_sink: Any = None
    tally: RunTally = field(default_factory=RunTally)
    #: Inputs whose every record was written (or that had nothing to write).
    recorded: set[str] = field(default_factory=set)
    #: Set when --json could not be written: the run stopped there.
    json_error: OSError | None = None
    bar: Any = None

    def echo_line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        click.echo(text, err=True)

    def handle(self, frame: Frame, detections: Detections | None) -> None:
        """Everything one frame gives; sets ``json_error`` when its record cannot be written."""
        self.tally.inputs.add(frame.name)
        self.tally.frames += 1
        speed = speed_record(detections)  # before tracking, which makes new Detections
        self.tally.add_speed(speed or {})
        if detections is not None and self.tracker is not None and frame.index is not None:
            detections = self.tracker.update(frame.name, detections, frame.fps)
        written_to = self._annotate(frame, detections)
        self._report(frame, detections)
        if self.json_sink is not None:
            record = frame_record(frame, detections, self.class_names)
            record["warning"] = frame.warning  # always present, null when absent
            record["output"] = None if written_to is None else str(written_to)
            record["speed"] = speed
            try:
                self.json_sink.write(record)
            except OSError as exc:  # a full disk, a closed pipe: the run stops, the input is unrecorded
                self.json_error = exc
                self.recorded.discard(frame.name)  # a video's earlier frames do not make it recorded
                return
        self.recorded.add(frame.name)

    def _annotate(self, frame: Frame, detections: Detections | None) -> Path | None:
        """The annotated copy; one that cannot be written fails the input, its detections kept."""
        if detections is None or self.media_sink is None:
            return None
        try:
            return self.media_sink.write(frame, detections)
        except InputError as exc:
            frame.error = str(exc)
            return None

    def _report(self, frame: Frame, detections: Detections | None) -> None:
        if frame.error:
            self.tally.failed += 1
            self.echo_line(f"error: {frame.error}")
        elif frame.warning:
            self.echo_line(f"warning: {frame.warning}")
        if detections is not None:
            self.tally.detections += len(detections)
            if not self.quiet and frame.index is None:
                if self.bar is not None:
                    self.bar.clear()
                click.echo(_summary(frame, detections, self.class_names), err=self.to_stdout)

    def finish_media(self) -> None:
        for error in self.media_sink.close() if self.media_sink is not None else ():
            self.tally.failed += 1
            self.echo_line(f"error: {error}")


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _json_failure_line(json_path: str, error: OSError, written: int, unrecorded: Sequence[str]) -> str:
    """One line: why --json stopped, how many records are whole, and which inputs have none."""
    what = "stdout" if json_path == "-" else json_path
    reason = error.strerror or type(error).__name__
    return (f"--json {what}: cannot write ({reason}); {written} record(s) written whole, the run stopped; "
            f"not recorded: {len(unrecorded)} input(s): {_listed(list(unrecorded))}")


def _announce(detector: Any, device: Device, jpeg_decoder: Any) -> None:
    provider = detector.engine.providers if isinstance(detector.engine, RunsOnProviders) else None
    where = f" ({provider[0]})" if provider else ""
    decoding = ", JPEGs decoded on the GPU" if jpeg_decoder is not None else ""
    click.echo(f"{detector.spec.name}: {detector.model_source} on {detector.backend}{where}, device {device}{decoding}", err=True)
    for reason in detector.backend_passed_over if device.is_cuda else ():
        click.echo(f"  (not {reason})", err=True)


def _sources(spec: Any, sources: Sequence[str]) -> CollectedSources:
    """The inputs the arguments name (the model's sample photo when none)."""
    if not sources:
        sample = spec.sample_image() if spec.sample_image else DEFAULT_SAMPLE
        sources = (str(sample),)
    return collect_sources(sources)


def _open_sinks(stack: ExitStack, destinations: Destinations, class_names: Sequence[str]) -> tuple[Any, Any]:
    """The JSON-lines sink and the annotated-media sink the destinations ask for (closed by ``stack``)."""
    from trtdet.io.sinks import AnnotatedMediaSink, JsonLinesSink

    json_sink = None
    if destinations.json == "-":
        json_sink = JsonLinesSink(sys.stdout)
    elif destinations.json:
        try:
            json_sink = JsonLinesSink.open_file(destinations.json)
        except OSError as exc:
            raise UsageError(f"--json {destinations.json}: cannot write the file ({exc.strerror})") from None
        stack.callback(json_sink.close)
    media_sink = None
    if destinations.annotates:
        media_sink = AnnotatedMediaSink(destinations.folder or Path("."), class_names, file=destinations.file)
        stack.callback(media_sink.close)  # after an error too (a second close does nothing)
    return json_sink, media_sink


def _detect_all(loop: RunLoop, frames: Iterator[tuple[Frame, Detections | None]], bar: Any) -> bool:
    """Feed every frame to ``loop``; False when interrupted (Ctrl-C). A --json write failure stops it."""
    loop.bar = bar
    try:
        with closing(frames):  # type: ignore[type-var]
            for frame, detections in frames:
                loop.handle(frame, detections)
                if loop.json_error is not None:
                    break
                bar.update(1)
    except KeyboardInterrupt:
        return False
    finally:
        loop.bar = None
    return True


def _finish(loop: RunLoop, collected: CollectedSources, destinations: Destinations, quiet: bool, interrupted: bool,
            shape: tuple[int, ...] = ()) -> int:
    """Print what the run did and return its exit code (130 interrupted; 1 nothing recorded; 2 failures)."""
    unrecorded = [s.name for s in collected.sources if s.name not in loop.recorded]
    if loop.json_error is not None:
        click.echo("error: " + _json_failure_line(destinations.json or "-", loop.json_error,
                                                  loop.json_sink.written, unrecorded), err=True)
    elif interrupted:
        click.echo(f"interrupted: {len(unrecorded)} input(s) not processed: {_listed(unrecorded)}", err=True)
    if not quiet or interrupted or loop.json_error is not None:
        speed = loop.tally.speed_line(shape)
        if speed is not None:
            click.echo(speed, err=True)
        click.echo(loop.tally.line(len(collected.skipped)), err=True)
        written = len(loop.media_sink.written) if loop.media_sink is not None else 0
        click.echo(where_results_went(destinations, written), err=True)
    if interrupted:
        return EXIT_INTERRUPTED
    if loop.json_error is not None:
        return EXIT_INPUTS_FAILED if loop.json_sink.written else EXIT_USAGE
    if loop.tally.failed:
        click.echo(f"{loop.tally.failed} input(s) failed", err=True)
        return EXIT_INPUTS_FAILED
    return EXIT_OK


def _make_tracker(track: bool) -> Any:
    if not track:
        return None
    from trtdet.tracking import VideoTracker

    return VideoTracker()


@click.command("run", short_help="Detect objects in images, folders, videos, cameras or streams.")
@model_options
@click.option("--source", "-s", "sources", multiple=True,
              help="Image, directory (its image and video files), glob ('photos/*.png'), video, camera index or URL "
                   "(repeatable).  [default: the model's sample photo]")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per engine call.")
@click.option("--output", "-o", type=click.Path(),
              help="Write annotated images/videos to this folder, mirroring the inputs' paths below their folder; "
                   "or, for one input, to this file (NAME.jpg, NAME.png, ... or NAME.mp4 for a video).")
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
    summary at the end saying where the results went. Ctrl-C stops the run: the summary of
    what was done is printed, exit 130. A --json destination that fills up (a full disk)
    stops the run with every written record whole: exit 2, or 1 if none could be written.
    """
    request = RunRequest(model, sources, batch, output, json_path, track, quiet, workers, decode_on, model_flags)
    try:
        code = _run(request)
    except KeyboardInterrupt:  # before any input ran (loading the model): nothing to summarise
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _run(request: RunRequest) -> int:
    """``run_command``'s work, in order: check everything cheap, load, detect, summarise."""
    from tqdm import tqdm

    from trtdet.plugins import get_model
    from trtdet.streaming import detect_frames

    warnings.simplefilter("ignore", NonFiniteDetectionsWarning)  # reported per input, once
    options = detector_options(request.model_flags, batch=request.batch)
    spec = get_model(request.model).spec  # unknown models fail before any loading
    collected = _sources(spec, request.sources)
    destinations = check_destinations(request.output, request.json_path, collected)  # one line, before the model loads
    tracker = _make_tracker(request.track)
    device = parse_device(options.device)  # once, for the JPEG decoder and the announcement
    jpeg_decoder = _jpeg_decoder(request.decode_on, device)
    detector = load_detector(request.model, options)
    if not request.quiet:
        _announce(detector, device, jpeg_decoder)
    total = count_frames(collected.sources)
    with ExitStack() as stack:
        json_sink, media_sink = _open_sinks(stack, destinations, detector.class_names)
        loop = RunLoop(detector.class_names, request.quiet, request.json_path == "-", tracker, media_sink, json_sink)
        show_bar = not request.quiet and (total is None or total > 1)
        bar = stack.enter_context(tqdm(total=total, disable=not show_bar, unit="img", file=sys.stderr, leave=False))
        frames = detect_frames(detector, collected.sources, workers=request.workers, jpeg_decoder=jpeg_decoder)
        finished = _detect_all(loop, frames, bar)
        loop.finish_media()
    shape = detector.last_input_shape or (detector.batch, 3, *detector.spec.input_size)
    return _finish(loop, collected, destinations, request.quiet, interrupted=not finished, shape=shape)
