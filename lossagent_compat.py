"""Imported before basicsr: makes basicsr 1.4.2 importable with current torchvision.

basicsr's degradations module imports `torchvision.transforms.functional_tensor`, which
torchvision removed in 0.17; the function it needs (`rgb_to_grayscale`) lives in
`torchvision.transforms.functional` now.
"""
import sys

try:
    import torchvision.transforms.functional_tensor  # noqa: F401
except ImportError:
    import torchvision.transforms.functional as _functional
    sys.modules['torchvision.transforms.functional_tensor'] = _functional
