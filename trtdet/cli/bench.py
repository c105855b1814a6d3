"""``trtdet bench``: per-stage and end-to-end timing of a model's pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from trtdet.cli.common import detector_options, handle_errors, load_detector, model_options

#: What the table's columns measure, printed above it.
COLUMNS_HELP = (
    "pre/infer/decode ms: median time of each stage per batch (GPU synchronised after each); "
    "min/median ms: one detector.detect(batch) call end to end; img/s: batch / median"
)


@click.command("bench", short_help="Time a model's pipeline: per stage and end to end.")
@model_options
@click.option("--source", "-s", "sources", multiple=True,
              help="Images (files, folders, globs) to time on, cycled to fill each batch.  [default: the model's sample photo]")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, help="Batch size(s) to time (repeatable).  [default: 1]")
@click.option("--iterations", type=click.IntRange(min=1), default=20, show_default=True, help="Timed batches per batch size.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed batches first.")
@click.option("--json", "json_path", help="Also write the results as JSON to FILE (or - for stdout only).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def bench_command(model, sources, batches, iterations, warmup, json_path, quiet, **model_flags):
    """Time preprocess, inference and decode per batch, and end-to-end images/s.

    The table goes to stdout (to stderr with --json -, which keeps stdout for the JSON);
    progress goes to stderr.
    """
    from tqdm import tqdm

    from trtdet.benchmark import benchmark
    from trtdet.cli.run import DEFAULT_SAMPLE
    from trtdet.errors import UsageError
    from trtdet.io.images import read_image
    from trtdet.io.sources import collect_sources

    batches = batches or (1,)
    options = detector_options(model_flags, batch=max(batches))
    device = options.device
    detector = load_detector(model, options)
    if not sources:
        sources = (str(detector.spec.sample_image() if detector.spec.sample_image else DEFAULT_SAMPLE),)
    files = [source.name for source in collect_sources(sources).sources if source.kind == "image"]
    if not files:
        raise UsageError(f"--source: no image files in {', '.join(sources)}")
    images = [read_image(Path(name)) for name in files]
    results = []
    table_to_stderr = json_path == "-"

    def show(line: str) -> None:
        click.echo(line, err=table_to_stderr)

    show(f"{model} on {detector.backend}, device {device}, input {detector.spec.input_size[0]}x{detector.spec.input_size[1]}, "
         f"{len(images)} image(s), {warmup} warm-up + {iterations} timed batches per size")
    show(COLUMNS_HELP)
    show(f"{'batch':>5} {'pre ms':>8} {'infer ms':>9} {'decode ms':>9} {'min ms':>8} {'median ms':>9} {'img/s':>8}")
    for batch in batches:
        with tqdm(total=warmup + iterations, desc=f"batch {batch}", unit="batch", file=sys.stderr,
                  disable=quiet, leave=False) as bar:
            result = benchmark(detector, images, batch, iterations, warmup, progress=bar.update)
        results.append(result.as_dict())
        show(
            f"{batch:>5} {result.preprocess_ms_median:>8.2f} {result.infer_ms_median:>9.2f} {result.decode_ms_median:>9.2f} "
            f"{result.total_ms_min:>8.2f} {result.total_ms_median:>9.2f} {result.images_per_second:>8.1f}"
        )
    document = {"model": model, "backend": detector.backend, "device": device, "input_size": list(detector.spec.input_size), "results": results}
    if json_path == "-":
        click.echo(json.dumps(document, indent=2))
    elif json_path:
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    detector.close()
