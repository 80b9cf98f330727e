"""Imports point one way: the console and the API read the queue layer, never the reverse.

Each room's modules are parsed (never imported) and every first-party import is followed,
including imports inside functions, so that a rule also holds through a third module: the
queue layer may not reach the console by way of ``kgc.queues`` either.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

FIRST_PARTY = ("kgc", "compliance", "notifications")

# (room, what it must never import, directly or through other first-party modules)
RULES = [
    ("kgc.queue", ("kgc.console", "kgc.api", "compliance", "notifications")),
    # The two interfaces over the queue layer stay independent of each other.
    ("kgc.console", ("kgc.api",)),
    ("kgc.api", ("kgc.console",)),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, *, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The first-party modules a module's source imports, anywhere in it (``from kgc import x``
    counts as ``kgc.x`` when ``kgc.x`` is a module; relative imports are resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {name for name in found if name.split(".")[0] in FIRST_PARTY}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each first-party module and the first-party modules it imports."""
    paths = {
        module_name(path, root): path
        for package in FIRST_PARTY
        for path in (root / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    known = set(paths)
    return {
        name: imported(path.read_text(), module=name, is_package=path.name == "__init__.py", known=known)
        for name, path in paths.items()
    }


def within(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


def violations(graph: dict[str, set[str]], room: str, forbidden: tuple[str, ...]) -> Iterator[list[str]]:
    """Each import chain from a module of ``room`` to a forbidden one (the shortest per module)."""
    for start in sorted(name for name in graph if within(name, room)):
        seen = {start}
        queue = deque([[start]])
        while queue:
            chain = queue.popleft()
            for target in sorted(graph.get(chain[-1], ())):
                if any(within(target, banned) for banned in forbidden):
                    yield [*chain, target]
                    queue.clear()
                    break
                if target not in seen:
                    seen.add(target)
                    queue.append([*chain, target])


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


@pytest.mark.parametrize(("room", "forbidden"), RULES, ids=[room for room, _ in RULES])
def test_room_imports_point_one_way(graph, room, forbidden):
    chains = [" -> ".join(chain) for chain in violations(graph, room, forbidden)]
    assert not chains, f"{room} must not import {', '.join(forbidden)}:\n" + "\n".join(chains)


def test_the_graph_sees_the_imports_the_rules_are_about(graph):
    # Were the parser blind, the rules above would pass on an empty graph.
    assert "kgc.queue.jobs" in graph["kgc.console.dashboard"]
    assert "kgc.queue.jobs" in graph["kgc.api.views"]
    assert "kgc.queue.health" in graph["kgc.console.collector"]
    assert "kgc.queue.process" in graph["kgc.queue.app"]  # an import inside a function
    assert "kgc.queues" in graph["kgc.queue.worker"]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from kgc.console import display", {"kgc.console", "kgc.console.display"}),
        ("from kgc import console", {"kgc", "kgc.console"}),
        ("import kgc.api.views", {"kgc.api.views"}),
        ("def f():\n    from notifications import services", {"notifications", "notifications.services"}),
        ("from ..console import display", {"kgc.console", "kgc.console.display"}),
        ("from . import sql", {"kgc.queue", "kgc.queue.sql"}),
        ("import json\nfrom django.db import models", set()),
    ],
)
def test_imports_are_found_in_every_form(source, found):
    known = {"kgc.console", "kgc.console.display", "kgc.api.views", "notifications.services", "kgc.queue.sql"}
    assert imported(source, module="kgc.queue.jobs", is_package=False, known=known) == found


def test_a_chain_through_another_module_is_a_violation():
    graph = {"kgc.queue.jobs": {"kgc.queues"}, "kgc.queues": {"kgc.console.views"}, "kgc.console.views": set()}
    assert list(violations(graph, "kgc.queue", ("kgc.console",))) == [
        ["kgc.queue.jobs", "kgc.queues", "kgc.console.views"]
    ]
