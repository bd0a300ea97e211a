"""The openai engine: any OpenAI-compatible server (vLLM's, llama.cpp's, TGI, a hosted API)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from .base import Chat, EngineError, Refusal, SamplingParams, logsumexp, redact

log = logging.getLogger(__name__)


class OpenAIEngine:
    """Any OpenAI-compatible chat server. The official client does the retries (exponential
    backoff on connection errors, timeouts, 429 and 5xx); a thread pool keeps ``concurrency``
    requests in flight. The API key is read from the environment and held only by the client.

    A prompt the server refuses (400: too long, say) comes back as None with the server's reason
    in ``refusal_reasons`` (index -> reason, for the last call); a stage decides how many it takes.
    A server that cannot be reached, rejects the key, or keeps answering with something that is
    not a completion (no choices, not JSON, no logprobs when asked) raises EngineError."""

    name = "openai"

    @classmethod
    def from_config(cls, model_path: str, cfg) -> "OpenAIEngine":
        return cls(cfg.served_model or model_path, cfg.base_url, cfg.api_key_env, cfg.concurrency,
                   cfg.request_timeout, cfg.max_retries)

    def __init__(self, model: str, base_url: str | None, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float = 120.0, max_retries: int = 2):
        from openai import OpenAI

        if not base_url:
            raise ValueError("the openai engine needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self._key = os.environ.get(api_key_env) or ""
        self.client = OpenAI(base_url=base_url, api_key=self._key or "none", timeout=timeout, max_retries=max_retries)
        self.base_url = base_url
        self.model = str(model)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.refusal_reasons: dict[int, str] = {}

    def _fail(self, what: str, error: Exception | str) -> EngineError:
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return EngineError(f"server {self.base_url} (model {self.model}): {what} ({redact(str(detail), (self._key,))})")

    def _request(self, prompt: Chat, need_logprobs: bool = False, **kwargs):
        """The server's response, or a refusal reason (str) for a prompt it rejected."""
        import openai

        extra = {}
        if prompt[-1]["role"] == "assistant":  # continue the assistant's text (vLLM's chat extension)
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        problem: Exception | str = ""
        for _attempt in range(self.max_retries + 1):  # malformed answers: the client only retries errors
            try:
                response = self.client.chat.completions.create(model=self.model, messages=prompt,
                                                               extra_body=extra or None, **kwargs)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise self._fail("the API key was rejected (set the variable --api-key-env names)", e) from None
            except openai.NotFoundError as e:
                raise self._fail("no such model or endpoint (check --served-model and --base-url)", e) from None
            except openai.BadRequestError as e:  # this prompt, not the server: keep going without it
                reason = redact(str(getattr(e, "message", e)), (self._key,))
                log.warning("server refused a prompt: %s", reason)
                return f"server refused the prompt: {reason}"
            except (openai.APIConnectionError, openai.APITimeoutError) as e:  # after the client's own retries
                raise self._fail("did not answer", e) from None
            except (openai.APIError, ValueError, TypeError) as e:  # 5xx after retries, a body that is not JSON
                problem = e
                continue
            choices = getattr(response, "choices", None)
            if not choices or getattr(choices[0], "message", None) is None:
                problem = "a response without choices"
                continue
            if need_logprobs and not (choices[0].logprobs and choices[0].logprobs.content):
                raise self._fail("returned no logprobs; logprob rating needs a server that returns top_logprobs "
                                 "(vLLM does), or use --mode generate", "logprobs missing") from None
            return response
        raise self._fail(f"answered {self.max_retries + 1} times with something that is not a completion", problem)

    def _map(self, fn, prompts: list[Chat], desc: str) -> list:
        self.refusal_reasons = {}
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(tqdm(pool.map(fn, prompts), total=len(prompts), desc=desc, unit="prompt", leave=False))
        out = []
        for i, result in enumerate(results):
            if isinstance(result, Refusal):
                self.refusal_reasons[i] = result.reason
                out.append(None)
            else:
                out.append(result)
        return out

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str | None]:
        def one(prompt: Chat):
            response = self._request(prompt, temperature=params.temperature, max_tokens=params.max_new_tokens,
                                     top_p=params.top_p if params.temperature > 0 else 1.0, seed=params.seed)
            if isinstance(response, str):
                return Refusal(response)
            return (response.choices[0].message.content or "").strip()

        return self._map(one, prompts, "generate")

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list[dict[str, float] | None]:
        def one(prompt: Chat):
            response = self._request(prompt, need_logprobs=True, temperature=0.0, max_tokens=1, logprobs=True,
                                     top_logprobs=20)
            if isinstance(response, str):
                return Refusal(response)
            top = response.choices[0].logprobs.content[0].top_logprobs or []
            return {c: logsumexp([t.logprob for t in top if t.token.strip() == c]) for c in choices}

        return self._map(one, prompts, "score")

    def close(self) -> None:
        self.client.close()
