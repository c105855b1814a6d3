"""``trtdet models`` and ``trtdet plugins``: what is installed."""

from __future__ import annotations

import json

import click

from trtdet.cli.common import handle_errors


@click.command("models", short_help="List installed models: plugin, version, classes, input size.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def models_command(as_json: bool) -> None:
    """List installed models with the plugin and version that provide them."""
    from trtdet.plugins import list_models

    models = list_models()
    rows = [
        {
            "name": info.spec.name,
            "plugin": info.plugin,
            "distribution": info.distribution,
            "version": info.version,
            "classes": info.spec.num_classes,
            "input_size": list(info.spec.input_size),
            "description": info.spec.description,
        }
        for info in models.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['name']:<14} {row['distribution']} {row['version']} (plugin {row['plugin']}): "
            f"{row['classes']} classes, input {row['input_size'][0]}x{row['input_size'][1]}"
            + (f" - {row['description']}" if row["description"] else "")
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
