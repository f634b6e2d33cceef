# make all   - create .venv, install, train, export and verify both models
# make test  - create .venv, install, run the test suite
# make publish - publish verified models as new, signed versions of exported/model_repository
#                (not in all); the key is $(KEYS)/signing.key, generated on first use
# make bench - time eager PyTorch and every installed runtime side by side (not part of all)
# make crossval - verify every runtime (ORT, OpenVINO, tract, ONNX reference) on both models,
#                 time them, and rewrite the cross-runtime table of docs/verification.md
#                 (not part of all)
# make bench-score - rows/s of `score` vs a per-sequence loop and eager PyTorch, Ray with 1
#                    and 2 actors, peak RSS at 20k/200k rows; benchmark_score.json (not in all)
# make bench-score-e2e - the whole `score` command against a per-sequence loop, fresh processes,
#                    start-up included, 20k and 100k rows, min of 3 by wall and CPU time, and
#                    where score's time goes; benchmark_score_e2e.json (not in all)
# make serve - serve exported/model_repository in tritonserver (.venv-serve; not in all) on
#              Triton's ports 8000 (HTTP), 8001 (gRPC), 8002 (metrics); right after `make all`
#              it runs `make publish` first (nothing is published yet)
# make soak  - 10 minutes of loadtest at 16 clients, RSS of tritonserver and its stubs sampled
#              every second: exported/soak/loadtest.json (growth after warm-up) and .png
# make serve-test - the Triton end-to-end tests alone (also part of make test)
# Stage targets are files under exported/, so make reruns only what is out of date.
# PRECISION=fp32,bf16,int8 - precision variants export writes beside the fp32 files and verify
#              gates by the accuracy budget (docs/precision.md); default fp32 alone. A new
#              value re-exports (exported/.precision records the last one).
# DEPLOY=best|RUNTIME:PRECISION - make publish also deploys a verified variant as its own
#              Triton model: best reads deployment.json, written by make bench (docs/precision.md)

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
OUT     := exported
MODELS  := forecaster classifier
STAMP   := $(VENV)/.installed
CROSSVAL_SHAPE := 64x200
# The serving environment (see serve-env); defined here, before `test` names its stamp.
SERVE_VENV  := .venv-serve
SERVE_PY    := $(SERVE_VENV)/bin/python
SERVE_STAMP := $(SERVE_VENV)/.installed
KEYS    ?= .keys
PRECISION ?= fp32
DEPLOY    ?=
# Rewritten only when PRECISION differs from the last run's, so the manifests (which depend
# on it) are rebuilt with the variants asked for, and not otherwise.
PRECISION_STAMP := $(OUT)/.precision
$(shell mkdir -p $(OUT) && { [ "$$(cat $(PRECISION_STAMP) 2>/dev/null)" = "$(PRECISION)" ] || \
  echo "$(PRECISION)" > $(PRECISION_STAMP); })

