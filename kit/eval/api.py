"""How `kit eval` reaches an OpenAI-compatible server (a model under test or the judge): which key goes
where, and the server's failures as errors that name its URL and the fix.

A key goes only to the URL it was named for (--api-key-env, --judge-key-env), never over plain http to
another host, where anyone on the way could read it. Nothing else is taken from the environment: the
openai client would otherwise send $OPENAI_API_KEY, $OPENAI_ORG_ID and $OPENAI_PROJECT_ID to any host.
"""

import json
import os
from contextlib import contextmanager

from kit.errors import KitError
from kit.keys import refuse_plain_http

NO_KEY = "EMPTY"  # what keyless servers (LMDeploy, vLLM, `kit serve`) accept; the client needs some key
EXCERPT = 200  # characters of a broken answer quoted in an error


class BadAnswer(Exception):
    """An HTTP 200 whose body is no chat completion; the message quotes what came back."""


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= EXCERPT else text[:EXCERPT] + "…")


class Server:
    """One OpenAI-compatible base URL, its key (if one was named) and the client that uses them."""

    def __init__(self, url: str, key_env: str | None, key_flag: str, start_fix: str):
        import openai

        url = url.rstrip("/")
        self.url = url if url.endswith("/v1") else url + "/v1"
        self.key_env, self.key_flag, self.start_fix = key_env, key_flag, start_fix
        self.client = openai.OpenAI(base_url=self.url, api_key=self._key(), max_retries=2, timeout=120,
                                    default_headers={"OpenAI-Organization": openai.Omit(),
                                                     "OpenAI-Project": openai.Omit()})

    def _key(self) -> str:
        """The key from the named variable only; it is never written to the report or logs."""
        if self.key_env is None:
            return NO_KEY
        refuse_plain_http(self.url, self.key_flag, self.key_env)
        key = os.environ.get(self.key_env)
        if not key:
            raise KitError(f"{self.key_flag} {self.key_env}: that environment variable is not set",
                           f"export {self.key_env}=... (the key of {self.url})")
        return key

    @contextmanager
    def errors(self):
        """No connection and a refused key become KitErrors; other HTTP errors pass to the caller."""
        import openai

        try:
            yield
        except openai.APIConnectionError:
            raise KitError(f"no OpenAI-compatible server answers at {self.url}", self.start_fix) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise self._refused(e.status_code) from None

    def _refused(self, status: int) -> KitError:
        if self.key_env:
            return KitError(f"HTTP {status} from {self.url}: it refused the key in ${self.key_env}",
                            f"set {self.key_flag} to the variable holding this server's key")
        return KitError(f"HTTP {status} from {self.url}: it wants a key, and none was sent",
                        f"set {self.key_flag} NAME, NAME being the environment variable holding the "
                        "server's key")

    def check(self) -> list[str]:
        """Reach the server before any work (no answer or a refused key stop here); the models it lists."""
        import openai

        try:
            with self.errors():
                return [m.id for m in self.client.models.list().data]
        except (openai.APIStatusError, ValueError, AttributeError, TypeError):
            return []  # not every server lists its models

    def chat(self, **body) -> str:
        """One chat completion's text, read from the raw body so that a broken one can be quoted."""
        with self.errors():
            raw = self.client.chat.completions.with_raw_response.create(**body)
        try:
            content = json.loads(raw.text)["choices"][0]["message"].get("content") or ""
        except (ValueError, LookupError, TypeError, AttributeError):
            content = None
        if not isinstance(content, str):
            raise BadAnswer(f"{self.url} answered no chat completion: {excerpt(raw.text)}")
        return content
