"""Light data classes for the modules `pyrec record` loads: the subset of `dataclasses` they
use, `@dataclass` / `@dataclass(frozen=True)` with defaults and `field(default_factory=...)`,
without its import cost (`dataclasses` imports `inspect`, `ast`, `dis`, `tokenize`: ~9 ms,
more than half of the command's start-up; tests/test_imports.py guards it).

Generated like the standard decorator: `__init__` (positional or keyword, defaults and
factories), `__repr__`, `__eq__` (same class, fields in order), and for frozen classes
`__hash__` and a `__setattr__`/`__delattr__` that raise `FrozenInstanceError` (an
AttributeError). Fields are the class's own annotations in order (inherited from a light data
base class first); annotations are not evaluated. `fields(obj)` lists the field names.
Anything else (slots, kw_only, ordering, __post_init__, asdict) is not provided: modules
that need it use `dataclasses`.
"""
from __future__ import annotations

__all__ = ["dataclass", "field", "fields", "FrozenInstanceError"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    # Type checkers see the standard decorator, whose behaviour this one follows.
    from dataclasses import FrozenInstanceError, dataclass, field

_MISSING = object()
_FIELDS = "__lightdata_fields__"


class _FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen light data class."""


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: object, default_factory: object) -> None:
        self.default = default
        self.default_factory = default_factory


def _field(*, default: object = _MISSING, default_factory: Callable[[], object] | object = _MISSING
          ) -> object:
    """A field's default (`default=`) or a callable making one per instance (`default_factory=`)."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory)


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a light data class or instance, in order."""
    try:
        return tuple(getattr(obj, _FIELDS))
    except AttributeError:
        raise TypeError("must be called with a light data class or instance") from None


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise _FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise _FrozenInstanceError(f"cannot delete field {name!r}")


def _process(cls: type, frozen: bool) -> type:
    names: list[str] = list(getattr(cls, _FIELDS, ()))
    defaults: dict[str, object] = {}
    factories: dict[str, object] = {}
    for base in reversed(cls.__mro__[1:]):
        defaults.update(getattr(base, "__lightdata_defaults__", {}))
        factories.update(getattr(base, "__lightdata_factories__", {}))
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(ann, str) and ann.replace("typing.", "").startswith("ClassVar"):
            continue
        if name not in names:
            names.append(name)
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            if value.default_factory is not _MISSING:
                factories[name] = value.default_factory
                defaults.pop(name, None)
                delattr(cls, name)
            elif value.default is not _MISSING:
                defaults[name] = value.default
                factories.pop(name, None)
                setattr(cls, name, value.default)
            else:
                delattr(cls, name)
        elif value is not _MISSING:
            if isinstance(value, (list, dict, set)):
                raise ValueError(f"mutable default {type(value).__name__} for field {name} "
                                 "is not allowed: use default_factory")
            defaults[name] = value
            factories.pop(name, None)
    params, body = [], []
    seen_default = False
    globs: dict[str, object] = {"_MISSING": _MISSING, "_setattr": object.__setattr__}
    for name in names:
        if name in factories:
            globs[f"_f_{name}"] = factories[name]
            params.append(f"{name}=_MISSING")
            value = f"_f_{name}() if {name} is _MISSING else {name}"
            seen_default = True
        elif name in defaults:
            globs[f"_d_{name}"] = defaults[name]
            params.append(f"{name}=_d_{name}")
            value = name
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
            params.append(name)
            value = name
        body.append(f"  _setattr(self, {name!r}, {value})" if frozen
                    else f"  self.{name} = {value}")
    src = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "  pass") + "\n"
    local: dict[str, object] = {}
    exec(src, globs, local)  # noqa: S102  (generated from the class's own field names)
    init = local["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    fnames = tuple(names)

    def __repr__(self: object) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in fnames)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in fnames)

    setattr(cls, _FIELDS, fnames)
    cls.__lightdata_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__lightdata_factories__ = factories  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    cls.__eq__ = __eq__  # type: ignore[method-assign]
    cls.__match_args__ = fnames  # type: ignore[attr-defined]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
        cls.__hash__ = lambda self: hash(tuple(getattr(self, n) for n in fnames))  # type: ignore[method-assign]
    else:
        cls.__hash__ = None  # type: ignore[assignment]  # mutable and comparable: unhashable
    return cls


def _dataclass(cls: type | None = None, /, *, frozen: bool = False) -> object:
    """`@dataclass` or `@dataclass(frozen=True)`."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


if not TYPE_CHECKING:
    dataclass, field, FrozenInstanceError = _dataclass, _field, _FrozenInstanceError
