"""Every `*_model.py` in this folder is imported, so its `@*_REGISTRY.register()` runs (as in BasicSR)."""

import importlib
import pkgutil

import lossagent_compat  # noqa: F401  (before basicsr)

for _module in pkgutil.iter_modules(__path__):
    if _module.name.endswith('_model'):
        importlib.import_module(f'{__name__}.{_module.name}')
