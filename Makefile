# Two commands for a fresh machine (see README):
#   make book   executes every notebook on the embedded SynthFER data and builds the HTML report
#   make test   runs the unit tests and replays the committed notebooks under nbval
# Both create .venv and install the pinned dependencies when it is missing or out of date.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
# pyproject.toml [tool.ferlib] install-without-dependencies: MTCNN's weights, without its stale pins
NO_DEPS  := facenet-pytorch==2.6.0
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))
EXECUTED := $(NOTEBOOKS:.py=.ipynb)

.PHONY: test book notebooks unit nbval benchmark clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(NO_DEPS)
	touch $(STAMP)

# Tests run in parallel, one pytest worker per core (at most 4), each with one torch thread, so the
# threads never outnumber the cores (OpenMP spin-waiting makes oversubscription very slow).
# --dist loadscope keeps each notebook's cells in order on one worker (nbval's advice).
WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PARALLEL = -n $(WORKERS) --dist loadscope

# nbval replays the notebooks from scratch: a run left in notebooks/results would be resumed
# (finished runs are not retrained), which prints differently from the committed outputs.
test: $(STAMP)
	rm -rf notebooks/results
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PARALLEL) tests notebooks --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout 1800 -p no:cacheprovider

unit: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PARALLEL) tests -p no:cacheprovider

nbval: $(STAMP)
	rm -rf notebooks/results
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PARALLEL) notebooks --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout 1800 -p no:cacheprovider

# Execute each notebook in place with its default (smoke) parameters: the .py is the source,
# jupytext refreshes the .ipynb's inputs, papermill runs it in notebooks/ (as nbval does).
# One notebook per worker at a time, one torch thread each, like the tests; any failure fails the target.
notebooks: $(STAMP)
	rm -rf notebooks/results
	@printf '%s\n' $(NOTEBOOKS) | OMP_NUM_THREADS=1 xargs -P $(WORKERS) -I{} sh -c '\
		src={}; nb=$${src%.py}.ipynb; echo "== executing $$nb"; \
		$(VENV)/bin/jupytext --quiet --to ipynb --update $$src && \
		$(VENV)/bin/papermill $$nb $$nb -k python3 --cwd notebooks --log-level WARNING --no-progress-bar && \
		echo "== done $$nb" || { echo "== FAILED $$nb" >&2; exit 1; }'

book: notebooks
	rm -rf book/notebooks && mkdir -p book/notebooks
	cp $(EXECUTED) book/notebooks/
	$(PY) -m ferlib registry findings --out book/findings.md
	$(VENV)/bin/jupyter-book build book --quiet
	@echo "The report is at book/_build/html/index.html"

benchmark: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf book/_build book/notebooks results notebooks/results
