# Every target sets up its own virtual environment first (torch 2.13.0 CPU wheel, then the project).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLE ?= ../shared/data/eval/sheep.png

.PHONY: serve demo test srmd srmd-eval images test-containers train-long retrain publish report clean train-irn-x2 train-irn-a-x2 train-irn-x4 train-irn-a-x4 train-irn-m-x2 train-irn-m-x4 train-dlv-irn-x4 train-irn-x2-long train-irn-a-x2-long train-irn-x4-small train-irn-m-x4-small train-dlv-irn-x4-small train-irn-m-x2-long train-dlv-irn-x2 train-dlv-irn-x2-long train-dlv-irn-m-x4-small train-dlv-irn-a-x2 train-dlv-irn-a-x4 train-irn-a-x2-small train-irn-a-x4-small train-irn-a-x2-small-long train-irn-a-x4-small-long train-irn-jpeg-x2-plain train-irn-jpeg-x4-plain train-irn-jpeg-x2 train-irn-jpeg-x4 train-irn-jpeg-m-x2 train-irn-jpeg-m-x4

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# the SRMD baseline's wheel (.ci/run installs its Debian packages first; tests/test_srmd_row.py skips without it)
srmd: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[srmd]'

# loopback unless HOST is given (HOST=0.0.0.0 make serve); the containers listen on 0.0.0.0
HOST ?= 127.0.0.1
serve: $(STAMP)
	$(VENV)/bin/rescale serve --host $(HOST)

demo: $(STAMP)
	$(VENV)/bin/rescale demo $(SAMPLE) --scale 2 --variant irn-a

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# The CPU serving, CPU training and Prometheus images on a base made from Debian packages (no registry needed)
images:
	bash docker/build-images.sh

# Real containers of those images over real HTTP (CI's step after `make test`); one line and no failure where no
# Docker engine can be started
test-containers: $(STAMP)
	@if reason=$$(bash docker/start-engine.sh); then \
		$(MAKE) images && $(PY) -m pytest -q -m containers tests/containers; \
	else echo "container tests skipped: $$reason"; fi

# The long runs, side by side on one thread each (both cores): each resumes from runs/long/<run>/checkpoint,
# which the repository keeps between sessions (docs/training.md); the pool is made first where it is missing
LONG_RUNS = irn-a-x4-third irn-jpeg-x4-wide
train-long: $(STAMP)
	test -f runs/pool/SOURCES.csv || $(VENV)/bin/rescale pool --out runs/pool
	for run in $(LONG_RUNS); do $(VENV)/bin/rescale train --threads 1 --config models/configs/$$run.toml & done; wait

# Retraining the shipped set from scratch (a fixed seed in every config; 1 thread each, two runs can share
# a 2-core machine). Each command resumes its run when interrupted. `make retrain` runs them in order.
TRAIN = $(VENV)/bin/rescale train --threads $(THREADS)
THREADS ?= 1

train-irn-x2 train-irn-a-x2 train-irn-x4 train-dlv-irn-x4 train-irn-x4-small train-dlv-irn-x4-small train-dlv-irn-x2 train-dlv-irn-a-x2 train-irn-a-x2-small: train-%: $(STAMP)
	$(TRAIN) --config models/configs/$*.toml

# The shipped x2 IRN is the 3,000-step run trained for a second cosine cycle of 2,000 steps (the 8-block
# x2 IRN-A the same; it shipped until the 4-block one below beat it)
train-irn-x2-long: train-irn-x2
	$(TRAIN) --config models/configs/irn-x2-long.toml

train-irn-a-x2-long: train-irn-a-x2
	$(TRAIN) --config models/configs/irn-a-x2-long.toml

# The 8-block x4 IRN-A (shipped until the 4-block one) starts its first Haar level from the 3,000-step x2 IRN-A
train-irn-a-x4: train-irn-a-x2
	$(TRAIN) --config models/configs/irn-a-x4.toml

train-irn-m-x2: train-irn-x2
	$(TRAIN) --config models/configs/irn-m-x2.toml

# The shipped x2 IRN-M keeps the shipped (5,000-step) x2 IRN frozen as its base
train-irn-m-x2-long: train-irn-x2-long
	$(TRAIN) --config models/configs/irn-m-x2-long.toml

train-irn-m-x4: train-irn-x4
	$(TRAIN) --config models/configs/irn-m-x4.toml

# The shipped x4 IRN has 4 InvBlocks per level (better than 8 at the same budget); its -M is built on it
train-irn-m-x4-small: train-irn-x4-small
	$(TRAIN) --config models/configs/irn-m-x4-small.toml

