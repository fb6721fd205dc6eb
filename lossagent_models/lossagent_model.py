"""LossAgentModel: BasicSR's SRGANModel trained with a loss repository whose weights an agent sets.

Differences from SRGANModel, all driven by the options YAML:
- the losses come from `train.losses` (any number of named BasicSR losses), or from
  SRGANModel's pixel_opt/perceptual_opt/gan_opt, so its option files train unchanged;
- no discriminator is built when the repository has no adversarial loss;
- with an `agent` section, a StageHook rewrites the weights every `agent.stage_iters`
  iterations (before BasicSR saves a checkpoint at the same iteration), and its state is
  saved in the training state so `--auto_resume` continues the same trajectory;
- the training state also holds the RNG states, and a non-finite loss skips the update and is
  reported (once per kind) with its iteration instead of spreading NaN into the weights;
- a checkpoint's files are written atomically and verified, with a manifest written last
  (checkpoint_files.py), so `--auto_resume` can tell a whole checkpoint from a damaged one.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import torch

from basicsr.archs import build_network
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from . import training_snapshot
from .checkpoint_files import remove_checkpoint, save_verified, write_manifest
from .loss_repository import LossRepository
from .rng_state import every_rank_host_rng_state, restore_rank_host_rng_state, seed_iteration
from .training_specs import specs_of
from lossagent_arch.padding import pad_to_multiple
from lossagent_hook.stage_hook import StageHook
from lossagent_errors import OptionError, WriteError

LEGACY_ATTRIBUTES = {'cri_pix': ('L1', 'MSE', 'Charbonnier', 'Pixel'), 'cri_perceptual': ('Perceptual',)}


@MODEL_REGISTRY.register()
class LossAgentModel(SRGANModel):
    def init_training_settings(self):
        train_opt = self.opt['train']
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            self._build_ema()
        specs = specs_of(self.opt)  # parsed once by preflight (training_specs.py)
        self.losses = LossRepository(train_opt, self.device, specs.losses)
        if specs.agent is not None and specs.agent.initial_weights is not None:
            self.losses.set_weights(specs.initial_weights)
        self._expose_legacy_criteria()
        self.net_d = None
        if self.losses.adversarial is not None:
            self._build_discriminator()
        self.net_g.train()
        self.net_d_iters = train_opt.get('net_d_iters', 1)
        self.net_d_init_iters = train_opt.get('net_d_init_iters', 0)
        self.setup_optimizers()
        self.setup_schedulers()
        self.nonfinite_reported: set[str] = set()
        self.skipped_updates = 0
        self.agent = None
        if specs.agent is not None:
            self.agent = StageHook(
                self.opt, specs.agent, specs.experts, self.losses, self.device, self.opt['path']['experiments_root']
            )

    def _build_ema(self):
        get_root_logger().info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def _build_discriminator(self):
        if not self.opt.get('network_d'):
            raise OptionError(
                f'network_d: the loss repository has an adversarial loss '
                f"('{self.losses.adversarial.name}') but no discriminator is configured"
            )
        self.net_d = self.model_to_device(build_network(self.opt['network_d']))
        self.print_network(self.net_d)
        load_path = self.opt['path'].get('pretrain_network_d')
        if load_path is not None:
            self.load_network(
                self.net_d,
                load_path,
                self.opt['path'].get('strict_load_d', True),
                self.opt['path'].get('param_key_d', 'params'),
            )
        self.net_d.train()

    def _expose_legacy_criteria(self):
        """SRGANModel's attribute names, for code and users that look for them."""
        by_name = {e.name: e.criterion for e in self.losses.entries}
        for attribute, names in LEGACY_ATTRIBUTES.items():
            setattr(self, attribute, next((by_name[n] for n in names if n in by_name), None))
        self.cri_gan = self.losses.adversarial.criterion if self.losses.adversarial is not None else None
        self.cri_ldl = None

    def setup_optimizers(self):
        train_opt = self.opt['train']
        optim_g = dict(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_g.pop('type'), self.net_g.parameters(), **optim_g)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_d = dict(train_opt.get('optim_d') or {})
            if 'type' not in optim_d:
                raise OptionError('train.optim_d: required when the repository has an adversarial loss')
            self.optimizer_d = self.get_optimizer(optim_d.pop('type'), self.net_d.parameters(), **optim_d)
            self.optimizers.append(self.optimizer_d)

    def optimize_parameters(self, current_iter):
        if self.agent is not None:
            self.agent.start(self, current_iter - 1)
        self.train_step(current_iter)
        if self.agent is not None:
            self.agent.after_iteration(self, current_iter)

    def train_step(self, current_iter):
        """One iteration's math on the current `lq`/`gt`, seeded by (seed, rank, iteration): the same
        iteration replayed from the same state draws the same random numbers (the lookahead's probes)."""
        seed_iteration(int(self.opt.get('manual_seed', 0)), self.opt.get('rank', 0), current_iter)
        loss_dict = OrderedDict()
        if self.net_d is not None:
            for p in self.net_d.parameters():
                p.requires_grad = False
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        if current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters:
            l_g_total, terms = self.losses.generator_loss(self.output, self.gt, self.net_d, self.loss_targets())
            loss_dict.update(terms)
            l_g_total.backward()
            self._step_if_finite(self.optimizer_g, self.net_g, 'generator', l_g_total, current_iter)

        if self.net_d is not None:
            loss_dict.update(self._optimize_discriminator(current_iter))

        self.log_dict = self.reduce_loss_dict(loss_dict)
        for name, weight in self.losses.get_weights().items():
            self.log_dict[f'w_{name}'] = weight  # in the iteration log line and TensorBoard
        if self.skipped_updates:
            self.log_dict['skipped_updates'] = self.skipped_updates

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        """SRModel.test (net_g_ema when there is one) on an input padded to a multiple of the window
        (`val.pad_multiple`, else `agent.pad_multiple`, else `network_g.window_size`), as BasicSR's
        SwinIRModel does: whole validation images need not divide by it."""
        val_opt, agent_opt = self.opt.get('val') or {}, self.opt.get('agent') or {}
        multiple = int(
            val_opt.get('pad_multiple')
            or agent_opt.get('pad_multiple')
            or self.opt['network_g'].get('window_size')
            or 1
        )
        lq, (h, w) = pad_to_multiple(self.lq, multiple) if multiple > 1 else (self.lq, self.lq.shape[-2:])
        unpadded, self.lq = self.lq, lq
        try:
            super().test()
        finally:
            self.lq = unpadded
        scale = int(self.opt.get('scale', 1))
        self.output = self.output[..., : h * scale, : w * scale]

    # ---- what the stage hook uses --------------------------------------------------------------
    def scored_network(self, which: str) -> torch.nn.Module:
        """The generator the experts score: 'ema' (net_g_ema, what users deploy) or 'net_g'."""
        return self.net_g_ema if which == 'ema' else self.get_bare_model(self.net_g)

    def training_inputs(self) -> dict:
        """What `train_step` reads besides the networks (set by feed_data)."""
        return {'lq': self.lq, 'gt': self.gt}

    def set_training_inputs(self, inputs: dict) -> None:
        for key, value in inputs.items():
            setattr(self, key, value)

    def take_snapshot(self) -> dict:
        return training_snapshot.take_snapshot(self)

    def restore_snapshot(self, snapshot: dict) -> None:
        training_snapshot.restore_snapshot(self, snapshot)

    def learning_rates(self) -> list:
        return training_snapshot.learning_rates(self)

    def set_learning_rates(self, lrs: list) -> None:
        training_snapshot.set_learning_rates(self, lrs)

    def loss_targets(self) -> dict | None:
        """Per-role replacements of `self.gt` in the generator loss (None: `self.gt` for all)."""
        return None

    def discriminator_real(self) -> torch.Tensor:
        """What the discriminator sees as real."""
        return self.gt

    def _step_if_finite(self, optimizer, net, what: str, loss, current_iter: int) -> None:
        """Skip the update when the gradients are not finite; say so once per network.

        Gradients are checked, not the local loss: with DDP they are all-reduced, so every
        rank takes the same decision.
        """
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
        if torch.isfinite(norm):
            optimizer.step()
            return
        optimizer.zero_grad()
        self.skipped_updates += 1
        if what not in self.nonfinite_reported:
            self.nonfinite_reported.add(what)
            value = float(loss.detach())
            get_root_logger().warning(
                f'Non-finite {what} loss/gradients at iteration {current_iter} (loss {value}): update skipped, '
                f'weights kept; further skips are counted in the log as skipped_updates'
                + ('' if math.isfinite(value) else ' (check the loss weights and the learning rate)')
            )

    def _optimize_discriminator(self, current_iter: int) -> OrderedDict:
        cri_gan = self.cri_gan
        for p in self.net_d.parameters():
            p.requires_grad = True
        self.optimizer_d.zero_grad()
        real_d_pred = self.net_d(self.discriminator_real())
        l_d_real = cri_gan(real_d_pred, True, is_disc=True)
        l_d_real.backward()
        fake_d_pred = self.net_d(self.output.detach().contiguous())
        l_d_fake = cri_gan(fake_d_pred, False, is_disc=True)
        l_d_fake.backward()
        self._step_if_finite(self.optimizer_d, self.net_d, 'discriminator', l_d_real + l_d_fake, current_iter)
        return OrderedDict(
            l_d_real=l_d_real,
            out_d_real=torch.mean(real_d_pred.detach()),
            l_d_fake=l_d_fake,
            out_d_fake=torch.mean(fake_d_pred.detach()),
        )

    def finish_training(self) -> None:
        """The pipeline's last step before saving the latest model: close the agent (a decision still
        out is recorded, the run is plotted)."""
        if self.agent is not None:
            self.agent.finish()

    def save(self, epoch, current_iter):
        """BasicSR's checkpoint (networks, then the training state) written as one verified set
        (checkpoint_files.py): its manifest comes last, and a write that fails removes what this
        iteration had written and raises WriteError; earlier checkpoints stay as they were."""
        self._checkpoint_files = {}
        try:
            if hasattr(self, 'net_g_ema'):
                self.save_network(
                    [self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema']
                )
            else:
                self.save_network(self.net_g, 'net_g', current_iter)
            if self.net_d is not None:
                self.save_network(self.net_d, 'net_d', current_iter)
            self.save_training_state(epoch, current_iter)
            if current_iter != -1 and self._checkpoint_files:
                write_manifest(self.training_state_path(current_iter), self._checkpoint_files, current_iter)
        except WriteError:
            remove_checkpoint(list(self._checkpoint_files))
            raise

    def training_state_path(self, current_iter: int) -> str:
        return os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')

    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's (rank 0, `module.` prefixes dropped, tensors on the CPU), written verified."""
        if self.opt.get('rank', 0) != 0:
            return
        label = 'latest' if current_iter == -1 else current_iter
        save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, keys, strict=True):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}
        self._checkpoint_files[save_path] = save_verified(save_dict, save_path)

    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state plus every rank's RNGs and the agent's (its pending decision too)."""
        if current_iter == -1:
            return
        rng_ranks = every_rank_host_rng_state()  # every rank takes part
        if self.opt.get('rank', 0) != 0:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': rng_ranks[0],
            'rng_ranks': rng_ranks,
        }
        if self.agent is not None:
            state['agent'] = self.agent.state_dict()
        save_path = self.training_state_path(current_iter)
        self._checkpoint_files[save_path] = save_verified(state, save_path)

    def close_agent(self) -> None:
        """A preempted run: release the agent without recording (its pending decision is in the state)."""
        if self.agent is not None:
            self.agent.close()

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        if 'rng' in resume_state:
            restore_rank_host_rng_state(resume_state, self.opt.get('rank', 0))
        if self.agent is not None:
            if 'agent' not in resume_state:
                raise OptionError(
                    'path.resume_state: this training state has no agent state '
                    '(it was not written by LossAgentModel); cannot continue the agent trajectory'
                )
            self.agent.load_state_dict(resume_state['agent'], int(resume_state['iter']))
