# Every target sets up its own virtual environment first (torch 2.13.0 CPU wheel, then the project).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLE ?= ../shared/data/eval/sheep.png

.PHONY: demo test lint train-x2-a clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rescale demo $(SAMPLE) --scale 2 --variant irn-a

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

train-x2-a: $(STAMP)
	$(VENV)/bin/rescale train --config models/configs/irn-a-x2.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
