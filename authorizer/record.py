"""The gate's value classes: fields in `__slots__`, compared, hashed and shown by them, frozen after `__init__`.

What `@dataclass(frozen=True)` gives, without its cost at import: a dataclass
generates the source of its methods and compiles it when its class is made
(measured: about 0.4 ms a class, 14 classes a twentieth of the handler's cold
start). A subclass lists its fields in `__slots__` (sorted, as ruff wants them:
the order of its repr) and sets each in its `__init__` with `setfield`
(assignment raises, as on a frozen dataclass).
"""

from typing import Any

setfield = object.__setattr__  # what a frozen dataclass's __init__ calls too


class Record:
    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record) and other.__class__ is self.__class__:
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {self.__class__.__qualname__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {self.__class__.__qualname__} is frozen")
