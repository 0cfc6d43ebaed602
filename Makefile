# facekit: `make demo` sets up and runs the main job on generated data; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, pinned. TORCH_INDEX empty: pip's configured indexes (on the dev and CI machines /opt/wheels
# holds the CPU wheel); the Docker images set it (PyPI's plain torch==2.13.0 is the multi-GB CUDA 13 build):
# https://download.pytorch.org/whl/cpu (docker/Dockerfile.cpu), https://download.pytorch.org/whl/cu126 (.gpu).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# What `make install` installs: the extras (train: torch and the training libraries; dev: tests, lint) and whether
# editable. The images install regular (EDITABLE=) without dev: EXTRAS=train, or EXTRAS= to serve ONNX models only.
# torch is installed only when EXTRAS holds train.
EXTRAS ?= train,dev
EDITABLE ?= -e
comma := ,
DEMO ?= demo
DEMO_RECOGNIZE_EPOCHS ?= 8

.PHONY: install test lint check demo bench clean train-detect train-recognize build-db recognize docker-build docker-run

$(BIN)/facekit: setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned (the CPU wheel unless TORCH_INDEX says otherwise): never let pip resolve a multi-GB CUDA build.
	$(if $(filter train,$(subst $(comma), ,$(EXTRAS))),$(BIN)/pip install --quiet '$(TORCH_SPEC)' $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
	$(BIN)/pip install --quiet $(EDITABLE) '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $@

install: $(BIN)/facekit

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check facekit tests bench
	$(BIN)/ruff format --check facekit tests bench

# The inner loop: lint, then the tests not marked slow, stopping at the first failure.
check: lint
	$(BIN)/python -m pytest -q -x -m "not slow"

# The whole workflow on generated data, about 7.5 minutes on 2 CPU cores: data -> detector -> recognizer -> threshold
# calibrated (pair FAR 1e-2) on photos of 10 people outside the gallery and the training data -> gallery (3 photos a
# person, embedded with their mirror images) -> recognition of the probe photos, strangers included, against each
# person's mean template -> open-set accuracy.
demo: install
	$(BIN)/facekit make-example-data $(DEMO)/data
	$(BIN)/facekit inspect $(DEMO)/data/recognition_train_data
	$(BIN)/facekit train-detect $(DEMO)/data/detection_train_data $(DEMO)/detector \
		--epochs 30 --batch-size 8 --image-size 320 --lr 5e-3 --eval-every 10
	$(BIN)/facekit eval-detect $(DEMO)/data/detection_train_data/val --model $(DEMO)/detector --out $(DEMO)/detector/eval
	$(BIN)/facekit train-recognize $(DEMO)/data/recognition_train_data $(DEMO)/recognizer \
		--backbone mobilefacenet --embedding-size 128 --batch-size 30 --epochs $(DEMO_RECOGNIZE_EPOCHS) \
		--optimizer adamw --lr 2e-3 --weight-decay 0.05 --warmup-epochs 1 --schedule cosine \
		--loss-param s=32 --loss-param m=0.3 --val-every 1000
	$(BIN)/facekit calibrate $(DEMO)/recognizer $(DEMO)/data/calibration --detect $(DEMO)/detector --flip --far 1e-2 \
		--write
	$(BIN)/facekit build-db $(DEMO)/data/gallery $(DEMO)/detector $(DEMO)/recognizer $(DEMO)/gallery.h5 --flip
	$(BIN)/facekit recognize $(DEMO)/data/probe $(DEMO)/gallery.h5 $(DEMO)/detector $(DEMO)/recognizer --match template \
		--format csv --out $(DEMO)/recognitions.csv --save-annotated $(DEMO)/annotated
	@cut -d, -f1,2,8,9 $(DEMO)/recognitions.csv | sed 's|^$(DEMO)/data/||' | column -s, -t
	$(BIN)/facekit evaluate-gallery $(DEMO)/data/gallery $(DEMO)/data/probe $(DEMO)/detector $(DEMO)/recognizer \
		--flip --match template --out $(DEMO)/evaluation > /dev/null
	@echo "demo: data in $(DEMO)/data; detector in $(DEMO)/detector (eval/pr_curve.png), recognizer in"
	@echo "      $(DEMO)/recognizer (roc.png), gallery $(DEMO)/gallery.h5; recognitions in $(DEMO)/recognitions.csv,"
	@echo "      drawn on $(DEMO)/annotated/; accuracy in $(DEMO)/evaluation (metrics.json, cmc.png, roc.png)"

# The four jobs, as the tutorial scripts run them; ARGS passes more options, e.g. ARGS="--epochs 5".
train-detect: install
	bin/run_face_detection_train.sh $(DATA) $(OUT) $(ARGS)

train-recognize: install
	bin/run_face_recognition_train.sh $(DATA) $(OUT) $(ARGS)

build-db: install
	bin/run_generate_data_base.sh $(DATA) $(DETECT) $(RECOGNIZE) $(OUT) $(ARGS)

recognize: install
	bin/run_face_recognition.sh $(DATA) $(DB) $(DETECT) $(RECOGNIZE) $(ARGS)

bench: install
	$(BIN)/python bench/bench_recordio.py
	$(BIN)/python bench/bench_detect.py
	$(BIN)/python bench/bench_train_recognize.py
	$(BIN)/python bench/bench_gallery.py --quick
	$(BIN)/python bench/bench_pipeline.py

# Docker images (docker/): VARIANT=cpu, gpu (training and serving) or serve (ONNX models only, no torch).
# docker-run mounts DATA_DIR at /data and MODELS_DIR at /models and runs JOB, the facekit command line, as the calling user, e.g.
#   make docker-run JOB="train-detect /data/detection_train_data /models/detector"
#   make docker-run VARIANT=gpu JOB="recognize /data/probe /models/gallery.h5 /models/detector /models/recognizer \
#       --device cuda"
DOCKER ?= docker
IMAGE ?= facekit
VARIANT ?= cpu
DATA_DIR ?= data
MODELS_DIR ?= models
JOB ?= --help

docker-build:
	$(DOCKER) build -f docker/Dockerfile.$(VARIANT) -t $(IMAGE):$(VARIANT) .

docker-run:
	mkdir -p $(DATA_DIR) $(MODELS_DIR)
	$(DOCKER) run --rm --shm-size 2g $(if $(filter gpu,$(VARIANT)),--gpus all) --user "$$(id -u):$$(id -g)" \
		-v "$(abspath $(DATA_DIR))":/data -v "$(abspath $(MODELS_DIR))":/models $(IMAGE):$(VARIANT) $(JOB)

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
