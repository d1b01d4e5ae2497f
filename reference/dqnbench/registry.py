"""Implementations by name: the entry-point group `dqnbench.implementations`.

An implementation is one layered pair. Its `DQNAdapter` lists the pieces (network, targets, memory,
schedule, screen, ...) that the conformance kit checks one by one; its `TrainingParts` are what
`dqnbench train` plugs into the training loop. Either may be absent: an adapter alone is checked and
benchmarked piece by piece, parts alone train. The benchmarks time the pieces both supply.

A package registers its own in its `pyproject.toml`::

    [project.entry-points."dqnbench.implementations"]
    mydqn = "mypkg.dqn:IMPLEMENTATION"

The object named there is an `Implementation`, a bare `DQNAdapter`, or a zero-argument callable returning
either; it is imported only when that name is asked for. Then `dqnbench train --impl mydqn`,
`dqnbench check --dqn-impl mydqn` and the benchmarks (every registered implementation is a benchmark
subject) accept it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dqnbench.conformance.adapter import DQNAdapter
    from dqnbench.parts import TrainingParts

GROUP = "dqnbench.implementations"


class UnknownImplementation(ValueError):
    """A name no installed package registers, or an entry point that does not load to an implementation."""


@dataclass(frozen=True)
class Implementation:
    """One DQN implementation as every dqnbench job sees it."""

    name: str
    """The registered name (`--impl`, benchmark ids, the conformance matrix)."""
    parts: TrainingParts | None = None
    """What the training loop plugs in; None: the implementation cannot be trained by `dqnbench train`."""
    adapter: DQNAdapter | None = None
    """The pieces the conformance kit checks; None: it cannot be checked."""

    def __post_init__(self) -> None:
        if self.parts is None and self.adapter is None:
            raise TypeError(f"Implementation({self.name!r}) supplies neither parts nor an adapter; give one or both")

    def require_parts(self) -> TrainingParts:
        if self.parts is None:
            raise UnknownImplementation(
                f"implementation {self.name!r} registers only a conformance adapter, so it cannot be trained; "
                "give its Implementation `parts` (dqnbench.parts.TrainingParts) to train it"
            )
        return self.parts

    def require_adapter(self) -> DQNAdapter:
        if self.adapter is None:
            raise UnknownImplementation(
                f"implementation {self.name!r} registers no conformance adapter, so the kit cannot check it; "
                "give its Implementation an `adapter` (dqnbench.conformance.adapter.DQNAdapter)"
            )
        return self.adapter


@functools.cache
def _entry_points() -> dict[str, metadata.EntryPoint]:
    # Read once per process, like imports: scanning every installed distribution's metadata costs milliseconds,
    # and every DQNConfig checks its `impl` against these names.
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=GROUP):
        # The first distribution on sys.path wins, as for imports.
        found.setdefault(point.name, point)
    return found


def names() -> list[str]:
    """Registered names, sorted; reads package metadata only (nothing is imported)."""
    return sorted(_entry_points())


def refresh() -> None:
    """Forget the registrations read so far, e.g. after a package was put on `sys.path` in this process."""
    _entry_points.cache_clear()
    load.cache_clear()


@functools.cache
def load(name: str) -> Implementation:
    """The implementation registered as `name`, imported on first use."""
    points = _entry_points()
    if name not in points:
        raise UnknownImplementation(
            f"no implementation is registered as {name!r}; registered: {', '.join(sorted(points)) or 'none'}. "
            f"A package registers one under the entry-point group {GROUP!r} (docs/design.md)"
        )
    point = points[name]
    try:
        loaded: Any = point.load()
    except Exception as error:
        raise UnknownImplementation(
            f"implementation {name!r} ({point.value}) failed to import: {type(error).__name__}: {error}; "
            "fix or reinstall the package that registers it"
        ) from error
    return as_implementation(loaded, name, origin=point.value)


def as_implementation(loaded: Any, name: str, origin: str) -> Implementation:
    """An `Implementation` from what an entry point names: one, a `DQNAdapter`, or a factory of either."""
    from dqnbench.conformance.adapter import DQNAdapter

    if callable(loaded) and not isinstance(loaded, Implementation | DQNAdapter | type):
        loaded = loaded()
    if isinstance(loaded, DQNAdapter):
        return Implementation(name=name, adapter=loaded)
    if not isinstance(loaded, Implementation):
        raise UnknownImplementation(
            f"implementation {name!r} ({origin}) is a {type(loaded).__name__}; point the entry point at a "
            "dqnbench.registry.Implementation, a DQNAdapter, or a function returning one"
        )
    if loaded.name != name:
        raise UnknownImplementation(
            f"the entry point {name!r} ({origin}) loads an Implementation named {loaded.name!r}; "
            "register it under its own name or rename it"
        )
    return loaded
