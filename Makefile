# facekit: `make demo` sets up and runs the main job on generated data; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: install test lint demo bench clean

$(BIN)/facekit: setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU torch first, from the pinned wheel: never let pip resolve a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/facekit

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check facekit tests bench
	$(BIN)/ruff format --check facekit tests bench

demo: install
	$(BIN)/facekit make-example-data $(DEMO)/data
	$(BIN)/facekit inspect $(DEMO)/data/recognition_train_data
	$(BIN)/facekit inspect $(DEMO)/data/detection_train_data
	$(BIN)/facekit inspect $(DEMO)/data/gallery

bench: install
	$(BIN)/python bench/bench_recordio.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
