# postfix_relay — developer and CI entry points.
#   make test   lint + unit + render + the container matrix (CI runs this)
# Every target installs what it needs; re-running is cheap.
SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
PYTHON       ?= python3
VENV         ?= .venv
PY           := $(VENV)/bin/python
STAMP        := $(VENV)/.installed-$(shell sha256sum test/requirements.txt | cut -c1-12)
export PYTHONPATH := $(CURDIR)/test
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test check containers lint unit render integration integration-full fleet ssh faults monitoring operations environments soak bench demo demo-down host venv clean-containers help

help:
	@echo "make demo         master + web + worker + fake provider: apply, send with Django, report"
	@echo "make demo-down    remove the demo"
	@echo "make test         lint, unit, render and container tests (what CI runs)"
	@echo "make check        lint, unit and render tests only (no containers)"
	@echo "make containers   every container suite, SUITE_JOBS (3) at a time, one log each in .test-logs/"
	@echo "make integration  the kitchen.yml matrix in systemd containers (all suites on Salt 3008, one on 3007 and 3006)"
	@echo "make integration-full  every suite x Debian release x Salt version"
	@echo "make fleet        salt-master + minions + Django end to end (on every Salt version)"
	@echo "make ssh          salt-ssh web1 state.apply postfix_relay against a fresh sshd container"
	@echo "make faults       outages, TLS faults, restarts, bad pillar and secret searches (part of make test)"
	@echo "make monitoring   textfile metrics through an outage and recovery, CPU per write, beacon on a master (part of make test)"
	@echo "make soak         the same with 10,000 messages flowing during a re-apply (not in make test)"
	@echo "make bench        relay throughput and handshakes vs direct and vs SendGrid's guide; Django send_mail()"
	@echo "                  latency and arrival rate over a round-trip time (RTT=40,100 ms); fleet converge"

test: check containers

# The container suites run side by side (SUITE_JOBS at a time, longest first): each has its
# own containers, and their waits (retry schedules, restarts) overlap.  One log per suite in
# .test-logs/; `make <suite>` runs one alone.
CONTAINER_SUITES ?= integration faults fleet environments monitoring ssh operations
SUITE_JOBS       ?= 3
containers: venv host
	@echo "==> minion images of the default Salt (built once, then reused; a suite that needs another builds it, once)"
	@$(PY) -m harness.images
	@$(PY) -m harness.parallel --jobs $(SUITE_JOBS) $(CONTAINER_SUITES)

check: lint unit render

venv: $(STAMP)

$(STAMP): test/requirements.txt
	@echo "==> creating $(VENV) with pinned test dependencies (salt compiles a C extension: ~2 min cold)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r test/requirements.txt
	$(PY) -c 'import salt.version, testinfra, aiosmtpd; print("==> venv ready: salt", salt.version.__version__)'
	rm -f $(VENV)/.installed-*
	touch $@

lint: venv
	@echo "==> lint: ruff, yamllint, salt-lint"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/salt-lint postfix_relay/*.sls postfix_relay/*/*.sls

unit: venv
	@echo "==> unit tests: settings() as pure Python"
	$(PY) -m pytest -q test/unit

render: venv
	@echo "==> render tests: real Salt renders the formula on this host"
	$(PY) -m pytest -q -n 2 test/render

host:
	@$(PYTHON) -m harness.hostsetup

integration: venv host
	@echo "==> container tests: kitchen.yml matrix (create, converge twice, verify, destroy): every suite on the default Salt, one on the others"
	$(PY) -m harness.kitchen test

integration-full: venv host
	@echo "==> container tests: the whole kitchen.yml matrix, every suite x Debian release x Salt version"
	$(PY) -m harness.kitchen test --full

fleet: venv host
	@echo "==> fleet tests: a salt-master applies the formula to web and worker minions, Django sends"
	$(PY) -m pytest -q -p no:cacheprovider test/fleet

ssh: venv host
	@echo "==> salt-ssh: a fresh sshd container, roster and key auth, no master and no minion"
	$(PY) -m pytest -q -p no:cacheprovider test/ssh

faults: venv host
	@echo "==> faults and security: provider outages, bad credentials, TLS faults, restarts, bad pillar, secrets"
	$(PY) -m pytest -q -p no:cacheprovider -s test/faults

operations: venv host
	@echo "==> operations: sender rewriting, root alias, per-sender providers"
	$(PY) -m pytest -q -p no:cacheprovider test/operations

environments: venv host
	@echo "==> environments: staging redirect (new and queued mail), relaying disabled (hold, release once)"
	$(PY) -m pytest -q -p no:cacheprovider test/environments

monitoring: venv host
	@echo "==> monitoring: Prometheus textfile through an outage and recovery, CPU per write, the beacon on a master"
	$(PY) -m pytest -q -p no:cacheprovider -s test/monitoring

soak: venv host
	@echo "==> soak: the faults suite with a 10,000-message flow during a re-apply"
	PFR_FLOW_N=10000 $(PY) -m pytest -q -p no:cacheprovider -s test/faults -k "flows or down"

bench: venv host
	@$(PY) -m harness.bench $(if $(RTT),--rtt $(RTT)) $(BENCH_ARGS)

demo: venv host
	@$(PY) -m harness.demo up

demo-down: venv host
	@$(PY) -m harness.demo down

clean-containers:
	@$(PYTHON) -m harness.hostsetup --remove-containers
