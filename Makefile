# Two commands on a fresh machine (Python 3.11+ and make):
#   make demo   creates .venv, installs Tern, migrates, seeds the demo, serves on http://127.0.0.1:8000
#   make test   creates .venv if missing, installs Tern with its test extras, runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: demo test browser nginx install install-test migrate seed serve clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The stamp files re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

demo: seed
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

# The browser tests drive Debian's Chromium; `make test` makes sure it is there and never skips them.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "== installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	    || { echo "make test: could not install Debian's chromium; install it (apt-get install chromium) and run make test again"; exit 2; }; \
	else \
	  echo "make test: the browser tests need Debian's chromium at $(CHROMIUM); install it (sudo apt-get install chromium) and run make test again"; exit 2; \
	fi

# The production-topology test (tests/portal/test_topology.py) runs Debian's nginx in front of
# real processes on PostgreSQL + Redis; `make test` installs it there when missing.
nginx:
	@case "$$DATABASE_URL" in postgres*) ;; *) exit 0;; esac; \
	if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "== installing Debian's nginx for the production-topology test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null \
	    || { echo "make test: could not install Debian's nginx; install it (apt-get install nginx) and run make test again"; exit 2; }; \
	else \
	  echo "make test: on PostgreSQL the topology test needs Debian's nginx; install it (sudo apt-get install nginx) and run make test again"; exit 2; \
	fi

test: install-test browser nginx
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var
