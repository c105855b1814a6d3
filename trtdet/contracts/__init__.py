"""The contracts between the core and the engine backends, apart from any implementation.

``engine``: ``EngineBackend``/``Engine`` and what they exchange (``ModelFile``, ``BuildRequest``,
``Artifact``, ``BackendDefaults``); ``build_steps``: the ``BuildStep`` protocol plugins use to
change an engine build; ``output_check``: an engine's outputs against the shapes it declares;
``artifact``: the metadata built engines and packages carry (the file format).
The implementations live in ``trtdet.engines``, which imports these; nothing here imports it.
"""
