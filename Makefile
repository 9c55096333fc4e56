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

# $(call debian_package,PACKAGE,WHO NEEDS IT): installs Debian's PACKAGE with apt when run as root,
# else stops with one line saying what to install. `make test` never skips a test for a missing tool.
define debian_package
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
  echo "== installing Debian's $(1) for $(2)"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null \
    || { echo "make test: could not install Debian's $(1); install it (apt-get install $(1)) and run make test again"; exit 2; }; \
else \
  echo "make test: Debian's $(1) is needed for $(2); install it (sudo apt-get install $(1)) and run make test again"; exit 2; \
fi
endef

# The browser tests drive Debian's Chromium.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	$(call debian_package,chromium,the browser tests)

# The production-topology test (tests/portal/test_topology.py) runs Debian's nginx in front of
# real processes on PostgreSQL + Redis: needed only there.
nginx:
	@case "$$DATABASE_URL" in postgres*) ;; *) exit 0;; esac; \
	if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then exit 0; fi; \
	$(call debian_package,nginx,the topology test on PostgreSQL)

test: install-test browser nginx
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var
