# Two commands do everything on a fresh Debian machine: `make demo` and `make test`.
# Set-up is idempotent: stamps under .venv/ make a second run skip the slow steps.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gst-1.0 \
	gstreamer1.0-python3-plugin-loader python3-venv
ENV := source scripts/env.sh >/dev/null &&

.PHONY: setup demo test lint env bench bench-md clean

setup: $(VENV)/.stamp-pip

# Debian packages: skipped when every package is already installed.
$(VENV)/.stamp-apt:
	@if dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | grep -vq 'install ok installed' \
		|| [ "$$(dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | wc -l)" -lt "$(words $(APT_PACKAGES))" ]; then \
		echo "== installing GStreamer 1.22 and the Python plugin loader (Debian)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@mkdir -p $(VENV) && touch $@

# The venv comes from the system Python that the GStreamer plugin loader embeds.
$(VENV)/.stamp-pip: $(VENV)/.stamp-apt setup.py
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,serve]'
	$(PY) -m pip install -q --no-deps 'nvidia-pytriton==0.7.0'
	$(PY) -m pip install -q --no-deps --ignore-requires-python --upgrade --target $(VENV)/typestubs \
		'tensorrt-stubs==10.13.0.35.1' 'pyds-stubs==1.2.2'  # for mypy only: see setup.py's dev
	@touch $@

env: setup
	@bash scripts/env.sh

demo: setup
	@$(ENV) bash scripts/demo.sh

test: setup
	@$(ENV) $(PY) -m pytest -q -rs --durations=25 tests

lint: setup
	$(VENV)/bin/ruff check hcml plugin tests scripts
	$(VENV)/bin/ruff format --check hcml plugin tests scripts

# Every `hcml bench` suite with its defaults (each under 5 minutes on 2 CPU cores; run it on an
# otherwise idle machine): benchmarks/<suite>.json and .png, and BENCHMARKS.md's sections.
# Not part of `make test`. `make bench-md` re-renders BENCHMARKS.md from the JSON only.
BENCH_OUT := --json benchmarks --plots benchmarks --markdown BENCHMARKS.md

bench: setup
	@$(ENV) $(PY) -m hcml.cli bench all $(BENCH_OUT)

bench-md: setup
	@$(ENV) $(PY) -m hcml.cli bench all --from-json benchmarks --plots benchmarks --markdown BENCHMARKS.md

clean:
	rm -rf $(VENV) *.egg-info
