"""The openai engine: any OpenAI-compatible server (vLLM's, llama.cpp's, TGI, a hosted API)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm.auto import tqdm

from ..models import end_of_turn_ids
from ..redaction import redact_url
from .base import Chat, ChoicePlan, Completion, EngineError, Refusal, SamplingParams, encode_chat, redact

log = logging.getLogger(__name__)

NO_PROMPT_LOGPROBS = (
    "returned no prompt logprobs; logprob reads need a completions endpoint that echoes the "
    "prompt's logprobs (vLLM's server does), or use --mode generate"
)


class OpenAIEngine:
    """Any OpenAI-compatible server. The official client does the retries (exponential backoff on
    connection errors, timeouts, 429 and 5xx); a thread pool keeps ``concurrency`` requests in
    flight. The API key is read from the environment and held only by the client.

    A new assistant turn goes to the chat endpoint, where the server applies its own template. A
    prompt that ends with the assistant's own text to be continued (the "Score:" follow-up) and
    every choice read go to the completions endpoint instead, as token ids rendered here with the
    model's tokenizer and chat template (``continue_with: completions``): servers without vLLM's
    ``continue_final_message`` extension (llama.cpp, TGI, hosted APIs) would start a new turn and
    silently read the wrong text. ``continue_with: chat_extension`` uses vLLM's extension instead.
    Choices are read teacher-forced from the prompt logprobs the server echoes (see ChoicePlan);
    a server that cannot echo them stops the stage with a message saying so.

    A prompt the server refuses (400: too long, say) comes back as None with the server's reason
    as the Completion's refusal (a read: in ``refusal_reasons``, index -> reason, for the last call); a stage
    decides how many it takes.
    A server that cannot be reached, rejects the key, or keeps answering with something that is
    not a completion (no choices, not JSON, no logprobs when asked) raises EngineError."""

    name = "openai"

    @classmethod
    def from_config(cls, model_path: str, cfg) -> OpenAIEngine:
        return cls(
            cfg.served_model or model_path,
            cfg.base_url,
            cfg.api_key_env,
            cfg.concurrency,
            cfg.request_timeout,
            cfg.max_retries,
            tokenizer=cfg.tokenizer or model_path,
            chat_template=cfg.chat_template,
            continue_with=cfg.continue_with,
        )

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 2,
        tokenizer: str | None = None,
        chat_template: str | None = None,
        continue_with: str = "completions",
    ):
        from openai import OpenAI

        if not base_url:
            raise ValueError("the openai engine needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self._key = os.environ.get(api_key_env) or ""
        self.client = OpenAI(base_url=base_url, api_key=self._key or "none", timeout=timeout, max_retries=max_retries)
        self.base_url = redact_url(base_url)  # what messages show: never the URL's credentials
        self.model = str(model)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.continue_with = continue_with
        self.refusal_reasons: dict[int, str] = {}
        self._tokenizer_source, self._chat_template = tokenizer or model, chat_template
        self._tokenizer = None
        self.stop: list[str] = []
        if os.path.isdir(str(self._tokenizer_source)):  # the end-of-turn tokens as stop strings
            try:
                self.stop = [self.tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(self.tokenizer)]
            except EngineError:
                pass

    @property
    def tokenizer(self):
        """The model's tokenizer and chat template, for rendering prompts sent as token ids."""
        if self._tokenizer is None:
            from ..models import load_tokenizer

            try:
                self._tokenizer = load_tokenizer(self._tokenizer_source, chat_template=self._chat_template)
            except Exception as e:  # noqa: BLE001 - not a local folder, no hub access, ...
                raise EngineError(
                    f"continuing an assistant message and reading choices on {self.base_url} need the "
                    f"model's tokenizer, and {self._tokenizer_source!r} gives none ({type(e).__name__}: "
                    f"{e}); pass --tokenizer DIR (or, on a vLLM server, --continue-with "
                    f"chat_extension for generation)"
                ) from None
        return self._tokenizer

    def _fail(self, what: str, error: Exception | str) -> EngineError:
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return EngineError(
            f"server {self.base_url} (model {self.model}): {what} ({redact(str(detail), (self._key,))})"
        )

    def _call(self, create, check, **kwargs):
        """``create(**kwargs)``'s response once ``check(response)`` finds it whole (a reason string
        when not), or a Refusal for a prompt the server rejected."""
        import openai

        problem: Exception | str = ""
        for _attempt in range(self.max_retries + 1):  # malformed answers: the client only retries errors
            try:
                response = create(model=self.model, **kwargs)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise self._fail("the API key was rejected (set the variable --api-key-env names)", e) from None
            except openai.NotFoundError as e:
                raise self._fail(
                    "no such model or endpoint (check --served-model and --base-url; logprob reads "
                    "and continued messages need the completions endpoint)",
                    e,
                ) from None
            except openai.BadRequestError as e:  # this prompt, not the server: keep going without it
                reason = redact(str(getattr(e, "message", e)), (self._key,))
                log.warning("server refused a prompt: %s", reason)
                return Refusal(f"server refused the prompt: {reason}")
            except (openai.APIConnectionError, openai.APITimeoutError) as e:  # after the client's own retries
                raise self._fail("did not answer", e) from None
            except (openai.APIError, ValueError, TypeError) as e:  # 5xx after retries, a body that is not JSON
                problem = e
                continue
            choices = getattr(response, "choices", None)
            if not choices:
                problem = "a response without choices"
                continue
            problem = check(choices[0])
            if not problem:
                return response
        raise self._fail(f"answered {self.max_retries + 1} times with something that is not a completion", problem)

    def _chat(self, prompt: Chat, need_logprobs: bool = False, **kwargs):
        extra = None
        if prompt[-1]["role"] == "assistant":  # continue_with chat_extension: vLLM's own way
            extra = {"continue_final_message": True, "add_generation_prompt": False}

        def check(choice):
            if getattr(choice, "message", None) is None:
                return "a response without a message"
            if need_logprobs and not (choice.logprobs and choice.logprobs.content):
                raise self._fail("returned no logprobs", "logprobs missing")
            return ""

        return self._call(self.client.chat.completions.create, check, messages=prompt, extra_body=extra, **kwargs)

    def _completion(self, token_ids: list[int], **kwargs):
        def check(choice):
            return "" if isinstance(getattr(choice, "text", None), str) else "a completion without text"

        return self._call(self.client.completions.create, check, prompt=token_ids, **kwargs)

    def _map(self, fn, items: list, desc: str) -> list:
        self.refusal_reasons = {}
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(tqdm(pool.map(fn, items), total=len(items), desc=desc, unit="prompt", leave=False))
        out: list = []
        for i, result in enumerate(results):
            if isinstance(result, Refusal):
                self.refusal_reasons[i] = result.reason
                out.append(None)
            else:
                out.append(result)
        return out

    def generate(self, prompts: list[Chat], params: SamplingParams) -> list[str | None]:
        return [c.text for c in self.complete(prompts, params)]

    def complete(self, prompts: list[Chat], params: SamplingParams) -> list[Completion]:
        sampling: dict[str, Any] = dict(
            temperature=params.temperature,
            max_tokens=params.max_new_tokens,
            top_p=params.top_p if params.temperature > 0 else 1.0,
            seed=params.seed,
        )
        if self.stop:
            sampling["stop"] = self.stop

        def one(prompt: Chat):
            if prompt[-1]["role"] == "assistant" and self.continue_with == "completions":
                response = self._completion(encode_chat(self.tokenizer, prompt), **sampling)
                if isinstance(response, Refusal):
                    return response
                text = response.choices[0].text
            else:
                response = self._chat(prompt, **sampling)
                if isinstance(response, Refusal):
                    return response
                text = response.choices[0].message.content
            usage = getattr(response, "usage", None)  # what the server counted, when it says
            return (
                (text or "").strip(),
                response.choices[0].finish_reason == "length",
                getattr(usage, "prompt_tokens", None),
                getattr(usage, "completion_tokens", None),
            )

        results = self._map(one, prompts, "generate")
        return [
            Completion(None, refusal=self.refusal_reasons.get(i, "the server refused the prompt"))
            if r is None
            else Completion(r[0], cut_off=r[1], prompt_tokens=r[2], generated_tokens=r[3])
            for i, r in enumerate(results)
        ]

    def choice_logprobs(self, prompts: list[Chat], choices: list[str]) -> list[dict[str, float] | None]:
        """Each choice teacher-forced: prompt + choice is sent as token ids to the completions
        endpoint with echo, and the logprobs of the choice's tokens are read from the prompt's."""
        plans = [ChoicePlan.make(self.tokenizer, p, choices) for p in prompts]

        def one(plan: ChoicePlan):
            read: dict = {}
            for ids, start in plan.sequences():
                value = self._read(list(ids), start)
                if isinstance(value, Refusal):
                    return value
                read[(ids, start)] = value
            return plan.combine(read)

        return self._map(one, plans, "score")

    def sequence_logprobs(self, reads: list[tuple[list[int], int]]) -> list[float | None]:
        return self._map(lambda read: self._read(*read), reads, "score")

    def token_logprobs(self, reads: list[tuple[list[int], int]]) -> list[list[float] | None]:
        return self._map(lambda read: self._read(read[0], read[1], per_token=True), reads, "score")

    def _read(self, ids: list[int], start: int, per_token: bool = False) -> float | list[float] | Refusal:
        """log P(ids[start:] | ids[:start]) (or each token's) from the prompt logprobs the completions
        endpoint echoes."""
        response = self._completion(ids, max_tokens=1, temperature=0.0, echo=True, logprobs=1)
        if isinstance(response, Refusal):
            return response
        logprobs = getattr(response.choices[0], "logprobs", None)
        values = getattr(logprobs, "token_logprobs", None) or []
        if len(values) < len(ids):
            raise self._fail(NO_PROMPT_LOGPROBS, f"{len(values)} token logprobs for {len(ids)} prompt tokens")
        read = [values[t] for t in range(max(start, 1), len(ids))]
        return read if per_token else sum(read)

    def close(self) -> None:
        self.client.close()
