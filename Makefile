# Every target sets up its own virtual environment first (torch 2.13.0 CPU wheel, then the project).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLE ?= ../shared/data/eval/sheep.png

.PHONY: serve demo test train-x2-a train-x4-a clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/rescale serve

demo: $(STAMP)
	$(VENV)/bin/rescale demo $(SAMPLE) --scale 2 --variant irn-a

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

train-x2-a: $(STAMP)
	$(VENV)/bin/rescale train --config models/configs/irn-a-x2.toml

train-x4-a: $(STAMP)
	$(VENV)/bin/rescale train --config models/configs/irn-a-x4.toml --init-from runs/irn-a-x2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
