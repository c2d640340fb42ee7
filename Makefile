# Two commands set everything up on a fresh machine (Python 3 and make): `make demo` and `make test`.
# Each first brings .venv up to date with uv.lock (a no-op when nothing changed).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
KIT := .venv/bin/kit
WORKDIR ?= demo

.PHONY: env demo test browser lock lmdeploy-env clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

# uv sync checks the environment against uv.lock itself; --locked refuses a stale lock.
# --compile-bytecode: once per install (~1 min); without it a shell that sets PYTHONDONTWRITEBYTECODE
# recompiles torch on every command (kit doctor's first run: 15 s instead of 5 s).
env: $(UV)
	$(UV) sync --locked --extra test --quiet --compile-bytecode

demo: env
	MKL_SERVICE_FORCE_INTEL=1 $(KIT) demo --workdir $(WORKDIR)

# Chromium from Debian drives the Streamlit page test (Playwright cannot download its own browser here);
# fonts-noto-cjk lets it draw the Chinese replies (the screenshot in docs/ shows them).
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q "Noto Sans CJK"; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	  else echo "chromium or fonts-noto-cjk missing: sudo apt-get install chromium fonts-noto-cjk (browser tests will be skipped)"; fi; }

test: env browser
	MKL_SERVICE_FORCE_INTEL=1 .venv/bin/python -m pytest

# requirements.txt is uv.lock for pip users (README's manual path).
lock: $(UV)
	$(UV) lock
	$(UV) export --frozen --no-hashes --extra test --no-emit-project --no-header -q -o requirements.txt

# LMDeploy in its own environment (GPU machines only): it needs a newer transformers than XTuner 0.2.0.
lmdeploy-env:
	$(PYTHON) -m venv .venv-lmdeploy
	.venv-lmdeploy/bin/pip install -q lmdeploy==0.18.0

clean:
	rm -rf .venv .tools .venv-lmdeploy
