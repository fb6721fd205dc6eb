"""The agent's fixed validation images: drawn once with a seed, restored at every boundary."""

from __future__ import annotations

import random

import torch

from basicsr.data import build_dataset
from lossagent_errors import OptionError
from lossagent_arch.padding import pad_to_multiple


def equal_runs(keys: list, max_len: int | None = None):
    """(start, end) of each run of consecutive equal keys (e.g. image shapes), at most `max_len` long:
    images of one shape are batched together, in their order."""
    start = 0
    while start < len(keys):
        end = start + 1
        while end < len(keys) and keys[end] == keys[start] and (max_len is None or end - start < max_len):
            end += 1
        yield start, end
        start = end


class AgentValidationSet:
    """`agent.dataset` (any BasicSR dataset) reduced to `agent.num_images` samples kept in memory.

    Datasets without ground truth (e.g. BasicSR's SingleImageDataset on RealSRSet) are allowed:
    `gts` then holds None per image and only no-reference experts can score them.
    Whole benchmark images rarely divide by a window-attention network's window: inputs are
    reflect-padded to `pad_multiple` and the outputs cropped back (as test.py does).
    """

    def __init__(self, dataset_opt: dict, num_images: int, seed: int, scale: int, pad_multiple: int = 1):
        if not dataset_opt:
            raise OptionError("agent.dataset: missing (BasicSR dataset options for the agent's validation images)")
        if isinstance(pad_multiple, bool) or not isinstance(pad_multiple, int) or pad_multiple < 1:
            raise OptionError(f'agent.pad_multiple must be a positive integer, got {pad_multiple!r}')
        opt = dict(dataset_opt)
        opt.setdefault('phase', 'val')
        opt.setdefault('scale', scale)
        opt.setdefault('name', 'agent_val')
        opt.setdefault('io_backend', {'type': 'disk'})
        dataset = build_dataset(opt)
        if len(dataset) == 0:
            raise OptionError(f"agent.dataset: '{opt['name']}' has no images")
        count = min(int(num_images), len(dataset))
        indices = sorted(random.Random(seed).sample(range(len(dataset)), count))
        samples = [dataset[i] for i in indices]
        self.names = [str(s.get('lq_path', s.get('gt_path', i))) for i, s in zip(indices, samples)]
        self.lqs = [s['lq'] for s in samples]
        self.gts = [s.get('gt') for s in samples]
        self.pad_multiple = pad_multiple

    def __len__(self) -> int:
        return len(self.lqs)

    @property
    def has_gt(self) -> bool:
        return all(gt is not None for gt in self.gts)

    @torch.no_grad()
    def restore(self, net: torch.nn.Module, device, batch_size: int = 16) -> list[torch.Tensor]:
        """One eval-mode pass; images of one shape are batched. The train/eval mode is restored.

        Outputs stay on `device`, next to `self.gts` and the experts.
        """
        if self.has_gt and self.gts[0].device != torch.device(device):
            self.gts = [gt.to(device) for gt in self.gts]
        was_training = net.training
        net.eval()
        outputs: list[torch.Tensor] = []
        try:
            for start, end in equal_runs([lq.shape for lq in self.lqs], batch_size):
                batch = torch.stack(self.lqs[start:end]).to(device)
                padded, (h, w) = (
                    pad_to_multiple(batch, self.pad_multiple) if self.pad_multiple > 1 else (batch, batch.shape[-2:])
                )
                out = net(padded)
                scale = out.shape[-1] // padded.shape[-1]
                outputs.extend(out[..., : h * scale, : w * scale].float().clamp_(0, 1))
        finally:
            net.train(was_training)
        return outputs
