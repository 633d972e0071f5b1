"""The one registry mechanism: a dict plus a decorator that takes the name from the definition.

Families, distortions, tasks, models, data sources and backbones all register through
:class:`Registry`. The name comes from the object itself: its ``name`` attribute when it has a
string one (classes, instances), otherwise its ``__name__`` (functions); ``name=`` overrides it.
Each registry lives in a leaf module (the base module of what it holds): plug-ins import that leaf
and register themselves, and the package ``__init__`` imports the plug-ins, so there are no cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


def name_of(obj: Any) -> str:
    """The name ``obj`` registers under: its string ``name`` attribute, else its ``__name__``.

    Raises:
        TypeError: ``obj`` has neither.
    """
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(obj, "__name__", None)
    if isinstance(name, str) and name:
        return name
    raise TypeError(f"obj: expected a definition with a string `name` attribute or a __name__, got {obj!r}")


class Registry(Generic[T]):
    """Maps names to objects (classes, factories or instances).

    Args:
        kind: What is registered, used in error messages ("transform family", "model", ...).

    Example:
        >>> models = Registry("model")
        >>> @models.register
        ... def tiny(): return 1
        >>> @models.register(name="tiny-2")
        ... def tiny2(): return 2
        >>> models.names()
        ['tiny', 'tiny-2']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @overload
    def register(self, obj: T, *, name: str | None = None) -> T: ...

    @overload
    def register(self, obj: str | None = None, *, name: str | None = None) -> Callable[[T], T]: ...

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Adds ``obj`` under its own name (see :func:`name_of`) or ``name``; a name is taken once.

        Used bare (``@registry.register``), with an override (``@registry.register(name="x")``) or
        called on an object (``registry.register(instance)``). A string as the first argument is the
        name (``@registry.register("x")``), as before.

        Raises:
            ValueError: the name is already registered.
        """
        if isinstance(obj, str):
            obj, name = None, obj

        def decorator(item: T) -> T:
            key = name if name is not None else name_of(item)
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = item
            return item

        return decorator if obj is None else decorator(obj)

    def get(self, name: str, *, argument: str | None = None) -> T:
        """Returns the object registered as ``name``; unknown names list the valid ones.

        Args:
            name: A registered name.
            argument: The caller's argument name, to start the error message with.
        """
        if not isinstance(name, str) or name not in self._items:
            prefix = f"{argument}: " if argument else ""
            raise ValueError(f"{prefix}unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, sorted by name."""
        return [(key, self._items[key]) for key in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
