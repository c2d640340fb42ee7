"""Lab 5's check: start `kit serve`'s own servers on loopback, ask them with the openai client, stop.

The plan comes from kit.serve (LMDeploy on a GPU with its environment, the embedded transformers
server otherwise), so the check exercises exactly what `kit serve` runs.
"""

from pathlib import Path

from rich.console import Console

from kit.labs.findings import Missing


def ask_servers(models: dict[str, Path], character: str) -> str:
    """Each model answers plainly and streamed; a request without a system prompt gets the persona's."""
    from openai import OpenAI

    from kit.persona import persona_for
    from kit.serve.launch import Children, free_port
    from kit.serve.plan import plan_servers, resolve_engine
    from kit.serve.settings import ServeSettings

    engine = resolve_engine("auto")
    servers = plan_servers(models, ServeSettings(engine=engine, port=free_port(), character=character))
    children = Children(Console(stderr=True))
    system = persona_for(character).system_prompt
    seen = []
    try:
        for s in servers:
            children.wait_ready(s.label, children.start(s.label, s.cmd), f"{s.url}/models", {}, s.start_timeout)
        for s in servers:
            client = OpenAI(base_url=s.url, api_key="none", timeout=120)
            for name in s.names:
                ask = [{"role": "user", "content": "你是谁？"}]
                plain = client.chat.completions.create(model=name, messages=ask, max_tokens=8, temperature=0)
                persona = client.chat.completions.create(
                    model=name, messages=[{"role": "system", "content": system}, *ask], max_tokens=8, temperature=0)
                if plain.usage.prompt_tokens != persona.usage.prompt_tokens:
                    raise Missing(f"{name}: a request without a system prompt did not get the persona's "
                                  f"({plain.usage.prompt_tokens} vs {persona.usage.prompt_tokens} prompt tokens)",
                                  "serve with kit serve --character NAME (the persona's template)")
                stream = client.chat.completions.create(model=name, messages=ask, max_tokens=8, temperature=0,
                                                        stream=True)
                chunks = [c.choices[0] for c in stream if c.choices]
                streamed = "".join(c.delta.content or "" for c in chunks)
                answer = plain.choices[0].message.content or ""
                # Greedy both ways: the stream must end, and say what the plain answer said.
                fix = "check the server's log; serve with `kit serve` as lab 5 shows"
                if not chunks or not chunks[-1].finish_reason:
                    raise Missing(f"{name}: the streamed answer never finished", fix)
                if streamed != answer:
                    raise Missing(f"{name}: the streamed answer {streamed!r} is not the plain one {answer!r}", fix)
                seen.append(f"{name}: {answer[:20]!r}, the same streamed in "
                            f"{sum(1 for c in chunks if c.delta.content)} chunks")
    finally:
        children.stop_all()
    return f"{engine}: " + "; ".join(seen)
