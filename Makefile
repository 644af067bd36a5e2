# Dos comandos bastan en una máquina nueva: `make report` y `make test`.
# Ambos crean .venv e instalan el proyecto la primera vez.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: all test lint server client report bench bench-quick bench-publish clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks]'
	touch $(STAMP)

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check chatlib tests bench report
	$(BIN)/ruff format --check chatlib tests bench report
	$(BIN)/mypy

report: $(STAMP)
	$(BIN)/python report/build.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

# Cada corrida se escribe en bench/runs/ (ignorado); esto copia una completa a bench/results/.
bench-publish: $(STAMP)
	$(BIN)/python bench/run.py --publish $(RUN)

server: $(STAMP)
	$(BIN)/python -m chatlib.server --host $(HOST) --port $(PORT)

client: $(STAMP)
	$(BIN)/python -m chatlib.client --host $(HOST) --port $(PORT)

clean:
	rm -rf $(VENV) build report/build report/informe.pdf report/informe.pdf.old report/informe.html .pytest_cache
