"""A training run's options parsed once into typed specs: the losses, the `agent` section, the experts,
and the weights the run starts with. Every check is the one the builders rely on; nothing is built.

How they travel (BasicSR builds a model from the option dict `opt` alone):

    preflight   specs = training_specs(opt)            before any folder exists (lossagent_runtime)
    pipeline    build_model(with_specs(opt, specs))    a copy of opt with the specs under SPECS_KEY,
                                                       made after opt was logged, so logs are unchanged
    model       specs_of(self.opt)                     LossRepository(specs.losses), the initial weights,
                                                       StageHook(specs.agent, specs.experts)

A model built without preflight (tests and scripts calling `build_model(opt)`) parses here, once, the
same way. After this point nothing reads `train.losses` or `agent` again.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.policies import check_policy
from lossagent_data.dataset_options import check_dataset
from lossagent_hook.experts import ExpertSpec, check_experts
from lossagent_options import AgentOptions, initial_weights_option

from .loss_repository import LossSpec, repository_specs

SPECS_KEY = '_lossagent_specs'


@dataclass(frozen=True)
class TrainingSpecs:
    losses: list[LossSpec]  # `train.losses` (or SRGANModel's keys), repository order
    agent: AgentOptions | None  # None without an `agent` section
    experts: list[ExpertSpec]  # `agent.experts`, checked, in order
    initial_weights: dict[str, float]  # agent.initial_weights when given, else each loss' own weight

    @property
    def loss_names(self) -> list[str]:
        return [s.name for s in self.losses]


def training_specs(opt: dict) -> TrainingSpecs:
    """Raise OptionError for the first wrong loss or agent option; the parsed specs otherwise."""
    losses = repository_specs(opt.get('train') or {})
    names = [s.name for s in losses]
    weights = {s.name: s.weight for s in losses}
    if not opt.get('agent'):
        return TrainingSpecs(losses, None, [], weights)
    agent = AgentOptions.from_opt(opt)
    check_dataset('agent.dataset', agent.dataset)
    experts = check_experts(agent.experts)
    initial = initial_weights_option(agent.initial_weights, names)
    if initial is not None:
        weights = initial
    check_policy(
        agent.policy,
        names,
        [weights[n] for n in names],
        [e.info for e in experts],
        seed=agent.policy_seed,
        task=agent.task,
    )
    return TrainingSpecs(losses, agent, experts, weights)


def with_specs(opt: dict, specs: TrainingSpecs | None) -> dict:
    """`opt` for `build_model`, carrying the specs (a shallow copy: the caller's `opt` stays as it was)."""
    return opt if specs is None else {**opt, SPECS_KEY: specs}


def specs_of(opt: dict) -> TrainingSpecs:
    """The specs preflight made, or parsed now for a model built without it."""
    specs = opt.get(SPECS_KEY)
    return specs if specs is not None else training_specs(opt)
