# torswitch developer entry points. Every target installs what it needs first, idempotently:
# Debian packages (apt-get), a virtualenv in .venv, and an editable install of the package.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMPS := .stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

APT_PACKAGES := dpdk libdpdk-dev pkg-config memcached nutcracker libmemcached-tools iproute2 \
	nftables ethtool bridge-utils procps psmisc maven openjdk-17-jdk-headless iputils-ping
NATIVE_SOURCES := $(wildcard native/core/*.c native/include/tsw/*.h native/ffi/*)
PYTEST := $(PY) -m pytest

.PHONY: all build deps venv hadoop-jars proto test test-unit test-integration test-c debug demo bench \
	lint clean distclean dataplane tools

all: build

# ---- set-up ---------------------------------------------------------------------------------

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# The Debian packages start system-wide daemons; tests start their own.
	@-$(SUDO) systemctl disable --now memcached nutcracker >/dev/null 2>&1 || true

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/install: $(VENV)/bin/python pyproject.toml setup.py $(NATIVE_SOURCES) $(wildcard protos/*/*.proto protos/*/*/*.proto protos/*/*/*/*.proto)
	@mkdir -p $(STAMPS)
	$(PIP) install -q -e '.[test,plot]'
	@touch $@

venv: $(STAMPS)/install

# Apache Hadoop (server + client jars, logging binding, web resources) from Maven Central into
# hadoop/lib/, for the HDFS testbed. Downloads go through ~/.m2 once; the stamp makes later runs
# instant, and a changed pom refetches into an empty folder so no stale jar stays on the classpath.
HADOOP_LIB_STAMP := hadoop/lib/.fetched
hadoop-jars: $(HADOOP_LIB_STAMP)

$(HADOOP_LIB_STAMP): hadoop/pom.xml | deps
	@echo "fetching Apache Hadoop jars from Maven Central into hadoop/lib (once)"
	@rm -rf hadoop/lib hadoop/target
	mvn -B -q -f hadoop/pom.xml package
	@touch $@

build: deps venv hadoop-jars

proto: venv
	$(PIP) install -q 'grpcio-tools==1.85.1'
	$(PY) setup.py -q build_proto

# The DPDK data plane (native/dataplane), against Debian's DPDK through pkg-config libdpdk.
dataplane: deps
	$(MAKE) -s -C native/dataplane

# Small native tools (plain C): the latency probe of `torswitch bench memcached`.
tools:
	$(MAKE) -s -C native/tools

# ---- tests ----------------------------------------------------------------------------------

test-c:
	$(MAKE) -s -C native/tests run
	$(MAKE) -s -C native/dataplane/tests run

debug:
	$(MAKE) -s -C native/tests run-debug
	$(MAKE) -s -C native/dataplane/tests run-debug

test-unit: build test-c
	$(PYTEST) -q tests

test-integration: build dataplane tools $(STAMPS)/spark
	$(PYTEST) -q integration

# The README's test command: C known-answer tests, fast tests, then real peers.
test: build test-c dataplane tools $(STAMPS)/spark
	$(PYTEST) -q tests integration

# ---- the main job ---------------------------------------------------------------------------

# The README's main command: the iterative-job benchmark on its own testbed instance (pyarrow
# job by default). The spark extra (pyspark, Hadoop 3.5.0 client) is installed once too, so
# `torswitch bench iterative --engine spark` works afterwards. `torswitch demo` is the routing
# demo on memcached and nutcracker.
demo: build $(STAMPS)/spark
	$(VENV)/bin/torswitch bench iterative

$(STAMPS)/spark: $(STAMPS)/install
	$(PIP) install -q -e '.[test,plot,spark]'
	@touch $@

bench: build
	$(VENV)/bin/torswitch bench routing

lint: build
	$(PIP) install -q -e '.[dev]'
	$(VENV)/bin/ruff check torswitch tests integration
	$(VENV)/bin/mypy torswitch

clean:
	rm -rf build native/tests/build native/tools/build native/dataplane/build native/dataplane/tests/build torswitch/_core*.so torswitch/_core.c torswitch/api $(STAMPS)

distclean: clean
	rm -rf $(VENV) hadoop/lib
