"""Shared by the benchmark scripts: timing, machine description, appending to RESULTS.md."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import os
import pathlib
import platform
import sys
import time

import jax

from pvm_mbrl import hostmem
from pvm_mbrl.dreamer.config import DreamerConfig

RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> str:
    """CPU model, core count, JAX device (with its kind on an accelerator), host-memory reuse and
    the current load."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dev = jax.devices()[0]
    kind = "" if dev.platform == "cpu" else f" ({dev.device_kind}, jax {jax.__version__})"
    return (
        f"{cpu}, {os.cpu_count()} cores, jax device {dev}{kind}, host buffers "
        f"{'reused (pvm_mbrl.hostmem)' if hostmem.active() else 'system malloc'}, "
        f"1-min load average at the end {load:.1f} (other jobs share the machine when > 1)"
    )


def append_results(heading: str, notes: list[str], rows: list[str]) -> None:
    """Appends a dated block (machine, command, notes, table rows) under ``heading``."""
    date = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    cmd = "python " + " ".join([pathlib.Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    block = ["", f"### {date}", "", f"- machine: {machine()}", f"- command: `{cmd}`"]
    block += [f"- {n}" for n in notes] + ["", *rows, ""]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if heading not in text:
        text = text.rstrip("\n") + "\n\n" + heading + "\n" + "\n".join(block)
    else:
        start = text.index(heading) + len(heading)
        nxt = text.find("\n## ", start)
        end = len(text) if nxt < 0 else nxt
        text = text[:end].rstrip("\n") + "\n" + "\n".join(block) + text[end:]
    RESULTS.write_text(text)
    print(f"appended to {RESULTS}")


def overrides(items: list[str], config_class=DreamerConfig) -> dict:
    """``["deter=256", "mults=(1,2)"]`` -> keyword overrides of ``config_class`` (a dataclass;
    values are Python literals)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(
                f"--set expects FIELD=VALUE with a {config_class.__name__} field, got {item!r}"
            )
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out
