# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DM := $(VENV)/bin/digest-mail

.PHONY: demo test install lint bench system-deps clean

# Two stamps: what running needs (demo), then the development tools on top (test, lint,
# bench). pip runs without -q so a first install shows what it is fetching.
$(VENV)/.runtime: pyproject.toml
	@echo "==> Creating the virtual environment $(VENV)/"
	$(PYTHON) -m venv $(VENV)
	@echo "==> Installing digest-mail and what it needs to run (a minute on a fresh machine)"
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	@echo "==> Adding the development tools (the [dev] extra: pytest, hypothesis, mypy, ruff, py-spy, playwright)"
	$(PY) -m pip install -e '.[dev]'
	@touch $@

install: $(VENV)/.dev

# The sample workspace (this repository), from a clean state each time: compose the
# sample edition, check it, test-send it to staff and send it to the sample list through
# the capture transport (outbox/). Nothing leaves the machine.
demo: $(VENV)/.runtime
	@echo "==> Starting the sample from scratch: removing drafts/ outbox/ var/ archive/"
	rm -rf drafts outbox var archive
	@echo "==> 1/5 Compose the sample edition from articles/"
	$(DM) compose articles/*.md
	@echo "==> 2/5 Check it for what would hurt in inboxes"
	$(DM) check
	@echo "==> 3/5 Test-send it to the staff list (subscribers/staff.csv)"
	$(DM) test-send
	@echo "==> 4/5 Send it to the sample list (subscribers/weekly.csv)"
	$(DM) send --list weekly --yes
	@echo "==> 5/5 What the ledger recorded"
	$(DM) status
	@echo
	@echo "Done. Every message went to the capture outbox; nothing left this machine."
	@echo "  Put digest-mail on your PATH:  . $(VENV)/bin/activate"
	@echo "  The mail (a Maildir):          ls outbox/new/    (envelopes: outbox/envelopes.jsonl)"
	@echo "  Read one message:              less outbox/new/$$(ls outbox/new | head -n 1)"
	@echo "  The draft in a browser:        drafts/$$(ls drafts | tail -n 1)/index.html"
	@echo "  Phone and desktop screenshots: digest-mail preview   (needs chromium and Noto CJK + emoji fonts: make system-deps)"
	@echo "  Test-send over real SMTP:      digest-mail dev-smtp &    (a local server, port 1025)"
	@echo "                                 DIGEST_MAIL_SMTP_URL=smtp://127.0.0.1:1025 digest-mail test-send"
	@echo "                                 ls outbox/dev-smtp/new/; kill %1"
	@echo "  Your own newsletter:           digest-mail init ../my-digest --staff you@example.jp"
	@echo "                                 then follow \"Ten minutes to a first send\" in README.md"

test: $(VENV)/.dev
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

# Debian packages that tests and benchmarks use when present (root, apt). postgresql: the
# suite starts a server of its own from its binaries (tests/pgserver.py).
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  need=""; \
	  command -v chromium >/dev/null 2>&1 || need="$$need chromium fonts-noto-cjk"; \
	  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need="$$need fonts-noto-color-emoji"; \
	  [ -x /usr/sbin/smtp-sink ] || need="$$need postfix"; \
	  command -v spamassassin >/dev/null 2>&1 || need="$$need spamassassin"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	  if [ -n "$$need" ]; then \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	  fi; \
	else echo "system-deps: not root or no apt-get; tests that need chromium/postfix/spamassassin/postgresql will skip"; fi

# run.py: the send path against smtp-source (SQLite ledger); bench_postgres.py: the same
# send with the ledger on PostgreSQL, one sender and two (skipped, saying why, without it).
bench: $(VENV)/.dev system-deps
	$(PY) benchmarks/run.py
	$(PY) benchmarks/bench_postgres.py

clean:
	rm -rf $(VENV) drafts outbox var archive
