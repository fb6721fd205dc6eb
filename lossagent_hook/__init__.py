"""The stage hook and what only it uses: when the agent acts (stage_hook.py), how a decision is obtained
(decision_runner.py), the lookahead loop (lookahead_loop.py), the experts (experts/), the agent's
validation images, stage images, human approval and the TensorBoard view. `LossAgentModel` owns one
`StageHook`."""

import lossagent_compat  # noqa: F401  (before basicsr)
