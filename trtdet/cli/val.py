"""``trtdet val``: COCO box mAP of a model over an images folder and a COCO annotation file."""

from __future__ import annotations

import json
import sys
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
from trtdet.errors import UsageError

#: Score threshold for evaluation: COCO AP integrates over the whole precision/recall curve,
#: so low-confidence detections must reach the scorer (up to 100 per image).
EVAL_CONF = 0.01


def _padded(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def _input_multiple(model: str) -> int:
    """The multiple ``--keep-res`` pads to: the model's declared ``ModelSpec.input_multiple``."""
    from trtdet.plugins import get_model

    multiple = get_model(model).spec.input_multiple
    if multiple is None:
        raise UsageError(f"--keep-res: model {model!r} declares no input_multiple (the multiple its input's height "
                         "and width must be), so there is no size to pad to")
    return multiple


@click.command("val", short_help="COCO AP, AP50, AP75 of a model on a labelled image set.")
@model_options
@click.option(
    "--images", "images_dir", required=True, type=click.Path(file_okay=False), help="Folder of the images."
)
@click.option(
    "--annotations",
    required=True,
    type=click.Path(dir_okay=False),
    help="COCO detection JSON (boxes, categories).",
)
@click.option(
    "--keep-res",
    is_flag=True,
    help="Run each image at its own size, padded up to a multiple of the model's ModelSpec.input_multiple "
    "(e.g. 32), as some models' official numbers are measured, instead of the model's fixed input size; "
    "needs --weights or a dynamic-shape model.",
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per engine call."
)
@click.option("--json", "json_path", help="Also write the metrics as JSON to FILE, or - for stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def val_command(images_dir, annotations, keep_res, batch, json_path, quiet, **model_options_given):
    """Report COCO AP, AP50 and AP75 (pycocotools) of a model on a labelled image set.

    The AP line goes to stdout (to stderr with --json -, which keeps stdout for the JSON).
    Ground-truth categories are matched to the model's classes by name; categories the model
    does not know are left out and listed.
    """
    from trtdet.evaluation import evaluate

    given = dict(model_options_given)
    model = given.pop("model")
    if given.get("conf") is None:
        given["conf"] = EVAL_CONF
    options = detector_options(given, batch=batch)
    conf = options.conf
    if keep_res:
        if options.input_size:
            raise UsageError("--keep-res and --input-size exclude each other")
        multiple = _input_multiple(model)
        detectors: dict[tuple[int, int], object] = {}

        def detect(images):  # one detector per padded size, each image at its own resolution
            results = []
            for image in images:
                size = (_padded(image.shape[0], multiple), _padded(image.shape[1], multiple))
                if size not in detectors:
                    detectors[size] = load_detector(model, options.replace(input_size=size))
                    got = tuple(detectors[size].spec.input_size)
                    if got != size:
                        raise UsageError(
                            f"--keep-res: the model file takes a fixed {got[0]}x{got[1]} input, not "
                            f"{size[0]}x{size[1]}; pass --weights (exported per size) or drop --keep-res"
                        )
                results.extend(detectors[size]([image]))
            return results

        class_names = load_detector(model, options).class_names
    else:
        detector = load_detector(model, options)
        detect, class_names = detector.detect, detector.class_names
    result = evaluate(
        detect, Path(images_dir), Path(annotations), class_names, batch=batch, progress=not quiet
    )
    click.echo(
        f"{model}: {result.images} images, {result.detections} detections (conf >= {conf:g})"
        + (
            f"; categories without a model class (not scored): {', '.join(result.unmatched_categories)}"
            if result.unmatched_categories
            else ""
        ),
        err=True,
    )
    for line in result.failed:  # scored as images with no detections
        click.echo(f"error: {line}", err=True)
    stats = result.stats
    # With --json - stdout is the JSON alone; the AP line goes to stderr then.
    click.echo(f"AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}  AP75 {stats['AP75']:.4f}", err=json_path == "-")
    if not quiet:
        click.echo(result.summary, err=True)
    if json_path:
        payload = json.dumps(
            {"model": model, "annotations": str(annotations), "conf": conf, **result.to_dict()}
        )
        if json_path == "-":
            click.echo(payload)
        else:
            Path(json_path).write_text(payload + "\n", encoding="utf-8")
    if result.failed:
        click.echo(f"{len(result.failed)} image(s) failed (scored as images with no detections)", err=True)
        sys.exit(EXIT_INPUTS_FAILED)
    sys.exit(EXIT_OK)
