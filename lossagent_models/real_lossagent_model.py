"""RealLossAgentModel: LossAgentModel trained on Real-ESRGAN's second-order synthetic degradations (RISR).

BasicSR's `RealESRGANDataset` gives HR crops plus blur/sinc kernels; `RealESRGANModel.feed_data`
turns them into degraded LR on the device (blur, resize, noise, JPEG, twice, then sinc) and keeps
a training-pair pool. That code is reused as is -- `feed_data` and `_dequeue_and_enqueue` are
BasicSR's functions called on this model -- so the degradations stay exactly BasicSR's. Only what
BasicSR hard-codes for CUDA is replaced: the JPEG/USM modules and the pool are put on
`self.device`, so the model also runs on CPU (tests) and with `num_gpu: 0`; and DiffJPEG's
output is made contiguous (with current torch it is not, and BasicSR's `filter2D` calls `.view`
on it: the second blur would fail at the first iteration).

Real-ESRGAN's sharpened-GT switches are honoured per role of the loss repository:
`l1_gt_usm` (pixel losses), `percep_gt_usm` (perceptual losses), `gan_gt_usm` (the
discriminator's real images); defaults as in Real-ESRGAN's x4plus options (true, true, false).
"""

from __future__ import annotations

import torch

from basicsr.models.realesrgan_model import RealESRGANModel
from basicsr.utils import DiffJPEG, USMSharp
from basicsr.utils.registry import MODEL_REGISTRY

from .lossagent_model import LossAgentModel
from lossagent_errors import OptionError

# The top-level options RealESRGANModel.feed_data reads (Real-ESRGAN's option files put them there).
DEGRADATION_KEYS = (
    'resize_prob',
    'resize_range',
    'gaussian_noise_prob',
    'noise_range',
    'poisson_scale_range',
    'gray_noise_prob',
    'jpeg_range',
    'second_blur_prob',
    'resize_prob2',
    'resize_range2',
    'gaussian_noise_prob2',
    'noise_range2',
    'poisson_scale_range2',
    'gray_noise_prob2',
    'jpeg_range2',
    'gt_size',
)
USM_DEFAULTS = {'l1_gt_usm': True, 'percep_gt_usm': True, 'gan_gt_usm': False}


class ContiguousJPEG(torch.nn.Module):
    """BasicSR's DiffJPEG with a contiguous output (the next `filter2D` views it)."""

    def __init__(self):
        super().__init__()
        self.jpeg = DiffJPEG(differentiable=False)

    def forward(self, x, quality):
        return self.jpeg(x, quality=quality).contiguous()


@MODEL_REGISTRY.register()
class RealLossAgentModel(LossAgentModel):
    def __init__(self, opt):
        if opt.get('is_train', True) and opt.get('high_order_degradation', True):
            missing = [k for k in DEGRADATION_KEYS if k not in opt]
            if missing:
                raise OptionError(
                    f'{missing[0]}: required top-level option of RealLossAgentModel (Real-ESRGAN '
                    f'degradations; missing {missing})'
                )
            batch = (opt.get('datasets') or {}).get('train', {}).get('batch_size_per_gpu')
            queue_size = opt.get('queue_size', 180)
            if batch and queue_size % batch:
                raise OptionError(
                    f'queue_size: {queue_size} must be a multiple of datasets.train.batch_size_per_gpu ({batch})'
                )
        super().__init__(opt)
        self.jpeger = ContiguousJPEG().to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)
        self.queue_size = opt.get('queue_size', 180)

    # BasicSR's synthesis, unchanged (it calls self._dequeue_and_enqueue below).
    feed_data = RealESRGANModel.feed_data

    @torch.no_grad()
    def _dequeue_and_enqueue(self):
        if not hasattr(self, 'queue_lr'):  # BasicSR allocates the pool with .cuda(): allocate it here instead
            b, c, h, w = self.lq.size()
            self.queue_lr = torch.zeros(self.queue_size, c, h, w, device=self.device)
            _, c, h, w = self.gt.size()
            self.queue_gt = torch.zeros(self.queue_size, c, h, w, device=self.device)
            self.queue_ptr = 0
        RealESRGANModel._dequeue_and_enqueue(self)

    def _usm(self, key: str) -> bool:
        return bool(self.opt.get(key, USM_DEFAULTS[key]))

    def training_inputs(self) -> dict:
        return {**super().training_inputs(), 'gt_usm': self.gt_usm}

    def loss_targets(self) -> dict:
        return {
            'pixel': self.gt_usm if self._usm('l1_gt_usm') else self.gt,
            'perceptual': self.gt_usm if self._usm('percep_gt_usm') else self.gt,
        }

    def discriminator_real(self) -> torch.Tensor:
        return self.gt_usm if self._usm('gan_gt_usm') else self.gt

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # BasicSR validation sets come with their own LQ: no synthesis there (as RealESRGANModel does)
        self.is_train = False
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.is_train = True
