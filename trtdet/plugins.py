"""The plugin manager: loads built-in and entry-point plugins once, lazily.

``TRTDET_LOAD_PLUGINS`` restricts which entry-point plugins load: a comma-separated list
of entry-point or distribution names (empty: only the core's built-ins). A named entry point
brings the entry points whose module lives in the same top-level package with it
(``centernet`` also loads ``centernet_tensorrt``, both in ``trtdet_centernet``); a name that
matches nothing installed is a warning.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from trtdet import hookspecs
from trtdet.contracts.build_steps import BuildStep, RegisteredStep
from trtdet.contracts.engine import EngineBackend, complete_backend
from trtdet.errors import PluginLoadWarning, UsageError
from trtdet.model import ModelSpec
from trtdet.models import Model

ENTRY_POINT_GROUP = "trtdet"

#: Built-in plugins of the core, registered the same way as any other plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "trtdet.engines.onnxruntime_backend",
    "trtdet.engines.torch_backend",
    "trtdet.engines.tensorrt.backend",
    "trtdet.engines.inductor.backend",
)

pm = pluggy.PluginManager("trtdet")
pm.add_hookspecs(hookspecs)

_lock = threading.Lock()
_loaded = False
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_failed: dict[str, str] = {}  # plugin name -> why it could not be imported
#: What each register hook registered, with the plugins registered when it ran (see ``_registered``).
_cache: dict[str, tuple[tuple[tuple[str, int], ...], Any]] = {}


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin: its name, the hooks it implements and where it comes from."""

    name: str
    hooks: tuple[str, ...]
    distribution: str
    version: str


@dataclass(frozen=True)
class ModelInfo:
    """A registered model object and the plugin that provides it."""

    model: Model
    plugin: str
    distribution: str
    version: str

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec


def _allowed() -> set[str] | None:
    value = os.environ.get("TRTDET_LOAD_PLUGINS")
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _distribution_name(entry_point: importlib.metadata.EntryPoint) -> str:
    return entry_point.dist.metadata["Name"] if entry_point.dist is not None else "?"


def _selected(
    entry_points: list[importlib.metadata.EntryPoint], allowed: set[str] | None
) -> list[importlib.metadata.EntryPoint]:
    """The entry points ``TRTDET_LOAD_PLUGINS`` lets load (all when unset); warns about names matching none."""
    if allowed is None:
        return entry_points

    def package(entry_point: importlib.metadata.EntryPoint) -> str:
        return entry_point.value.split(":")[0].split(".")[0]

    by_name = [ep for ep in entry_points if ep.name in allowed or _distribution_name(ep) in allowed]
    packages = {package(ep) for ep in by_name if ep.name in allowed}
    chosen = [ep for ep in entry_points if ep in by_name or package(ep) in packages]
    known = {ep.name for ep in entry_points} | {_distribution_name(ep) for ep in entry_points}
    for name in sorted(allowed - known):
        installed = ", ".join(sorted({ep.name for ep in entry_points})) or "none"
        warnings.warn(
            f"TRTDET_LOAD_PLUGINS: {name!r} matches no installed plugin or distribution (installed plugins: {installed})",
            stacklevel=3,
        )
    return chosen


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins and entry-point plugins (once), then check every hook is known."""
    global _loaded
    with _lock:
        if _loaded:
            return pm
        from trtdet.version import __version__

        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            pm.register(module, name=module_name)
            _distributions[module_name] = ("trtdet", __version__)
        entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        selected = _selected(entry_points, _allowed())
        for entry_point in entry_points:
            if entry_point not in selected:  # pluggy's own block: a later register of the name is refused too
                pm.set_blocked(entry_point.name)
        for entry_point in entry_points:
            dist = entry_point.dist
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            if pm.is_blocked(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
                continue
            _distributions[entry_point.name] = (dist_name, dist.version if dist is not None else "?")
            try:
                module = entry_point.load()
                pm.register(module, name=entry_point.name)
            except Exception as exc:  # a broken third-party plugin must not take the others down
                # (an import error, or pluggy refusing a hookimpl whose arguments its spec lacks)
                _leave_out(entry_point.name, exc)
        _check_pending()
        _probe_register_hooks()
        _loaded = True
        return pm


#: Hooks that hand plugins a ``register`` callback; cheap by contract, so probed at load time.
_REGISTER_HOOKS = ("trtdet_register_models", "trtdet_engine_backends", "trtdet_build_steps", "trtdet_register_commands")


def _probe_register_hooks() -> None:
    """Call every entry-point plugin's register hooks once, leaving out those that raise.

    So a plugin whose registration fails is reported (and listed by ``trtdet plugins``) at
    load time, whichever command runs, instead of failing every command that lists models.
    """
    for hook_name in _REGISTER_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in DEFAULT_PLUGINS or pm.get_plugin(impl.plugin_name) is None:
                continue
            try:
                impl.function(register=lambda obj: None)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the plugin out
                _leave_out(impl.plugin_name, exc)


def _problem(exc: BaseException) -> str:
    """One line for a plugin's failure, without pluggy's repr of the whole module."""
    message = re.sub(r" (?:in|of) plugin <[^>]*>", "", str(exc)).strip()
    return f"{type(exc).__name__}: {message}".splitlines()[0]


def _leave_out(name: str, exc: BaseException) -> None:
    """Unregister a broken plugin, remember why (``trtdet plugins`` lists it) and warn once."""
    plugin = pm.get_plugin(name)
    if plugin is not None:  # pluggy may have added some of its hookimpls before refusing one
        pm.unregister(plugin)
    message = _problem(exc)
    _failed[name] = message
    dist_name = _distributions.pop(name, ("?", "?"))[0]
    warnings.warn(f"trtdet plugin {name!r} ({dist_name}) failed to load: {message}", PluginLoadWarning, stacklevel=3)


def _check_pending() -> None:
    """``pm.check_pending()``, leaving out each entry-point plugin it finds a misspelt hook in.

    A hook that is not in trtdet's specs is how a typo shows; it is reported against the
    plugin that has it, and the others load. The core's own plugins must always pass.
    """
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            if name is None or name in DEFAULT_PLUGINS:
                raise
            _leave_out(name, exc)


def register_plugin(plugin: ModuleType | object, name: str, distribution: str = "local") -> None:
    """Register a plugin object at run time (tests, notebooks); it joins the entry-point ones."""
    load_plugins()
    pm.register(plugin, name=name)
    _distributions[name] = (distribution, "-")
    pm.check_pending()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with ``register_plugin``."""
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _distributions.pop(name, None)


