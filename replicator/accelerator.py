"""The optional C accelerator, ``replicator._speedups``, found in one place.

``replicator/_speedups.c`` (built by ``setup.py`` where a C compiler exists; the build is optional)
does what the pure-Python reference code in :mod:`replicator.events`, :mod:`replicator.convert`
and :mod:`replicator.plan` does for well-formed input, several times faster, and answers "not
mine" (None) for anything else, so the reference always decides errors and odd shapes. Without
it everything works the same, slower: another platform's wheel, no compiler, or
``REPLICATOR_PURE_PYTHON=1`` (the tests run both ways; the benchmark reports both).
"""

from __future__ import annotations

import os
from typing import Any


def _load() -> Any:
    if os.environ.get("REPLICATOR_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from replicator import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _speedups


#: the C module (typed Any: it has no stubs), or None where it is not built or turned off
native: Any = _load()


_UNSET = object()


def slot_template(cls: type, operation_filter: Any, *rest: Any, **options: Any) -> Any:
    """How ``cls(operation_filter, *rest, **options)`` fills the slots of a pymongo operation, so
    the C planner can fill them the same way without running ``__init__`` (whose checks, a
    mapping filter and a bool upsert, hold by construction there): ``(descriptors, values,
    filter_index, document_index, unset)``; the planner puts its filter (and document) at those
    indexes and the example's values everywhere else. None when the class is not made of plain
    ``__slots__`` (instances with a ``__dict__``, its own ``__new__``); the C module then calls
    the class. It also compares what it builds with the class's own result before using it."""
    if cls.__new__ is not object.__new__ or cls.__dictoffset__:  # type: ignore[comparison-overlap]
        return None  # its own __new__, or instances with a __dict__
    descriptors: list[Any] = []
    for klass in cls.__mro__[:-1]:
        names = vars(klass).get("__slots__")
        if names is None:
            if klass.__basicsize__ != object.__basicsize__:
                return None  # a base with state of its own (typing.Generic, a C type in 3.12+, has none)
            continue
        for name in (names,) if isinstance(names, str) else names:
            if name == "__dict__":
                return None
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # name mangling
            if name != "__weakref__":
                descriptors.append(vars(klass)[name])
    example = cls(operation_filter, *rest, **options)
    values = tuple(getattr(example, d.__name__, _UNSET) for d in descriptors)
    where = [next((i for i, v in enumerate(values) if v is probe), None)
             for probe in (operation_filter, *rest)]
    if None in where:
        return None
    return tuple(descriptors), values, where[0], where[1] if rest else -1, _UNSET
