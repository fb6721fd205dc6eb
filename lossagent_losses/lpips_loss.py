"""LPIPS as a training loss (the AIR task's third loss), through the `lpips` package."""

from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """`loss_weight * LPIPS(pred, target)`; inputs in [0, 1] (rescaled to [-1, 1] for lpips).

    The linear heads ship inside the `lpips` package; the backbone (AlexNet/VGG) comes from
    torchvision's cache (`$TORCH_HOME/hub/checkpoints`), which must be filled offline.
    """

    def __init__(self, loss_weight=1.0, net='alex', reduction='mean'):
        super().__init__()
        import lpips

        self.loss_weight = loss_weight
        self.reduction = reduction
        self.lpips = lpips.LPIPS(net=net, verbose=False).eval()
        for p in self.lpips.parameters():
            p.requires_grad = False

    def forward(self, pred, target, **kwargs):
        dist = self.lpips(pred * 2 - 1, target * 2 - 1)
        dist = dist.mean() if self.reduction == 'mean' else dist.sum()
        return self.loss_weight * dist

    def train(self, mode: bool = True):
        super().train(mode)
        self.lpips.eval()  # the frozen network never leaves eval mode
        return self
