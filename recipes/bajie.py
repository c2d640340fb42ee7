# recipes/bajie.py: QLoRA role-play fine-tune of InternLM2-Chat-1.8B as the character `bajie`.
#
# An XTuner 0.2.0 config (five parts, as XTuner's own configs): `xtuner train` runs it as is.
#
#   kit data build bajie                              # -> datasets/bajie/built/train.jsonl
#   xtuner train recipes/bajie.py                     # plain XTuner, work dir work_dirs/bajie
#   kit train recipes/bajie.py --gpu-fraction 0.1     # + preflight, progress, loss PNG, samples table
#   KIT_BASE_MODEL=/models/internlm2-chat-1_8b xtuner train recipes/bajie.py   # local weights
#   NPROC_PER_NODE=2 xtuner train recipes/bajie.py --deepspeed deepspeed_zero2  # several GPUs
#   xtuner convert pth_to_hf work_dirs/bajie/bajie.py work_dirs/bajie/iter_N.pth adapter/  # or kit merge
#
# Environment (read once, here):
#   KIT_BASE_MODEL  model path or hub id        (default internlm/internlm2-chat-1_8b)
#   KIT_DATA_DIR    folder with train.jsonl     (default datasets/bajie/built)
#   KIT_VARIANT=cpu the CPU variant below: LoRA in fp32 on the embedded tiny model (kit demo, tests)
#
# Hyperparameters, and why (the InternLM community's role-play runs, e.g. 八戒-Chat, Chat-嬛嬛):
#   QLoRA nf4 + double quant    1.8B weights in ~1.1 GB, so the run fits a 10% A100 slice (8 GB);
#                               `kit train --gpu-fraction` prints the full memory plan.
#   r=64, alpha=16, dropout 0.1 enough capacity for a speaking style; alpha/r=0.25 keeps updates
#                               gentle so the chat skills of the base model survive.
#   LoRA on wqkv, wo, w1-w3     every linear layer but the output head (XTuner's default includes it),
#                               as LLaMA-Factory and PEFT practice leave lm_head out: the head's LoRA
#                               is r x (2,048 + 92,544) = 6.1M parameters at r=64 (+10% on the layers'
#                               62.9M), and LMDeploy has no LoRA slot for it, so only a head-free
#                               adapter serves beside the base in one `kit serve` server.
#   lr 2e-4, cosine, 3% warm-up the usual LoRA rate; role-play data is small, so no higher. The warm-up
#                               lasts 2 iterations at least: XTuner's LinearLR leaves a short run (the
#                               course's set is ~7 iterations an epoch) at 1e-5 x lr (train/schedule.py).
#   max_length 2048, packing    short dialogue turns packed into full 2048-token rows: no padding
#                               waste, one row per step regardless of sample length.
#   8 rows x 2 accumulation     16 packed rows (~32k tokens) per optimizer step, as the community's
#                               1 x 16, but 8 rows run as one flattened variable-length row.
#   kit.train.fast              packed rows attend per document, fused norm/SwiGLU, a chunked loss
#                               that never builds the 92,544-wide logits: 5.3x stock XTuner's
#                               tokens/s at lower peak memory on an H100 (bench/README.md).
#   3 epochs                    the persona sticks after 2-3 passes; more starts reciting lines
#                               (the per-checkpoint samples table of `kit train` shows when).
#   persona from persona.yaml   the system prompt and the probe questions of the chat hook come
#                               from datasets/bajie/persona.yaml: one source of truth.
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook,
                            ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, OptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from xtuner.dataset import process_hf_dataset
from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop
from xtuner.utils import PROMPT_TEMPLATE

from kit.train.fast import FastSupervisedFinetune, packed_collate_fn
from kit.train.hooks import PersonaChatHook
from kit.train.schedule import WarmupLR

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# mmengine parses recipes in lazy-import mode, where a plain `import os` is only a stand-in when
# Python runs from a virtual environment: import it for real, for the paths and variables below.
os = __import__("os")

character = "bajie"
project_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
persona_file = os.path.join(project_dir, "datasets", character, "persona.yaml")

# Model
pretrained_model_name_or_path = os.environ.get("KIT_BASE_MODEL", "internlm/internlm2-chat-1_8b")
quantize_4bit = True
torch_dtype = torch.float16
lora_r, lora_alpha, lora_dropout = 64, 16, 0.1
lora_targets = ["wqkv", "wo", "w1", "w2", "w3"]  # not the output head: see the header

