"""The `agent:` section of a training option file, read once into a typed, frozen `AgentOptions`.

Below the models, the hook and the runtime (all of which receive it), above `agent` only: the
schema of the section the glue owns, apart from the code that acts on it.
"""

from .agent_options import AgentOptions, initial_weights_option

__all__ = ['AgentOptions', 'initial_weights_option']
