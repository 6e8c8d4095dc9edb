"""The registry of the seams: lazy entries, package discovery, clear errors."""

from __future__ import annotations

import importlib
import sys

import pytest

from pareto_bench.core.registry import Registry, UnknownNameError


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Makes throwaway packages on sys.path (``make({module: source}, init=source)``), and
    forgets them after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(modules: dict[str, str], init: str = "") -> str:
        name = f"plugins_{len(made)}"
        folder = tmp_path / name
        folder.mkdir()
        (folder / "__init__.py").write_text(init)
        for module, source in modules.items():
            (folder / f"{module}.py").write_text(source)
        made.append(name)
        return name

    yield make
    for name in [m for m in sys.modules if m.split(".")[0] in made]:
        del sys.modules[name]


def test_discovery_finds_the_entries_that_modules_register_themselves(plugins):
    registers = "from {package} import WIDGETS\nWIDGETS.register({name!r}, {value})\n"
    package = "plugins_0"
    plugins(
        {
            "round": registers.format(package=package, name="round", value=1),
            "square": registers.format(package=package, name="square", value=2),
        },
        init="from pareto_bench.core.registry import Registry\n"
        "WIDGETS = Registry('widget', discover=__name__)\n",
    )
    registry = importlib.import_module(package).WIDGETS
    assert registry.names() == ["round", "square"]
    assert registry.get("square") == 2 and "round" in registry
    with pytest.raises(UnknownNameError, match="Did you mean 'round'"):
        registry.get("rund")


def test_a_module_that_fails_to_import_fails_every_lookup(plugins):
    package = plugins({"broken": "raise ImportError('broken on purpose')\n"})
    registry: Registry[object] = Registry("widget", discover=package)
    for _ in range(2):  # not a half-filled registry the second time
        with pytest.raises(ImportError, match="broken on purpose"):
            registry.names()


def test_one_name_holds_one_entry():
    registry: Registry[object] = Registry("widget")
    entry = object()
    registry.register("w", entry)
    registry.register("w", entry)  # the same object again (a module imported twice) is fine
    with pytest.raises(ValueError, match="widget 'w' is registered twice"):
        registry.register("w", object())


def test_lazy_entries_resolve_on_first_use():
    registry: Registry[object] = Registry("widget")
    registry.register("path", "pathlib:Path")
    from pathlib import Path

    assert registry.get("path") is Path
