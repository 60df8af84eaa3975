# occ3d: two commands do everything on a fresh machine.
#   make run   - set up if needed, then run the whole notebook series headlessly (course profile)
#   make test  - set up if needed, then library tests + nbval on every notebook (smoke profile)
# Other targets: setup, pretrained, lint, notebooks, lab, test-exercises, test-browser, check-notebooks, strip-notebooks, bench, lock, clean.

PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= course
SCREENSHOTS ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.occ3d-setup-done
SHELL  := /bin/bash

.PHONY: pretrained refresh-notebooks setup run test lint notebooks test-lib test-notebooks test-exercises test-browser lab check-notebooks strip-notebooks bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt tools/setup_env.sh
	@PYTHON="$(PYTHON)" VENV="$(VENV)" bash tools/setup_env.sh
	@touch $(STAMP)

run: setup
	@$(BIN)/python -m occ3d_lib.pipeline --profile $(PROFILE)

test: setup
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-lib
	@$(MAKE) --no-print-directory test-notebooks

# ruff (configuration in pyproject.toml) on the library, tests, tools, benchmarks and the notebook sources.
lint: setup
	$(BIN)/ruff check .

# Notebooks are authored as jupytext percent-format scripts notebooks/NN_*.py; this rebuilds the .ipynb
# (keeping the stored outputs of unchanged cells). tests/integration/test_notebook_sources.py fails when they disagree.
notebooks: setup
	$(BIN)/python tools/notebooks.py build

# library tests without the slow ones (make test-exercises runs those; CI runs both)
test-lib: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

# every exercise solution, run after its notebook in one kernel in the smoke profile (reuses the smoke
# trainings that make test-notebooks cached in runs/smoke/, so it is quickest after make test)
test-exercises: setup
	$(BIN)/python -m pytest -q -m slow tests

test-notebooks: setup
	OCC3D_PROFILE=smoke OCC3D_PROGRESS=0 MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbval-lax --nbval-cell-timeout=900 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks/

# JupyterLab from the venv on 127.0.0.1 with a token, at the series' first notebook (prints the URL).
lab: setup
	@$(BIN)/python tools/lab.py

# The series in JupyterLab, driven by a headless Chromium (installed with apt-get if missing): launcher,
# kernel, notebook 01's and 02's explorers (widgets render, a slider redraws the face). Screenshots go to
# runs/browser/; `make test-browser SCREENSHOTS=docs` refreshes the ones docs/jupyterlab.md shows.
test-browser: setup
	@bash tools/install_browser.sh
	OCC3D_SCREENSHOTS=$(SCREENSHOTS) $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

check-notebooks: setup
	$(BIN)/python tools/notebook_outputs.py --check notebooks/*.ipynb

strip-notebooks: setup
	$(BIN)/python tools/notebook_outputs.py --strip notebooks/*.ipynb

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(facenet-pytorch|easypytorch3d|occ3d)' > constraints.new \
		&& (echo '# Exact versions `make setup` installs (pip -c constraints.txt). Regenerate with `make lock`.'; \
		    echo '# Installed afterwards with --no-deps by tools/setup_env.sh: facenet-pytorch==2.6.0 (it pins torch<2.3'; \
		    echo '# but runs on 2.12) and easypytorch3d==0.7.9.post1 (PyTorch3D 0.7.9; needs torch 2.12.x exactly).'; \
		    cat constraints.new) > constraints.txt && rm constraints.new

clean:
	rm -rf runs data/cache .pytest_cache

# The pretrained teacher and FaceNet the series ships in data/pretrained/ (hours on 2 CPU cores; resumable:
# stop it and run it again to continue). Not part of run or test: their files are committed.
pretrained: setup
	$(BIN)/python -m occ3d_lib.train_cli pretrained

# After changing a notebook: run it in the smoke profile and store only its NBVAL_CHECK_OUTPUT outputs.
refresh-notebooks: setup
	$(BIN)/python -m occ3d_lib.pipeline --profile smoke
	$(BIN)/python tools/notebook_outputs.py --refresh-checked runs/smoke notebooks/*.ipynb
