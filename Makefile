# Every target sets up what it needs: a fresh machine with Python 3.11 and make is enough.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.probe-installed
PROBE  := $(BIN)/probe
OUT    ?= build

RCNN := sample_models/mini_rcnn.h5 --custom-objects sample_models/mini_rcnn_layers.py

.PHONY: install demo test test-unit typecheck lint models bench fuzz clean
#: The tests that need no TensorFlow (pure stages, archives, analyses): seconds.
UNIT_TESTS := tests/core tests/archive tests/analysis tests/test_feed.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,tflite,onnx,dev]'
	touch $(STAMP)

install: $(STAMP)

## Set up, then list and dump tensors of the bundled Mask-R-CNN-like sample.
demo: $(STAMP)
	mkdir -p $(OUT)
	$(PROBE) list $(RCNN) --layers
	$(PROBE) dump $(RCNN) --tensor 'ROI/.*NonMax.*' --layer 'conv.*' --force -o $(OUT)/mini_rcnn.probe.h5

## Lint, type-check and run the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check probe_cli tests sample_models bench
	$(BIN)/ruff format --check probe_cli tests sample_models bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## The tests that need no TensorFlow, alone: seconds. Importing TensorFlow there fails the test.
test-unit: $(STAMP)
	PROBE_NO_TENSORFLOW=1 $(BIN)/python -m pytest -q $(UNIT_TESTS)

typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check probe_cli tests sample_models bench
	$(BIN)/ruff format --check probe_cli tests sample_models bench

## Regenerate the committed sample models (fixed seeds).
models: $(STAMP)
	$(BIN)/python sample_models/make_models.py

## Performance figures and ratios (see README, "Performance"); BENCH_MODEL=DenseNet121 for another
## keras.applications model.
BENCH_MODEL ?= ResNet50
bench: $(STAMP)
	$(BIN)/python bench/bench.py --model $(BENCH_MODEL)

## A longer fuzzing run than the one in the test suite.
fuzz: $(STAMP)
	PROBE_FUZZ_CASES=400 $(BIN)/python -m pytest -q tests/cli/test_fuzz.py

clean:
	rm -rf $(OUT) .pytest_cache