# Data
data_dir = os.environ.get("KIT_DATA_DIR", os.path.join(project_dir, "datasets", character, "built"))
data_files = [os.path.join(data_dir, "train.jsonl")]
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 2048
pack_to_max_length = True
map_num_proc = 8  # tokenizing processes (XTuner's default is 32)

# Scheduler & Optimizer
batch_size = 8  # packed rows per device and step, flattened into one variable-length row
accumulative_counts = 2  # effective batch = GPUs x 8 x 2 rows
dataloader_num_workers = 0
max_epochs = 3
optim_wrapper_type = AmpOptimWrapper
lr = 2e-4
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03
warmup_start_factor = 1e-5

# Save, and chat with the probe questions at every checkpoint
save_steps = 100
save_total_limit = 5  # keep several: the samples table compares checkpoints
evaluation_freq = 100
max_new_tokens = 200
log_interval = 10
seed = 0  # data order and LoRA initialisation: the same data and settings give the same run

# ---- CPU variant: the only differences (KIT_VARIANT=cpu; kit demo and the tests use it) ----
if os.environ.get("KIT_VARIANT") == "cpu":
    quantize_4bit = False  # bitsandbytes 4-bit needs CUDA: plain LoRA
    torch_dtype = torch.float32  # CPUs have no fast fp16
    optim_wrapper_type = OptimWrapper  # AMP is GPU-only
    # The tiny base is a pretrained chat assistant (kit/tiny): a full-width LoRA (r = alpha = 32 on
    # 128-wide layers) at lr 3e-3 makes its voice the character's within a thousand steps.
    lora_r, lora_alpha, lora_dropout = 32, 32, 0.0
    # The character's own characters (八戒's 俺, 猪, 斋) are new to the tiny base's vocabulary: LoRA on
    # the embedding too lets the run learn what they mean, not only how to say them.
    lora_targets = ["wqkv", "wo", "w1", "w2", "w3", "output", "tok_embeddings"]
    max_length = 512  # the tiny model's rows stay well under a second a step
    map_num_proc = 1
    max_epochs = 6  # ~1,000 iterations on the course's 八戒 set (362 rows), under three minutes on one core
    batch_size = accumulative_counts = 1  # every row is an optimizer step
    lr = 3e-3
    # No warm-up: in a run this short 3% rounds to 0-2 iterations, and mmengine then either leaves
    # the LR at start_factor x lr for the whole run or refuses a 0-iteration scheduler.
    warmup_ratio = 0
    # A checkpoint to compare (the last five are kept), with probe answers, every 100 iterations, or
    # about five per run on a smaller set (a first lab 7 text): one checkpoint leaves nothing to pick
    # from. Packing puts about two samples in each 512-token row, one row per iteration.
    rows = sum(1 for _ in open(data_files[0], encoding="utf-8")) if os.path.isfile(data_files[0]) else 0
    save_steps = evaluation_freq = max(1, min(100, rows * max_epochs // 2 // 5))
    max_new_tokens = 24
    log_interval = 1

del os  # a module, not a setting: keep it out of the config XTuner dumps into the work dir

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=True,
    padding_side="right",
)

model = dict(
    type=FastSupervisedFinetune,  # XTuner's SupervisedFinetune with kit.train.fast's kernels
    use_varlen_attn=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=True,
        torch_dtype=torch_dtype,
        quantization_config=dict(
            type=BitsAndBytesConfig,
            load_in_4bit=True,
            load_in_8bit=False,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        ) if quantize_4bit else None,
    ),
    lora=dict(
        type=LoraConfig,
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=lora_targets,
        bias="none",
        task_type="CAUSAL_LM",
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path="json", data_files=data_files),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=openai_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=True,  # record document boundaries: packed samples never attend to each other
    map_num_proc=map_num_proc,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=packed_collate_fn),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=optim_wrapper_type,
    optimizer=dict(type=AdamW, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)
if optim_wrapper_type is AmpOptimWrapper:
    optim_wrapper.update(loss_scale="dynamic", dtype="float16")

param_scheduler = [
    # XTuner's LinearLR, but never a 0- or 1-iteration window on a short run (kit/train/schedule.py)
    dict(type=WarmupLR, start_factor=warmup_start_factor, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
][0 if warmup_ratio else 1:]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(type=PersonaChatHook, persona_file=persona_file, tokenizer=tokenizer,
         every_n_iters=evaluation_freq, max_new_tokens=max_new_tokens,
         prompt_template=prompt_template),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=log_interval),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=seed, deterministic=False)
log_processor = dict(by_epoch=False)
