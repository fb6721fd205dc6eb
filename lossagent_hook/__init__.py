"""The stage hook and what it uses: the agent's validation images, the experts that score them, and
the decision log and TensorBoard view of every boundary. `LossAgentModel` owns one `StageAgent`."""
import lossagent_compat  # noqa: F401  (before basicsr)
