# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DM := $(VENV)/bin/digest-mail

.PHONY: demo test install lint bench system-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Compose the sample edition, check it, and send it to the sample list through the
# capture transport (outbox/): nothing leaves the machine.
demo: install
	$(DM) compose articles/*.md
	$(DM) check
	$(DM) test-send
	$(DM) send --list weekly --yes
	$(DM) status

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

# Debian packages that tests and benchmarks use when present (root, apt).
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  need=""; \
	  command -v chromium >/dev/null 2>&1 || need="$$need chromium fonts-noto-cjk"; \
	  [ -x /usr/sbin/smtp-sink ] || need="$$need postfix"; \
	  command -v spamassassin >/dev/null 2>&1 || need="$$need spamassassin"; \
	  if [ -n "$$need" ]; then \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	  fi; \
	else echo "system-deps: not root or no apt-get; tests that need chromium/postfix/spamassassin will skip"; fi

bench: install system-deps
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) drafts outbox var archive
