#!/usr/bin/env bash
# Wheels for bench/train_peers.py that the GPU machine's image lacks (Python 3.12), beside
# ../shared/gpu/fetch-wheels.sh's train stack:
#   bench/fetch_peer_wheels.sh lf DIR   LLaMA-Factory 0.9.5 and the versions it pins (transformers 4.57.1,
#                                        peft 0.18.1, trl 0.24.0, accelerate 1.11.0, datasets 4.0.0)
#   bench/fetch_peer_wheels.sh xtuner-extras DIR   liger-kernel (kit.train.fast's fused kernels) and
#                                        DeepSpeed 0.19.5 (built here without its C++ ops; the last release with
#                                        the onebit optimizers mmengine 0.10.6 imports) with its deps,
#                                        for `kit train --deepspeed`: installed beside the XTuner stack
# DIR must be ignored by git (.git/info/exclude) and carried along. On the GPU machine each stack goes
# into its own --target folder: LLaMA-Factory's transformers is not XTuner's.
# Only what a training run imports is fetched (no web UI, no audio/video decoders, no hub clients):
# the carried tree is at most 64 MiB.
set -euo pipefail
stack=${1:?lf|xtuner-extras}; dir=${2:?target dir}
mkdir -p "$dir"; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
plat=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform any)
get() { python3 -m pip download -q "${plat[@]}" -d "$dir" "$@"; }
case $stack in
  lf)
    get llamafactory==0.9.5 transformers==4.57.1 tokenizers==0.22.2 huggingface-hub==0.36.2 peft==0.18.1 \
        trl==0.24.0 accelerate==1.11.0 datasets==4.0.0 fsspec==2025.3.0 dill==0.3.8 multiprocess==0.70.16 \
        omegaconf==2.3.0 einops torchaudio==2.11.0 liger-kernel==0.8.5
    # llamafactory's mm_plugin imports torchaudio at module level (the image's torch is 2.11.0);
    # enable_liger_kernel requires liger-kernel installed, even for a model it has no kernels for;
    # omegaconf's parser runtime is an sdist only.
    python3 -m pip wheel -q --no-deps -w "$dir" antlr4-python3-runtime==4.9.3 ;;
  xtuner-extras)
    get liger-kernel==0.8.5 hjson msgpack ninja py-cpuinfo einops psutil pydantic pydantic-core annotated-types \
        typing-inspection typing-extensions
    # DeepSpeed ships an sdist; its setup.py imports torch, so build against a Python that has it.
    python3 -m pip download -q --no-deps --no-binary=:all: -d "$tmp" deepspeed==0.19.5
    tar xzf "$tmp"/deepspeed-0.19.5.tar.gz -C "$tmp"
    site=$(${KIT_PYTHON:-.venv/bin/python} -c "import site; print(site.getsitepackages()[0])")
    (cd "$tmp/deepspeed-0.19.5" && DS_BUILD_OPS=0 PYTHONPATH=$site python3 -m pip wheel -q --no-deps \
        --no-build-isolation -w "$(readlink -f "$OLDPWD/$dir")" .) ;;
  *) echo "unknown stack: $stack (lf or xtuner-extras)" >&2; exit 2 ;;
esac
du -sh "$dir"
