"""Registries by name, the way BasicSR registers architectures, plus "did you mean".

`Registry` keeps BasicSR's interface (`register` as a decorator or a call, `get`, `in`, iteration
over `(name, obj)`), so a newcomer who added an arch to BasicSR adds a policy or an expert the same
way. It lives here because `agent/` is pure Python (BasicSR's own class cannot be imported without
torch); an unknown name is a one-line `OptionError` naming the option key and the closest name.
`import_modules` imports every `*_<suffix>.py` of a folder, as BasicSR scans `*_arch.py`, so a new
file registers itself by being there.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from collections.abc import Callable

from lossagent_errors import OptionError, closest


class Registry:
    def __init__(self, name: str, option_key: str):
        self.name = name  # what is registered, for messages: 'policy'
        self.option_key = option_key  # where users name it: 'agent.policy.type'
        self._obj_map: dict[str, object] = {}

    def _do_register(self, name: str, obj) -> None:
        if name in self._obj_map:
            raise KeyError(
                f"{self.name} '{name}' is already registered by {getattr(self._obj_map[name], '__module__', '?')}"
            )
        self._obj_map[name] = obj

    def register(self, obj=None, name: str | None = None) -> Callable:
        """`@REG.register()` (the class's `name` attribute or __name__), `@REG.register(name='x')`,
        or `REG.register(obj)`."""

        def wrap(target):
            self._do_register(name or getattr(target, 'name', None) or target.__name__, target)
            return target

        return wrap if obj is None else wrap(obj)

    def get(self, name, key: str | None = None):
        """The object registered as `name`; `key` names the option where it differs per entry
        (`agent.experts.<name>.type`)."""
        if name not in self._obj_map:
            raise OptionError(
                f"{key or self.option_key}: unknown {self.name} '{name}'"
                f'{closest(str(name), self._obj_map)}; choose one of {self.keys()}'
            )
        return self._obj_map[name]

    def __contains__(self, name) -> bool:
        return name in self._obj_map

    def __iter__(self):
        return iter(self._obj_map.items())

    def keys(self) -> list[str]:
        return sorted(self._obj_map)


def import_modules(package_file: str, package: str, suffix: str) -> list[str]:
    """Import every `*_<suffix>.py` beside `package_file` (a package's `__init__.py`) as `package.<module>`."""
    names = sorted(p.stem for p in Path(package_file).parent.glob(f'*_{suffix}.py'))
    for module in names:
        importlib.import_module(f'{package}.{module}')
    return names
