"""How a LossAgent run starts: the option checks made before anything is written, and the places
where BasicSR 1.4.2 assumes CUDA or an old launcher, replaced for CPU, gloo and resumed runs."""

import lossagent_compat  # noqa: F401  (before basicsr)
