"""LossAgent: an LLM that rewrites the loss weights of image restoration training."""

from pathlib import Path

from setuptools import setup

setup(
    name='lossagent',
    version='0.1.0',
    description='BasicSR-style training where an LLM agent adjusts the loss weights at stage boundaries',
    long_description=Path('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=[
        'agent',
        'agent.policies',
        'agent.llm',
        'agent.runs',
        'agent.runs.board',
        'lossagent_arch',
        'lossagent_losses',
        'lossagent_models',
        'lossagent_hook',
        'lossagent_hook.experts',
        'lossagent_iqa',
        'lossagent_options',
        'lossagent_runtime',
        'lossagent_data',
        'lossagent_eval',
    ],
    py_modules=['lossagent_compat', 'lossagent_errors'],
    package_data={'agent.llm': ['templates/*.txt', 'templates/paper/*.txt'], 'agent.runs.board': ['static/*']},
    # torch/torchvision and basicsr are installed first by the Makefile: basicsr's source archive
    # needs torch at build time (pip install --no-build-isolation basicsr==1.4.2).
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'basicsr>=1.4.2',
        'pyiqa==0.1.16',  # every number here was measured with it; metrics change between versions
        'lpips',
        'openai>=1.0',
        'pyyaml',
        'tqdm',
        'tensorboard',
        'scikit-image',
        'matplotlib',
        'opencv-python-headless',
        'fastapi',  # the run board (python -m agent.runs.board)
        'uvicorn',
    ],
    extras_require={
        # the Makefile builds llama-cpp-python with CMAKE_ARGS and installs xgrammar without its dependencies
        'llamacpp': ['llama-cpp-python[server]'],
        # the policy study's PBT arm (benchmarks/policy_study/pbt.py); never needed by the demo or the tests
        'pbt': ['ray[tune]==2.60.0'],
        # wandb: tests/test_wandb.py (offline); selenium drives Debian's chromium + chromium-driver
        # (.ci/run installs them) in the browser tests
        'test': [
            'pytest',
            'hypothesis',
            'ruff',
            'gguf>=0.17',
            'llguidance>=1.0',
            'apache-tvm-ffi>=0.1.11',
            'wandb',
            'selenium>=4.11',
        ],
    },
)
