"""``trtdet batch``: detect on large image sets with Ray Data (extra ``[ray]``), resumably."""

from __future__ import annotations

import sys

import click

from trtdet.cli.common import EXIT_INPUTS_FAILED, EXIT_OK, detector_options, handle_errors, model_options


@click.command("batch", short_help="Detect over large image sets on Ray Data, one record per input.")
@model_options
@click.option("--source", "-s", "sources", multiple=True, required=True,
              help="Image file, directory, glob or filesystem URI (s3://, gs://, ...; repeatable).")
@click.option("--output", "-o", required=True, help="Directory (or URI) for the record shards.")
@click.option("--address", default=None, help="Ray cluster to join (auto, HOST:PORT, ray://...); default: a local Ray.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Detectors (Ray actors).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="GPUs each detector asks Ray for (default: 1 on --device cuda, 0 on cpu).")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="CPUs each detector asks Ray for (default: up to 1, shared so reading images keeps an equal share).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Images per engine call.")
@click.option("--format", "file_format", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--shard-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Records per output file (what a crash can cost at most, per worker).")
@click.option("--annotate", is_flag=True, help="Also write annotated images under OUTPUT/images (named in \"output\").")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary.")
@click.option("--verbose", "-v", is_flag=True, help="Also Ray's own log lines and its workers' output.")
@handle_errors
def batch_command(model, sources, output, address, workers, gpus_per_worker, cpus_per_worker, batch, file_format,
                  shard_size, annotate, quiet, verbose, **model_flags):
    """Detect on every image under --source with Ray Data; one record per input in --output.

    Re-running the same command resumes: inputs already in --output are skipped. Only the
    shards it writes (trtdet-records-*) are read or ever deleted; other files are left alone.
    Exit 2 when some inputs failed, now or in an earlier run (their records carry the error).
    """
    from trtdet.ray.batch import BatchJob, run_batch

    options = detector_options(model_flags, batch=batch)

    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    job = BatchJob(model, options, sources, output, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                   cpus_per_worker=cpus_per_worker, file_format=file_format, shard_size=shard_size, annotate=annotate,
                   quiet=quiet, verbose=verbose)
    summary = run_batch(job, say)
    for error in summary.errors[:20]:
        say(f"error: {error}")
    if len(summary.errors) > 20:
        say(f"... and {len(summary.errors) - 20} more (see the records' \"error\")")
    for warning in summary.warnings[:20]:  # damaged inputs that still decoded: not failures
        say(f"warning: {warning}")
    if len(summary.warnings) > 20:
        say(f"... and {len(summary.warnings) - 20} more (see the records' \"warning\")")
    click.echo(summary.line(), err=True)
    sys.exit(EXIT_INPUTS_FAILED if summary.failed or summary.failed_before else EXIT_OK)
