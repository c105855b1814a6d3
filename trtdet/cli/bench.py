"""``trtdet bench``: per-stage and end-to-end timing of a model's pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trtdet.cli.common import detector_options, handle_errors, load_detector, model_options


@click.command("bench", short_help="Time a model's pipeline: per stage and end to end.")
@model_options
@click.option("--source", "-s", "sources", multiple=True, help="Images to time on (default: the sample photo).")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, help="Batch size(s) to time (repeatable).")
@click.option("--iterations", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--json", "json_path", help="Also write the results as JSON to FILE (or - for stdout only).")
@handle_errors
def bench_command(model, sources, batches, iterations, warmup, json_path, **model_flags):
    """Time preprocess, inference and decode, and end-to-end images/s."""
    from trtdet.benchmark import benchmark
    from trtdet.cli.run import DEFAULT_SAMPLE
    from trtdet.io.images import read_image

    batches = batches or (1,)
    options = detector_options(model_flags, batch=max(batches))
    device = options.device
    detector = load_detector(model, options)
    if not sources:
        sources = (str(detector.spec.sample_image() if detector.spec.sample_image else DEFAULT_SAMPLE),)
    images = [read_image(Path(s)) for s in sources]
    results = []
    header = f"{model} on {detector.backend}, device {device}, input {detector.spec.input_size[0]}x{detector.spec.input_size[1]}"
    if json_path != "-":
        click.echo(header)
        click.echo(f"{'batch':>5} {'pre ms':>8} {'infer ms':>9} {'decode ms':>9} {'min ms':>8} {'median ms':>9} {'img/s':>8}")
    for batch in batches:
        result = benchmark(detector, images, batch, iterations, warmup)
        results.append(result.as_dict())
        if json_path != "-":
            click.echo(
                f"{batch:>5} {result.preprocess_ms_median:>8.2f} {result.infer_ms_median:>9.2f} {result.decode_ms_median:>9.2f} "
                f"{result.total_ms_min:>8.2f} {result.total_ms_median:>9.2f} {result.images_per_second:>8.1f}"
            )
    document = {"model": model, "backend": detector.backend, "device": device, "input_size": list(detector.spec.input_size), "results": results}
    if json_path == "-":
        click.echo(json.dumps(document, indent=2))
    elif json_path:
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    detector.close()
