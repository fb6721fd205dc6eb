"""What BasicSR 1.4.2 needs in order to run beside current torch, imported before basicsr.

basicsr's degradations module imports `torchvision.transforms.functional_tensor`, which
torchvision removed in 0.17; the function it needs (`rgb_to_grayscale`) lives in
`torchvision.transforms.functional` now. Importing this module puts the alias in place.

BasicSR registers some of its classes under `<name>_basicsr` and its `registry.get` finds them
by either spelling; `registered`, `lookup` and `unknown_name` look names up the same way.
"""

import sys

try:
    import torchvision.transforms.functional_tensor  # noqa: F401
except ImportError:
    import torchvision.transforms.functional as _functional

    sys.modules['torchvision.transforms.functional_tensor'] = _functional


def registered(registry, name) -> bool:
    """Whether BasicSR's `registry.get(name)` would find `name`."""
    return isinstance(name, str) and (name in registry or f'{name}_basicsr' in registry)


def registered_names(registry) -> list[str]:
    """The names a user may write (BasicSR's `_basicsr` suffix left out), sorted."""
    return sorted({name.removesuffix('_basicsr') for name, _ in registry})


def lookup(registry, name):
    """The class `registry.get(name)` returns, without BasicSR's print about the suffix."""
    return registry._obj_map.get(name) or registry._obj_map[f'{name}_basicsr']


def unknown_name(key: str, what: str, name, registry):
    """The error for a `type` that `registry` does not have (from lossagent_errors)."""
    from lossagent_errors import OptionError, closest

    names = registered_names(registry)
    return OptionError(f"{key}: unknown {what} '{name}'{closest(str(name), names)}; registered: {', '.join(names)}")
