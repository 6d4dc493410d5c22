"""The one way a package defers imports: names in its `__init__` that import their module on first use.

`import mtu` and `mtu --help` must not wait for torch and diffusers (BENCHMARKS.md section 10), so package
`__init__` files name what they export and where it lives, and PEP 562's module `__getattr__` imports it
when first used (diffusers' `_LazyModule` in `utils/import_utils.py`, smaller). Modules themselves import
at the top.

    __getattr__, __dir__ = lazy_exports(__name__, {"MTUModel": "mtu.model"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose `exports` maps each name to the module defining it.

    A name's value is stored in the package once imported, so later lookups skip `__getattr__`.
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
