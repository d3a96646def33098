"""Dependency waves of an application's statements (Kahn's algorithm, level by level)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from velostream.errors import CircularDependencyError


def dependency_waves(dependencies: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group names into waves: each wave depends only on earlier waves.

    Args:
        dependencies: name -> the names it reads (names outside the mapping are external
            and ignored).

    Returns:
        The waves, names sorted within a wave.

    Raises:
        CircularDependencyError: the dependencies form a cycle (listed first == last).
    """
    remaining = {
        name: {d for d in deps if d in dependencies} for name, deps in dependencies.items()
    }
    waves: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            raise CircularDependencyError(_find_cycle(remaining))
        waves.append(ready)
        for name in ready:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return waves


def _find_cycle(remaining: Mapping[str, set[str]]) -> list[str]:
    # Every remaining node has a remaining dependency: walk until a node repeats.
    node = min(remaining)
    path: list[str] = []
    seen: dict[str, int] = {}
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(remaining[node])
    cycle = path[seen[node] :]
    return [*cycle, cycle[0]]