# The x2 DLV-IRN gets the shipped x2 IRN's two cycles; the x4 DLV-IRN-M keeps the 4-block x4 DLV-IRN frozen
train-dlv-irn-x2-long: train-dlv-irn-x2
	$(TRAIN) --config models/configs/dlv-irn-x2-long.toml

train-dlv-irn-m-x4-small: train-dlv-irn-x4-small
	$(TRAIN) --config models/configs/dlv-irn-m-x4-small.toml

# The 8-block x4 DLV-IRN-A starts its first Haar level from the x2 DLV-IRN-A, as the x4 IRN-A does from the
# x2 IRN-A; it shipped until the 4-block x4 IRN-A beat it
train-dlv-irn-a-x4: train-dlv-irn-a-x2
	$(TRAIN) --config models/configs/dlv-irn-a-x4.toml

# The shipped IRN-As have 4 InvBlocks per level: x2 at the 8-block x2 IRN-A's budget, then its second cycle
# (shipped); x4 starts its first level from the first x2 cycle, then its second cycle (shipped)
train-irn-a-x4-small: train-irn-a-x2-small
	$(TRAIN) --config models/configs/irn-a-x4-small.toml

train-irn-a-x2-small-long: train-irn-a-x2-small
	$(TRAIN) --config models/configs/irn-a-x2-small-long.toml

train-irn-a-x4-small-long: train-irn-a-x4-small
	$(TRAIN) --config models/configs/irn-a-x4-small-long.toml

# Compression-aware models: the shipped IRN fine-tuned through a real-valued, differentiable JPEG until it
# levelled off (-plain, the ablation without restorer), then with an LR restorer (shipped as irn-jpeg-x*)
train-irn-jpeg-x2-plain train-irn-jpeg-x4-plain: train-%: $(STAMP)
	$(TRAIN) --config models/configs/$*.toml

train-irn-jpeg-x2: train-irn-jpeg-x2-plain
	$(TRAIN) --config models/configs/irn-jpeg-x2.toml

train-irn-jpeg-x4: train-irn-jpeg-x4-plain
	$(TRAIN) --config models/configs/irn-jpeg-x4.toml

# The compression-aware -M (an ablation, not shipped): a codec trained through Pillow's JPEG on the IRN-JPEG
# as published (the fp16 folder under models/weights, so its network is the shipped one to the bit)
train-irn-jpeg-m-x2: train-irn-jpeg-x2
	$(TRAIN) --config models/configs/irn-jpeg-m-x2.toml

train-irn-jpeg-m-x4: train-irn-jpeg-x4
	$(TRAIN) --config models/configs/irn-jpeg-m-x4.toml

SHIPPED_RUNS = irn-x2-long irn-a-x2-small-long irn-m-x2-long irn-x4-small irn-a-x4-small-long irn-m-x4-small dlv-irn-x4-small dlv-irn-m-x4-small irn-jpeg-x2 irn-jpeg-x4
retrain: $(addprefix train-,$(SHIPPED_RUNS))

# after `make retrain` the whole set is replaced on purpose (--overwrite): files made by the weights it
# replaces no longer read (`rescale publish --supersedes` keeps old weights beside new ones)
publish: $(STAMP)
	for run in $(SHIPPED_RUNS); do $(VENV)/bin/rescale publish runs/$$run --overwrite || exit 1; done

# docs/results.md: Table 3 on eval/ and the PyPI pool at x2 and x4, files in every format, damaged files,
# real-codec rows (rate against distortion) for the IRNs and the compression-aware models, the figure and
# the loss curves; also records each shipped model's figures in the manifest. Rows of
# weights already measured (same weights id, method and images) are taken from REUSE, not measured again.
REUSE ?= $(wildcard docs/results/results.json)
report: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[eval]'
	$(VENV)/bin/rescale eval --data ../shared/data/eval pypi --scales 2 4 --formats png jpeg webp --damaged \
		--lossy jpeg:50 jpeg:75 jpeg:90 jpeg:95 webp:75 webp:90 --lossy-variants irn irn-m dlv-irn dlv-irn-m \
		--figure --figure-image ../shared/data/eval/rocks.png --manifest --out docs/results --report docs/results.md \
		$(if $(REUSE),--reuse $(REUSE)) $(if $(wildcard $(SRMD_RESULTS)),--report-srmd $(SRMD_RESULTS))

# Our files against the bicubic thumbnail upscaled by SRMD (lossless and JPEG q90, x2 and x4) on the centre
# 384x384 of each eval photo: SRMD runs on the CPU through lavapipe (minutes); `make report` then shows it
SRMD_RESULTS = docs/results/srmd/results.json
srmd-eval: srmd
	$(VENV)/bin/rescale eval --data ../shared/data/eval --scales 2 4 --variants irn irn-a --lossy jpeg:90 \
		--crop 384 --srmd --out docs/results/srmd

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
