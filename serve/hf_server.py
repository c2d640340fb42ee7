"""`python -m kit.serve.hf_server --model base=PATH --model tuned=PATH`: the embedded server process.

`kit serve --engine transformers` starts this as a child; tests start it in-process with create_app.
"""

import argparse
import os
import sys

from kit.errors import KitError

SHUTDOWN_GRACE = 3  # seconds; well inside the 10 s `kit serve` waits before SIGKILL


def parse_model_specs(specs: list[str]) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise KitError(f"--model {spec!r}: expected NAME=PATH", "e.g. --model tuned=demo/merged")
        if name in models:
            raise KitError(f"--model: the name '{name}' is given twice")
        models[name] = path
    return models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23333)
    parser.add_argument("--character", default=None, help="persona whose system prompt is the default "
                        "(default: the one the models record, kit_merge.json)")
    parser.add_argument("--api-key-env", default=None,
                        help="name of the environment variable that holds the API key (never the key)")
    parser.add_argument("--max-parallel", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from rich.console import Console

        from kit.artifacts import choose_persona
        from kit.serve.hf_engine import HFChatModel
        from kit.serve.openai_api import create_app

        key = os.environ.get(args.api_key_env) if args.api_key_env else None
        if args.api_key_env and not key:
            raise KitError(f"${args.api_key_env} is empty", f"export {args.api_key_env}=... first")
        specs = parse_model_specs(args.model)
        system = choose_persona(args.character, list(specs.values()), Console(stderr=True)).system_prompt
        models = {name: HFChatModel(name, path, system, args.max_parallel) for name, path in specs.items()}
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # On SIGTERM (from `kit serve`, or the parent-death signal when it died) a request still generating
    # gets SHUTDOWN_GRACE seconds, then is cancelled; generation threads are daemons and do not hold
    # the exit.
    uvicorn.run(create_app(models, key), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=SHUTDOWN_GRACE)


if __name__ == "__main__":
    main()
