"""EvaluateChatHook fed from persona.yaml: the recipe never holds a copy of the persona's text."""

import json
from pathlib import Path

from mmengine.dist import master_only
from xtuner.engine.hooks import EvaluateChatHook

from kit import atomic
from kit.persona import load_persona

SAMPLES_DIR = "samples"  # in the work dir: iter_N.json per checkpoint, iter_0.json before training


class PersonaChatHook(EvaluateChatHook):
    """XTuner's EvaluateChatHook with the system prompt and probe questions of `persona_file`.

    Like XTuner's hook it chats at every checkpoint; it also chats before the first step (iter 0,
    the untuned model) and writes each round to work_dir/samples/iter_N.json, N being the
    checkpoint's iteration, so `kit train` can lay the checkpoints side by side.
    """

    def __init__(self, persona_file: str, **kwargs):
        persona = load_persona(persona_file)
        super().__init__(system=persona.system_prompt, evaluation_inputs=persona.probe_questions,
                         stop_words=[], **kwargs)
        self._step = 0

    def before_train(self, runner):
        runner.logger.info("before_train in PersonaChatHook.")
        self._step = runner.iter
        # A resumed run already has its iter-N samples; only a fresh run records the untuned model.
        self._generate_samples(runner, max_new_tokens=self.max_new_tokens,
                               save_eval_output=runner.iter == 0)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._step = runner.iter + 1  # runner.iter is bumped only after the hooks ran
        super().after_train_iter(runner, batch_idx, data_batch, outputs)

    @master_only
    def _save_eval_output(self, runner, eval_outputs):
        # XTuner adds one "\n" to each decoded chat; the prompt's own last "\n" must stay.
        records = [{"question": q, "text": text[:-1] if text.endswith("\n") else text}
                   for q, text in zip(self.evaluation_inputs, eval_outputs)]
        atomic.write_text(Path(runner.work_dir, SAMPLES_DIR, f"iter_{self._step}.json"),
                          json.dumps({"iter": self._step, "samples": records}, ensure_ascii=False, indent=1))
