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

# The workflow so far on generated data: data -> detector training -> evaluation -> detection (a few minutes on 2 cores).
demo: install
	$(BIN)/facekit make-example-data $(DEMO)/data
	$(BIN)/facekit inspect $(DEMO)/data/recognition_train_data
	$(BIN)/facekit inspect $(DEMO)/data/detection_train_data
	$(BIN)/facekit train-detect $(DEMO)/data/detection_train_data $(DEMO)/detector \
		--epochs 20 --batch-size 8 --image-size 320 --lr 5e-3 --eval-every 5
	$(BIN)/facekit eval-detect $(DEMO)/data/detection_train_data/val --model $(DEMO)/detector --out $(DEMO)/detector/eval
	$(BIN)/facekit detect $(DEMO)/data/probe --model $(DEMO)/detector --out $(DEMO)/detections.jsonl \
		--save-annotated $(DEMO)/annotated
	@echo "demo: data in $(DEMO)/data, detector in $(DEMO)/detector (model.pt, detector.onnx, metrics.json,"
	@echo "      eval/pr_curve.png), detections in $(DEMO)/detections.jsonl, drawn on $(DEMO)/annotated/"

bench: install
	$(BIN)/python bench/bench_recordio.py
	$(BIN)/python bench/bench_detect.py
	$(BIN)/python bench/bench_train_recognize.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
