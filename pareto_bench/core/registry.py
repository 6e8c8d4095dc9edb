"""One small registry, shared by the five seams: models, tasks, trackers, executors and samplers.

Entries may be objects or lazy ``"module:Attr"`` strings, so that heavy imports (torch,
mlflow) stay out of code paths that do not need them. A registry made with ``discover=PACKAGE``
imports that package's modules the first time it is asked for a name, so that a new entry is
one new module that registers itself, with no list to edit elsewhere.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A registry lookup failed; the message lists the valid names and the closest one."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, *, discover: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._package = discover  # imported on the first lookup; None: nothing to discover
        self._discovering = threading.RLock()  # re-entrant: a module may look names up

    def _discover(self) -> None:
        if self._package is None:
            return
        with self._discovering:  # no thread sees the registry half filled
            package = self._package
            if package is None:
                return
            for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
                importlib.import_module(f"{package}.{module.name}")
            self._package = None  # only once every module imported: a failure is raised again

    def register(self, name: str, entry: T | str | None = None) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, act as a decorator."""
        if entry is not None:
            self._add(name, entry)
            return entry

        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def _add(self, name: str, entry: T | str) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(sorted(self._entries))}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries


def lazy(target: str) -> Callable[[], Any]:
    """Resolve a ``"module:Attr"`` string when called."""
    module_name, _, attr = target.partition(":")
    return lambda: getattr(importlib.import_module(module_name), attr)
