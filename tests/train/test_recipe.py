"""recipes/bajie.py parses as XTuner parses it; the CPU variant differs only where it says."""

import shutil

import pytest
from kit_testing import ROOT, run_kit

from kit.persona import persona_for
from kit.train.preflight import load_recipe, recipe_facts

RECIPE = ROOT / "recipes" / "bajie.py"


def test_gpu_recipe_is_the_community_qlora_setup(monkeypatch):
    monkeypatch.delenv("KIT_BASE_MODEL", raising=False)
    cfg = load_recipe(RECIPE, {})
    q = cfg.model.llm.quantization_config
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert cfg.model.llm.pretrained_model_name_or_path == "internlm/internlm2-chat-1_8b"
    assert (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (64, 16)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.train_cfg.max_epochs == 3
    assert cfg.train_dataset.max_length == 2048 and cfg.train_dataset.pack_to_max_length
    # The community's 16 packed rows per optimizer step, run as 8 flattened rows x 2 (kit.train.fast).
    assert cfg.train_dataloader.batch_size * cfg.optim_wrapper.accumulative_counts == 16
    assert cfg.model.type.__name__ == "FastSupervisedFinetune" and cfg.train_dataset.use_varlen_attn
    from xtuner.utils import PROMPT_TEMPLATE

    assert cfg.prompt_template == PROMPT_TEMPLATE.internlm2_chat
    assert cfg.data_files == [str(ROOT / "datasets" / "bajie" / "built" / "train.jsonl")]
    assert recipe_facts(cfg).setup.method == "qlora"


def test_cpu_variant_and_overrides(tmp_path):
    cfg = load_recipe(RECIPE, {"KIT_VARIANT": "cpu", "KIT_BASE_MODEL": "/models/x", "KIT_DATA_DIR": str(tmp_path)})
    assert cfg.model.llm.quantization_config is None
    assert cfg.model.llm.pretrained_model_name_or_path == "/models/x"
    assert cfg.tokenizer.pretrained_model_name_or_path == "/models/x"
    # No warm-up scheduler at all: on tiny data mmengine refuses one that rounds to 0 iterations.
    assert cfg.train_dataset.map_num_proc == 1 and len(cfg.param_scheduler) == 1
    assert "CosineAnnealingLR" in str(cfg.param_scheduler[0].type) and cfg.param_scheduler[0].begin == 0
    assert "OptimWrapper" in str(cfg.optim_wrapper.type) and "Amp" not in str(cfg.optim_wrapper.type)
    assert cfg.data_files == [str(tmp_path / "train.jsonl")]
    assert recipe_facts(cfg).setup.method == "lora"


def test_persona_comes_from_persona_yaml_only(tiny_model):
    from transformers import AutoTokenizer

    from kit.train.hooks import PersonaChatHook

    persona = persona_for("bajie")
    text = RECIPE.read_text(encoding="utf-8")
    assert persona.system_prompt[:12] not in text and persona.probe_questions[0] not in text
    cfg = load_recipe(RECIPE, {"KIT_VARIANT": "cpu"})
    hook_cfg = cfg.custom_hooks[1]
    assert hook_cfg.persona_file == str(persona.path.resolve())
    hook = PersonaChatHook(persona_file=hook_cfg.persona_file, prompt_template=cfg.prompt_template,
                           tokenizer=dict(type=AutoTokenizer.from_pretrained,
                                          pretrained_model_name_or_path=str(tiny_model)))
    assert persona.system_prompt in hook.system and hook.evaluation_inputs == persona.probe_questions


def test_recipe_new_writes_a_recipe_for_another_character(tmp_path):
    (tmp_path / "recipes").mkdir()
    shutil.copy(RECIPE, tmp_path / "recipes" / "bajie.py")
    folder = tmp_path / "datasets" / "wukong"
    folder.mkdir(parents=True)
    (folder / "persona.yaml").write_text("name: 孙悟空\nsystem_prompt: 你是孙悟空。\nprobe_questions: [你是谁？]\n",
                                         encoding="utf-8")
    env = {"KIT_HOME": str(tmp_path)}
    r = run_kit("recipe", "new", "wukong", env=env)
    assert r.returncode == 0, r.stderr
    cfg = load_recipe(tmp_path / "recipes" / "wukong.py", {"KIT_VARIANT": "cpu"})
    assert cfg.custom_hooks[1].persona_file == str(folder / "persona.yaml")
    assert cfg.data_files == [str(folder / "built" / "train.jsonl")]
    again = run_kit("recipe", "new", "wukong", env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    missing = run_kit("recipe", "new", "nobody", env=env)
    assert missing.returncode == 2 and "no character folder" in missing.stderr


@pytest.mark.parametrize("args, needle", [
    (["recipes/missing.py"], "recipe not found"),
    (["recipes/bajie.py", "--gpu-fraction", "1.5"], "--gpu-fraction"),
    (["recipes/bajie.py", "--gpu-memory", "8"], "e.g. 8GiB"),
    (["recipes/bajie.py", "--gpu-memory", "8GiB", "--gpu-fraction", "0.1"], "give one of them"),
    (["recipes/bajie.py"], "needs a CUDA GPU"),  # QLoRA on this CPU-only host
])
def test_train_refuses_bad_input(args, needle):
    import torch

    if needle == "needs a CUDA GPU" and torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    # A narrow terminal: the error must still come out on unbroken lines (CI's longer checkout path
    # once wrapped "needs a CUDA GPU" across two lines).
    r = run_kit("train", *args, env={"COLUMNS": "40"})
    assert r.returncode == 2 and needle in r.stderr, r.stderr