def failed_plugins() -> dict[str, str]:
    """Entry-point plugins that could not be imported, with the reason."""
    load_plugins()
    return dict(_failed)


def list_plugins() -> list[PluginInfo]:
    """All registered plugins with the hooks each implements."""
    load_plugins()
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked (TRTDET_LOAD_PLUGINS): not loaded
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        dist, version = _distributions.get(name, ("?", "?"))
        infos.append(PluginInfo(name, hooks, dist, version))
    return sorted(infos, key=lambda info: info.name)


def _collect_registered(
    hook: Any, kind: str, entry: Callable[[Any, str], Any], prepare: Callable[[Any, str], Any] = lambda obj, plugin: obj
) -> dict[str, Any]:
    """Run a register-callback hook; ``entry(obj, plugin_name)`` is kept under ``obj.name``
    (``obj`` as ``prepare(registered, plugin_name)`` returns it).

    A name registered twice is a ``UsageError`` naming both plugins.
    """
    found: dict[str, Any] = {}
    for impl in reversed(hook.get_hookimpls()):
        plugin_name = impl.plugin_name

        def register(obj: Any, plugin_name: str = plugin_name) -> None:
            obj = prepare(obj, plugin_name)
            if obj.name in found:
                raise UsageError(
                    f"{kind} {obj.name!r} is registered twice: by {found[obj.name].plugin!r} and by {plugin_name!r}"
                )
            found[obj.name] = entry(obj, plugin_name)

        before = set(found)
        try:
            impl.function(register=register)
        except UsageError:  # a name registered twice: both plugins are named, nothing is guessed
            raise
        except Exception as exc:  # a plugin's register hook that raises is left out, the rest go on
            for name in set(found) - before:  # with what it registered before raising
                del found[name]
            _leave_out(plugin_name, exc)
    return found


def _registered(kind: str, collect: Callable[[], Any]) -> Any:
    """``collect()`` once per set of registered plugins: register hooks run once, not per lookup.

    The cache is keyed by the registered plugins, so ``register_plugin``/``unregister_plugin``
    (or a plugin left out for failing) make the next lookup collect again.
    """
    key = tuple((name, id(plugin)) for name, plugin in pm.list_name_plugin())
    cached = _cache.get(kind)
    if cached is not None and cached[0] == key:
        return cached[1]
    value = collect()
    _cache[kind] = (tuple((name, id(plugin)) for name, plugin in pm.list_name_plugin()), value)
    return value


