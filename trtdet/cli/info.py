"""``trtdet models`` and ``trtdet plugins``: what is installed."""

from __future__ import annotations

import json

import click

from trtdet.cli.common import handle_errors


@click.command("models", short_help="List installed models: plugin, version, classes, input size.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def models_command(as_json: bool) -> None:
    """List installed models with the plugin and version that provide them.

    Classes and input size are those of the model's shipped default file, as a run without
    --weights/--onnx/--engine uses it (the registered ones for a model that ships none).
    """
    from trtdet.model_file import default_model_spec
    from trtdet.plugins import list_models

    rows = []
    for info in list_models().values():
        spec, default_file = default_model_spec(info.spec)
        rows.append({
            "name": spec.name,
            "plugin": info.plugin,
            "distribution": info.distribution,
            "version": info.version,
            "classes": spec.num_classes,
            "class_names": list(spec.class_names),
            "input_size": list(spec.input_size),
            # the preprocess geometry the default file runs with (rect, square, warp, stretch)
            "letterbox": spec.letterbox,
            "default_model": None if default_file is None else str(default_file),
            "description": spec.description,
            # what the shipped default detects when it is a demo (null: a model to use)
            "demo_weights": spec.demo_weights if default_file is not None else None,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        names = row["class_names"]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        click.echo(
            f"{row['name']:<14} {row['distribution']} {row['version']} (plugin {row['plugin']}): "
            f"{row['classes']} classes ({shown}), input {row['input_size'][0]}x{row['input_size'][1]}"
            f", letterbox {row['letterbox']}"
            + (f" - {row['description']}" if row["description"] else "")
            + ("" if row["default_model"] else " [no default model: pass --weights, --onnx or --engine]")
            + (f" [demo weights: {row['demo_weights']}]" if row["demo_weights"] else "")
        )


@click.command("plugins", short_help="List installed plugins and the hooks each implements.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def plugins_command(as_json: bool) -> None:
    """List installed plugins and the hooks each implements, and those that failed to load."""
    from trtdet.plugins import failed_plugins, list_plugins

    rows: list[dict[str, object]] = [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": list(p.hooks), "error": None}
        for p in list_plugins()
    ]
    # A plugin that could not be imported is listed too, with why (and no hooks).
    rows += [{"name": name, "hooks": [], "error": reason} for name, reason in sorted(failed_plugins().items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if row["error"]:
            click.echo(f"{row['name']}: failed to load: {row['error']}")
        else:
            click.echo(f"{row['name']} ({row['distribution']} {row['version']}): {', '.join(row['hooks'])}")
