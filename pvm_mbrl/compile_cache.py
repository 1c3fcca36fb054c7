"""JAX's persistent compilation cache, on in every program pvm_mbrl runs.

XLA compiles dominate short runs (40-120 s per agent function on a GPU, 10-30 s on a CPU), and
a run compiles the same programs as the last one with the same shapes. ``pvm_mbrl.setup()``
(which ``experiment.run``, the examples, the benchmarks and the tests call; importing the
library does not) therefore points JAX's own on-disk cache (``jax_compilation_cache_dir``) at a
user cache folder, unless the user chose one:

- ``PVM_MBRL_JAX_CACHE=/path`` uses that folder; ``PVM_MBRL_JAX_CACHE=off`` (or ``0``, ``none``,
  empty) turns the cache off;
- a cache folder already set through JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept;
- otherwise ``$XDG_CACHE_HOME/pvm_mbrl/jax`` (default ``~/.cache/pvm_mbrl/jax``).

The cache is safe when anything changes: JAX keys each entry by a hash of the lowered program,
the compile options, the XLA flags, the jax/jaxlib versions and the device kind, so a changed
config, shape, flag or version compiles afresh and never reuses a stale program. Programs that
compile in under half a second are not stored (re-compiling them is cheaper than the file). On
GPUs the autotuning results are cached alongside (JAX's ``jax_persistent_cache_enable_xla_caches``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re

ENV = "PVM_MBRL_JAX_CACHE"
_OFF = ("", "0", "off", "none", "false")
MIN_COMPILE_SECS = 0.5


def default_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/pvm_mbrl/jax`` (``~/.cache/pvm_mbrl/jax`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "pvm_mbrl" / "jax"


def enable(directory: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turns the persistent compilation cache on; returns its folder (None: left off).

    ``directory`` None applies the rules of the module docstring; a path uses that folder.
    """
    import jax

    if directory is None:
        setting = os.environ.get(ENV)
        if setting is not None and setting.strip().lower() in _OFF:
            return None
        if setting is None and jax.config.jax_compilation_cache_dir:
            return pathlib.Path(jax.config.jax_compilation_cache_dir)  # the user's own choice
        directory = setting if setting is not None else default_dir()
    path = pathlib.Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # read-only home, full disk: run without the cache, say why
        import warnings

        warnings.warn(
            f"pvm_mbrl: no persistent compilation cache ({path}: {err.strerror}); set "
            f"{ENV} to a writable folder, or {ENV}=off",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return path


def directory() -> pathlib.Path | None:
    """The cache folder JAX uses now (None: no persistent cache)."""
    import jax

    d = jax.config.jax_compilation_cache_dir
    return pathlib.Path(d) if d else None


@dataclasses.dataclass(frozen=True)
class Compile:
    """One program JAX compiled (or read from the persistent cache)."""

    name: str
    seconds: float
    cache_hit: bool


class CompileLog:
    """Records every program compiled inside ``with CompileLog() as log:`` in ``log.compiles``.

    JAX reports compiles only through its log (``jax_log_compiles``); this turns that on for the
    block and reads the records instead of letting them reach the console. Eager operations
    count too (each op compiles once per shape), so ``log.named("_train_chunk")`` picks one.
    """

    _DONE = re.compile(r"Finished XLA compilation of (.+?) in ([0-9.eE+-]+) sec")
    _HIT = re.compile(r"Persistent compilation cache hit for '(.+?)'")

    def __init__(self):
        self.compiles: list[Compile] = []
        self._hits: set[str] = set()

    def named(self, part: str) -> list[Compile]:
        """The compiles whose name contains ``part``."""
        return [c for c in self.compiles if part in c.name]

    def __enter__(self) -> CompileLog:
        import jax

        log = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                log._read(record.getMessage())

        self._logger = logging.getLogger("jax")
        self._saved = (jax.config.jax_log_compiles, self._logger.propagate, self._logger.level)
        self._handler = Handler(logging.DEBUG)
        self._logger.addHandler(self._handler)
        self._logger.propagate = False
        self._logger.setLevel(logging.WARNING)
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc) -> None:
        import jax

        jax.config.update("jax_log_compiles", self._saved[0])
        self._logger.removeHandler(self._handler)
        self._logger.propagate, level = self._saved[1], self._saved[2]
        self._logger.setLevel(level)

    def _read(self, message: str) -> None:
        hit = self._HIT.search(message)
        if hit:  # "jit_name" here, "jit(name)" in the message that follows
            self._hits.add(hit.group(1))
            return
        done = self._DONE.search(message)
        if done:
            name = done.group(1)
            key = re.sub(r"[()]", "_", name).rstrip("_")
            cached = key in self._hits
            self._hits.discard(key)
            self.compiles.append(Compile(name, float(done.group(2)), cached))
