"""The dataset card's length histogram: the replies the model learns, not the prompt every sample repeats."""

import matplotlib.pyplot as plt

from kit.data import card
from kit.persona import persona_for


def test_histogram_shows_reply_lengths_not_the_system_prompt(tmp_path, tiny_model, monkeypatch):
    """Before: it plotted whole samples, ~220 tokens of system prompt plus a ~10-token reply."""
    persona = persona_for("bajie")
    samples = [{"messages": [{"role": "system", "content": persona.system_prompt},
                             {"role": "user", "content": "你是谁？"},
                             {"role": "assistant", "content": reply}]}
               for reply in ("俺老猪", "猴哥，救命啊", "分行李，散伙！俺回高老庄去")]
    multi = {"messages": samples[0]["messages"] + [{"role": "user", "content": "饿吗？"},
                                                   {"role": "assistant", "content": "饿"}]}
    plotted = {}
    monkeypatch.setattr(card, "_histogram",
                        lambda train, held_out, png: plotted.update(train=train, eval=held_out))
    written = card.write_card(tmp_path, character="bajie", persona=persona, sources=[], train=samples + [multi],
                              held_out=samples[:1], tokenizer=tiny_model, settings={})
    assert len(plotted["train"]) == 5 and len(plotted["eval"]) == 1  # one value per assistant turn
    assert plotted["train"][3] == plotted["eval"][0] == plotted["train"][0]
    assert plotted["train"][0] < plotted["train"][1] < plotted["train"][2] < 30
    assert written["tokens"]["train"]["min"] > 100  # the card's stats still count whole samples

    fig = card.length_figure(plotted["train"], plotted["eval"])
    assert fig.axes[0].get_xlabel().startswith("tokens per reply")
    plt.close(fig)