# What each stage's output depends on besides the previous stage's files.
CORE_SRC  := pipeline/specs.py pipeline/validate.py pipeline/fsio.py pipeline/checkpoint.py \
             $(wildcard pipeline/families/*.py) $(wildcard pipeline/layers/*.py) pipeline/network.py \
             pipeline/inputs.py
TRAIN_SRC := $(CORE_SRC) pipeline/data.py pipeline/train.py
RUNTIME_SRC := $(wildcard pipeline/runtimes/*.py)
STREAM_SRC := pipeline/verify_stream.py pipeline/predict.py
PRECISION_SRC := $(wildcard pipeline/precision/*.py)
VERIFY_SRC := $(CORE_SRC) pipeline/verify.py pipeline/manifest.py pipeline/compare.py $(RUNTIME_SRC) \
              $(STREAM_SRC) $(PRECISION_SRC)
EXPORT_SRC := $(CORE_SRC) $(wildcard pipeline/export/*.py) pipeline/manifest.py \
              pipeline/compare.py $(RUNTIME_SRC) $(STREAM_SRC) $(PRECISION_SRC) $(PRECISION_STAMP)

.PHONY: all install train export verify publish bench bench-score bench-score-e2e crossval test clean serve-env serve \
        serve-test soak

all: verify

install: $(STAMP)

# torch first and pinned: an unpinned torch requirement with nothing installed pulls a
# multi-GB CUDA build; with 2.13.0 present, the project's own `torch==2.13.*` is satisfied.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,runtimes,scale]'
	touch $@

# config.json is written after the weights, so it marks a finished training run.
train: $(MODELS:%=$(OUT)/%/config.json)
$(OUT)/%/config.json: $(STAMP) $(TRAIN_SRC)
	$(PY) -m pipeline train --model $* --out $(OUT)

# manifest.json is written after model.pt and model.onnx passed their self-check.
export: $(MODELS:%=$(OUT)/%/manifest.json)
$(OUT)/%/manifest.json: $(OUT)/%/config.json $(EXPORT_SRC)
	$(PY) -m pipeline export --model $* --out $(OUT) --precision $(PRECISION)

# Not part of `all`: a published version is permanent, so publishing is asked for. Phony:
# publish itself finds what is new (unchanged artifacts are a no-op, so a rerun adds
# nothing) and refuses builds whose verification.json is missing, failed or stale.
# Every version is signed with $(KEYS)/signing.key (git-ignored; `make clean` keeps it, as
# consumers hold its public half). Give KEYS=DIR to sign with a key pair kept elsewhere.
publish: verify $(KEYS)/signing.key
	$(PY) -m pipeline publish --out $(OUT) --signing-key $(KEYS)/signing.key$(if $(DEPLOY), --deploy $(DEPLOY))
	@echo "publish: signed with $(KEYS)/signing.key; consumers check with" \
	  "python -m pipeline verify-release $(OUT)/model_repository --public-key $(KEYS)/signing.pub"

# Order-only on the venv: a newer install must not regenerate (keygen never overwrites).
$(KEYS)/signing.key: | $(STAMP)
	@echo "publish: no signing key yet; generating $(KEYS)/signing.key (private, keep it)" \
	  "and $(KEYS)/signing.pub (for consumers)"
	$(PY) -m pipeline keygen $(KEYS)

# A failed verify still writes its report (to be read) and exits non-zero; the report's
# mtime is then reset to 1970 so the target stays out of date and `make` verifies again.
verify: $(MODELS:%=$(OUT)/%/verification.json)
$(OUT)/%/verification.json: $(OUT)/%/manifest.json $(VERIFY_SRC)
	$(PY) -m pipeline verify --model $* --out $(OUT) || { touch -d @0 $@ 2>/dev/null; exit 1; }
# Timings are never up to date, so bench always runs (a couple of minutes, both models);
# it writes $(OUT)/<model>/benchmark.json and benchmark.png, and the streaming mode
# benchmark_stream.json and benchmark_stream.png.
bench: $(MODELS:%=$(OUT)/%/verification.json)
	$(PY) -m pipeline bench $(MODELS:%=--model %) --out $(OUT) --threads 1
	$(PY) -m pipeline bench $(MODELS:%=--model %) --out $(OUT) --threads 1 --stream

# `score` on 100k generated sequences of lengths 1-300 per model (a few minutes); prints the
# table of docs/scoring.md and writes $(OUT)/benchmark_score.json. Timings, never asserted.
bench-score: $(MODELS:%=$(OUT)/%/verification.json)
	$(PY) -m pipeline.scoring.bench --out $(OUT)

bench-score-e2e: $(MODELS:%=$(OUT)/%/manifest.json)
	$(PY) -m pipeline.scoring.bench_e2e --out $(OUT)

# Every runtime against eager PyTorch on the default matrix (verification.json gets one entry
# per runtime), one timing shape for all of them, then the table of docs/verification.md from those two files.
crossval: $(STAMP) $(MODELS:%=$(OUT)/%/manifest.json)
	$(PY) -m pipeline verify --runtime all --out $(OUT) || \
	  { for m in $(MODELS); do touch -d @0 $(OUT)/$$m/verification.json 2>/dev/null; done; exit 1; }
	$(PY) -m pipeline bench --runtime all --out $(OUT) --threads 1 --shapes $(CROSSVAL_SHAPE)
	$(PY) -m pipeline.crossval --out $(OUT) --readme docs/verification.md

# pytest-xdist: TEST_WORKERS processes (auto: one per core), each test file on one worker
# (--dist loadfile: a module's fixtures, e.g. a server start, are built once). Most of the
# suite waits on subprocesses, servers and runtimes, so 2 workers on 2 cores roughly halve
# the wall time. TEST_WORKERS=0 runs in this process, as plain `pytest` does.
# The two virtual environments are independent, so they are built side by side (a fresh
# clone: ~70 s against ~100 s one after the other, 2 cores).
TEST_WORKERS ?= auto
test:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(SERVE_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Serving: tritonserver (from the nvidia-pytriton wheel, --no-deps: its binary, libraries,
# python backend and stubs only) and the numpy<2 Python its backends run in (onnxruntime,
# torch, and openvino for the openvino stand-in: publish --deploy openvino[:bf16]). Own venv,
# own pins (constraints-serve.txt); torch first and pinned, as for .venv.
serve-env: $(SERVE_STAMP)
$(SERVE_STAMP): constraints-serve.txt
	test -x $(SERVE_PY) || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install -q -c constraints-serve.txt torch==2.13.0
	$(SERVE_PY) -m pip install -q -c constraints-serve.txt numpy onnxruntime openvino
	$(SERVE_PY) -m pip install -q --no-deps -c constraints-serve.txt nvidia-pytriton
	touch $@

# Foreground until Ctrl-C; serves what `make publish` wrote, every version checked against
# $(KEYS)/signing.pub first. make passes a SIGTERM on to serve (which drains and stops), but
# not a SIGKILL: --stop-with-parent makes the kernel tell serve when make dies.
# SERVE_ARGS adds options, e.g. SERVE_ARGS="--http-port 9000".
serve: $(STAMP) $(SERVE_STAMP) | $(OUT)/model_repository
	@test -f $(KEYS)/signing.pub || { echo "make serve: no $(KEYS)/signing.pub to check" \
	  "$(OUT)/model_repository with; give KEYS=DIR, the folder of the key pair that signed it"; exit 2; }
	$(PY) -m pipeline serve --registry $(OUT)/model_repository --serve-env $(SERVE_VENV) \
	  --public-key $(KEYS)/signing.pub --stop-with-parent $(SERVE_ARGS)

# Nothing published yet (`make serve` right after `make all`): publish once, first. Later
# versions are published when asked for (`make publish`), never behind a serve.
$(OUT)/model_repository:
	@echo "make: nothing published in $@ yet; running make publish first"
	$(MAKE) --no-print-directory publish

# Not part of test: ten minutes. Its own tritonserver on free ports, on what `make publish` wrote.
soak: $(STAMP) $(SERVE_STAMP) | $(OUT)/model_repository
	$(PY) -m pipeline loadtest --registry $(OUT)/model_repository --serve-env $(SERVE_VENV) \
	  --concurrency 16 --duration 600 --out $(OUT)/soak

serve-test: $(STAMP) $(SERVE_STAMP)
	$(PY) -m pytest -q tests/serving

clean:
	find $(OUT) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
