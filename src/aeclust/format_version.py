"""The format version of everything a run directory holds (config.json and the checkpoints).

Its own module so that both :mod:`aeclust.config` and :mod:`aeclust.pipeline.rundir`, which imports the configuration,
can read it without importing each other. Bump it when a file of an earlier release would be misread.
"""

FORMAT_VERSION = 1