def _as_model(obj: Model | ModelSpec, plugin_name: str) -> Model:
    """A registered object as a ``Model``: a bare ``ModelSpec`` (the pre-0.2 contract) is wrapped,
    its decoder then coming from the plugin's ``trtdet_decoder`` hook."""
    if isinstance(obj, Model):
        return obj
    if isinstance(obj, ModelSpec):
        return Model(obj)
    raise TypeError(f"registered {obj!r}: expected a trtdet.Model (or a ModelSpec)")


def list_models() -> dict[str, ModelInfo]:
    """Every registered model by name, with the plugin that provides it (register hooks run once)."""
    load_plugins()

    def entry(model: Model, plugin_name: str) -> ModelInfo:
        dist, version = _distributions.get(plugin_name, ("?", "?"))
        return ModelInfo(model, plugin_name, dist, version)

    def collect() -> dict[str, ModelInfo]:
        return _collect_registered(pm.hook.trtdet_register_models, "model", entry, prepare=_as_model)

    return dict(_registered("models", collect))


def get_model(name: str) -> ModelInfo:
    """The model called ``name``; an unknown name lists the known ones and a close match."""
    models = list_models()
    if name in models:
        return models[name]
    known = ", ".join(sorted(models)) or "none installed"
    close = difflib.get_close_matches(name, list(models), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    broken = [p for p in _failed if name in p or p in name or difflib.get_close_matches(name, [p], n=1, cutoff=0.6)]
    if broken:  # the model may be one of a plugin that failed to load
        hint += "; " + "; ".join(f"plugin {p!r} failed to load: {_failed[p]}" for p in sorted(broken))
    raise UsageError(f"unknown model {name!r} (known: {known}){hint}")


def list_engine_backends() -> dict[str, EngineBackend]:
    """Every registered engine backend by name."""
    load_plugins()
    return dict(_registered("backends", _collect_backends))


def _collect_backends() -> dict[str, EngineBackend]:
    backends: dict[str, EngineBackend] = {}
    given: dict[str, Any] = {}  # the objects plugins registered, before ``complete_backend``

    def register(backend: EngineBackend) -> None:
        if backend.name in given and given[backend.name] is not backend:
            raise UsageError(
                f"engine backend {backend.name!r} is registered twice: by {type(given[backend.name]).__module__} "
                f"and by {type(backend).__module__}"
            )
        given[backend.name] = backend
        backends[backend.name] = complete_backend(backend)

    for impl in reversed(pm.hook.trtdet_engine_backends.get_hookimpls()):
        try:
            impl.function(register=register)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - as for models: a broken plugin is left out
            _leave_out(impl.plugin_name, exc)
    return backends


def list_build_steps() -> dict[str, RegisteredStep]:
    """Every engine build step: those registered models carry (``Model.build_steps``) and those
    plugins register through ``trtdet_build_steps``, by step name."""
    load_plugins()
    models = list_models()

    def collect() -> dict[str, RegisteredStep]:
        def entry(step: BuildStep, plugin_name: str) -> RegisteredStep:
            if step.default not in step.choices:
                raise UsageError(
                    f"build step {step.name!r} of plugin {plugin_name!r}: default {step.default!r} "
                    f"is not among its choices {step.choices}"
                )
            return RegisteredStep(step, plugin_name, _distributions.get(plugin_name, (plugin_name, "?"))[0])

        found = _collect_registered(pm.hook.trtdet_build_steps, "build step", entry)
        for info in models.values():
            for step in info.model.steps():
                if step.name in found:
                    raise UsageError(
                        f"build step {step.name!r} is registered twice: by {found[step.name].plugin!r} and by {info.plugin!r}"
                    )
                found[step.name] = entry(step, info.plugin)
        return found

    return dict(_registered("build steps", collect))


def list_commands() -> dict[str, Any]:
    """The ``trtdet`` subcommands plugins register (``trtdet_register_commands``), by name."""
    load_plugins()

    def collect() -> dict[str, Any]:
        return _collect_registered(pm.hook.trtdet_register_commands, "command", lambda command, plugin: command)

    return dict(_registered("commands", collect))
