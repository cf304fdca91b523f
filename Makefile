# Every target sets up its own virtual environment first (torch 2.13.0 CPU wheel, then the project).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLE ?= ../shared/data/eval/sheep.png

.PHONY: serve demo test srmd srmd-eval images test-containers train-long train-gpu retrain publish report clean

# OpenVINO's converter reports every conversion to Google Analytics from a Python process it spawns per event,
# unless its optional telemetry package is absent (it then runs its own no-op stub): the service calls out nowhere
NO_TELEMETRY = $(VENV)/bin/pip uninstall --quiet --yes openvino-telemetry

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(NO_TELEMETRY)
	touch $(STAMP)

# the SRMD baseline's wheel (.ci/run installs its Debian packages first; tests/test_srmd_row.py skips without it)
srmd: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[srmd]'
	$(NO_TELEMETRY)

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

# The long runs, in lanes side by side, one thread each (a lane alone gets both cores). A lane trains its runs
# one after another, so a core goes on to the next run when one ends; each resumes from
# runs/long/<run>/checkpoint, which the repository keeps between sessions (docs/training.md), and an ended run
# returns at once. The pool is made first where it is missing. Lane 1 decays the fourth x4 IRN-A cycle's
# snapshot at step 14,112 toward its floor (the cycle itself waits at its checkpoint, irn-a-x4-fourth). Lane 2 is
# empty meanwhile: irn-a-x2-second (its floor met by a decay from its snapshot) and irn-jpeg-x4-wide-second wait.
LONG_LANE_1 = irn-a-x4-fourth-14k-cooldown
LONG_LANE_2 =
LONG_THREADS = $(if $(strip $(LONG_LANE_2)),1,2)
train-long: $(STAMP)
	test -f runs/pool/SOURCES.csv || $(VENV)/bin/rescale pool --out runs/pool
	for lane in "$(LONG_LANE_1)" "$(LONG_LANE_2)"; do \
		test -z "$$lane" || (for run in $$lane; do \
			$(VENV)/bin/rescale train --threads $(LONG_THREADS) --config models/configs/$$run.toml || exit 1; \
		done) & \
	done; wait

# Training: `make train-<config>` trains (or resumes) models/configs/<config>.toml after the runs it starts
# from. That order is stated once, in each config's init_from (a run starting from another config's out comes
# after it: `rescale train --chain`). A fixed seed in every config; 1 thread each, two runs can share a 2-core
# machine. Each command resumes its run when interrupted. Why each chain is shaped so: the configs' comments.
TRAIN = $(VENV)/bin/rescale train --threads $(THREADS)
THREADS ?= 1

train-%: $(STAMP)
	$(TRAIN) --config models/configs/$*.toml --chain

# The shipped set on one GPU (models/configs/gpu/: the paper's batch and patch sizes, bf16, torch.compile,
# a time budget per run), every run after the one it starts from (docs/training.md); then `rescale publish
# runs/gpu/<run> --supersedes <weights id>` for each
train-gpu: $(STAMP)
	test -f runs/pool/SOURCES.csv || $(VENV)/bin/rescale pool --out runs/pool
	$(VENV)/bin/rescale train-set models/configs/gpu

SHIPPED_RUNS = irn-x2-long irn-a-x2-small-long irn-m-x2-long irn-x4-small irn-a-x4-small-long irn-m-x4-small dlv-irn-x4-small dlv-irn-m-x4-small irn-jpeg-x2 irn-jpeg-x4
retrain: $(addprefix train-,$(SHIPPED_RUNS))

# after `make retrain` the whole set is replaced on purpose (--overwrite): files made by the weights it
# replaces no longer read (`rescale publish --supersedes` keeps old weights beside new ones)
publish: $(STAMP)
	for run in $(SHIPPED_RUNS); do $(VENV)/bin/rescale publish runs/$$run --overwrite || exit 1; done

# docs/results.md: Table 3 on eval/ and the PyPI pool at x2 and x4, files in every format, damaged files,
# real-codec rows (rate against distortion through JPEG, WebP and AVIF) for the IRNs and the compression-aware
# models, the figure and the loss curves; also records each shipped model's figures in the manifest. Rows of
# weights already measured (same weights id, method and images) are taken from REUSE, not measured again.
REUSE ?= $(wildcard docs/results/results.json)
report: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[eval]'
	$(VENV)/bin/rescale eval --data ../shared/data/eval pypi --scales 2 4 --formats png jpeg webp --damaged \
		--lossy jpeg:50 jpeg:75 jpeg:90 jpeg:95 webp:75 webp:90 avif:75 avif:90 --lossy-variants irn irn-m dlv-irn dlv-irn-m \
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
