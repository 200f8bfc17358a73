# Two commands do all the set-up (see README): `make demo` and `make test`.
# Both are idempotent: a second run only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of torch. On this project's machines pip finds the 2.13.0 CPU
# wheel on local disk; elsewhere, point TORCH_INDEX at PyTorch's CPU wheel index
# so pip does not pull a multi-GB CUDA build onto a CPU-only machine.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
PROMPT      ?= The capital of France is
# Fonts: DejaVu for Latin, Greek, Cyrillic, Hebrew and Arabic; Pango falls back through
# fontconfig to Noto (other scripts, CJK) and to Symbola for emoji. Not Noto Color Emoji:
# cairo writes colour glyphs as bitmaps, which Manim's SVG parse drops (emoji vanish).
APT_PACKAGES := libcairo2-dev libpango1.0-dev pkg-config fonts-dejavu-core \
                fonts-noto-core fonts-noto-cjk fonts-symbola
SCENES := Embedding ResidualFlow Attention Unembedding

.PHONY: demo test gallery system clean

# Trace the prompt, print the logit lens, render the demo GIF.
demo: $(VENV)/.installed
	mkdir -p renders
	$(VENV)/bin/mechviz trace "$(PROMPT)" -o renders/demo.json
	$(VENV)/bin/mechviz inspect renders/demo.json
	$(VENV)/bin/mechviz scene ResidualFlow --trace renders/demo.json

# The README's pictures (a still of every scene, GIFs per aspect) and docs/api.md with a
# picture per building block and the guide's example, all from the example trace.
gallery: $(VENV)/.installed
	for s in $(SCENES); do $(VENV)/bin/mechviz scene $$s --format png -o docs/$$s.png || exit 1; done
	$(VENV)/bin/mechviz scene Unembedding --beats bars,lens --gif-width 640 --max-mb 1 -o docs/Unembedding.gif
	$(VENV)/bin/mechviz scene ResidualFlow --aspect 9:16 --beats rise --gif-width 360 --max-mb 2.1 -o docs/ResidualFlow-9x16.gif
	$(VENV)/bin/mechviz scene Attention --aspect 1:1 --beats arcs --gif-width 480 --max-mb 1 -o docs/Attention-1x1.gif
	$(VENV)/bin/mechviz scene Embedding --aspect 4:5 --beats tokens,ids,rows --gif-width 400 --max-mb 1 -o docs/Embedding-4x5.gif
	mkdir -p renders
	printf '2+2=\nWilliam Shakespeare was born in the year\nblue pencils fly over moonlit toasters\n' > renders/whole-prompts.txt
	$(VENV)/bin/mechviz trace -f renders/whole-prompts.txt -o renders/whole
	for f in renders/whole/*.json; do n=$$(basename $$f .json); $(VENV)/bin/mechviz scene WholeModel --trace $$f --format png -o docs/WholeModel-$${n#*-}.png || exit 1; done
	$(PY) docs/make_api.py

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# Manim builds against cairo and pango; install them and the fonts when missing.
FONT_FILES := DejaVuSans NotoSans-Regular NotoSansCJK-Regular Symbola
system:
	@fonts=$$(fc-list 2>/dev/null); missing=; \
	for f in $(FONT_FILES); do echo "$$fonts" | grep -q "$$f" || missing=1; done; \
	if ! pkg-config --exists cairo pangocairo 2>/dev/null || [ -n "$$missing" ]; then \
	  echo "Installing Manim's system libraries: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch | system
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) renders/*.json
