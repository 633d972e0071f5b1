"""A small registry: a dict plus a decorator that refuses duplicate names."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factories).

    Args:
        kind: What is registered, used in error messages ("transform family", "model", ...).

    Example:
        >>> models = Registry("model")
        >>> @models.register("tiny")
        ... def tiny(): return 1
        >>> models.names()
        ['tiny']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a name can be registered only once."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str, *, argument: str | None = None) -> T:
        """Returns the object registered as ``name``; unknown names list the valid ones.

        Args:
            name: A registered name.
            argument: The caller's argument name, to start the error message with.
        """
        if not isinstance(name, str) or name not in self._items:
            prefix = f"{argument}: " if argument else ""
            raise ValueError(
                f"{prefix}unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
