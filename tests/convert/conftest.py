"""One tiny XTuner LoRA run per test session, shared (read-only) by the merge tests."""

import json
import os
import subprocess
import sys

import pytest

# A minimal XTuner LoRA config for the tiny model on CPU: fp32, no quantization (QLoRA needs a GPU),
# a few iterations, a checkpoint every 2 of them. Structure as in XTuner's internlm2_chat_1_8b configs.
CONFIG = '''
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import ConstantLR, OptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

character = "bajie"
pretrained_model_name_or_path = {base!r}
data_files = {data!r}
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 256

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 trust_remote_code=True, padding_side="right")
model = dict(
    type=SupervisedFinetune, use_activation_checkpointing=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             trust_remote_code=True, torch_dtype=torch.float32),
    lora=dict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
              task_type="CAUSAL_LM"))
train_dataset = dict(
    type=process_hf_dataset, dataset=dict(type=load_dataset, path="json", data_files=data_files),
    tokenizer=tokenizer, max_length=max_length, dataset_map_fn=openai_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True, shuffle_before_pack=False, pack_to_max_length=False, map_num_proc=1)
train_dataloader = dict(batch_size=2, num_workers=0, dataset=train_dataset,
                        sampler=dict(type=DefaultSampler, shuffle=True),
                        collate_fn=dict(type=default_collate_fn))
optim_wrapper = dict(type=OptimWrapper, optimizer=dict(type=AdamW, lr=1e-2, weight_decay=0))
param_scheduler = [dict(type=ConstantLR, factor=1.0, by_epoch=False)]
train_cfg = dict(type=TrainLoop, max_iters=4)
default_hooks = dict(timer=dict(type=IterTimerHook),
                     logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=1),
                     param_scheduler=dict(type=ParamSchedulerHook),
                     checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=2, max_keep_ckpts=-1))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
visualizer = None
log_level = "WARNING"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
'''

# XTuner's sft.py calls torch.cpu.is_bf16_supported, which this torch lacks: shim it in the child only.
LAUNCH = ("import runpy, sys, torch\n"
          "if not hasattr(torch.cpu, 'is_bf16_supported'): torch.cpu.is_bf16_supported = lambda: False\n"
          "sys.argv = ['train', *sys.argv[1:]]\n"
          "runpy.run_module('xtuner.tools.train', run_name='__main__')\n")


def _samples() -> list[dict]:
    from kit.persona import persona_for

    persona = persona_for("bajie")
    system = {"role": "system", "content": persona.system_prompt}
    return [{"messages": [system, {"role": "user", "content": q},
                          {"role": "assistant", "content": line}]}
            for q, line in zip(persona.probe_questions, persona.sample_lines * 2)]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model) -> dict:
    """A tiny base plus an XTuner work dir with iter_2.pth and iter_4.pth (LoRA r=8, fp32)."""
    root = tmp_path_factory.mktemp("run")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in _samples()), "utf-8")
    config = root / "tiny_lora.py"
    config.write_text(CONFIG.format(base=str(tiny_model), data=str(data)), "utf-8")
    work = root / "work"
    # A private datasets cache: parallel runs sharing ~/.cache/huggingface/datasets have been seen
    # to read each other's half-written map results (KeyError: Column length not in the dataset).
    env = {**os.environ, "MKL_SERVICE_FORCE_INTEL": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(root / "hf_datasets")}
    proc = subprocess.run([sys.executable, "-c", LAUNCH, str(config), "--work-dir", str(work)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert (work / "iter_4.pth").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"base": tiny_model, "work": work, "config": config}
