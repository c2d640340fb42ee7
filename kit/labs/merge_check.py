"""Lab 4's check, with kit merge's own verifiers (kit.convert): load, PEFT, logits, chat template."""

from kit.labs.findings import OK, Finding, Missing, attempt, need
from kit.workspace import Workspace


def merge_findings(ws: Workspace, persona, fix: str) -> list[Finding]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.convert import template, verify

    base, adapter, merged = ws.base, ws.adapter, ws.merged
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {}

    def merged_loads() -> str:
        need(merged / "config.json", fix)
        tok = state["tokenizer"] = AutoTokenizer.from_pretrained(merged, trust_remote_code=True)
        state["prompts"] = verify.probe_prompts(tok, persona, 2)
        model = AutoModelForCausalLM.from_pretrained(merged, trust_remote_code=True, torch_dtype="auto")
        state["dtype"] = model.dtype  # the tolerance's; both sides are compared in fp32, as kit merge does
        state["merged"] = verify.logits(model.float().to(device).eval(), state["prompts"])
        return f"{merged} ({str(state['dtype']).removeprefix('torch.')}, {model.num_parameters():,} parameters)"

    def adapter_loads() -> str:
        need(adapter / "adapter_config.json", fix)
        need(base / "config.json", fix)
        model = AutoModelForCausalLM.from_pretrained(base, trust_remote_code=True, torch_dtype=torch.float32)
        tuned = PeftModel.from_pretrained(model, adapter).to(device).eval()
        state["reference"], state["effect"] = verify.adapter_logits(tuned, state["prompts"])
        return f"LoRA r={tuned.peft_config['default'].r} onto {base}"

    def logits_match() -> str:
        result = verify.check_logits(state["merged"], state["reference"], state["dtype"], state["effect"])
        if state["effect"] <= result["tolerance"]:
            raise Missing(f"the adapter moves the base's logits by only {state['effect']:.1e}: it looks untrained",
                          "train longer (lab 3), then kit merge again")
        return (f"max |merged − (base+adapter)| = {result['max_abs_diff']:.2e} (allowed {result['tolerance']:.1e}; "
                f"the adapter moves them by {state['effect']:.2e})")

    def template_matches() -> str:
        n = template.check_template(state["tokenizer"], persona)
        return f"token for token equal to XTuner's internlm2_chat on {n} conversations, persona system prompt by default"

    findings = []
    for what, step in (("merged model loads with transformers", merged_loads),
                       ("adapter loads onto the base with PEFT", adapter_loads),
                       ("merged logits = base + adapter", logits_match),
                       ("chat template = training format", template_matches)):
        if findings and findings[-1].status != OK:  # each step needs the one before
            findings.append(Finding(what, findings[-1].status, "needs the step above", findings[-1].fix))
            continue
        findings.append(attempt(what, step, fix))
    return findings
