"""A tiny name → object registry whose lookup errors list the valid names."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ganrun.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects keyed by their config option name (`model=dcgan` → MODELS.get("dcgan"))."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what the entries are, for messages: "model", "dataset", ...
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("dcgan")`. Duplicate names are rejected."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} '{name}' (choose from: {', '.join(self.names())})"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
