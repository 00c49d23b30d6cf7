"""A client for any OpenAI-compatible chat endpoint (Grok, Sea-Lion via Ollama, OpenAI, …).

``POST {base_url}/chat/completions`` with httpx, a timeout per attempt and a few retries on
timeouts, connection errors, 429 and 5xx. Failure is an ``LlmError`` for the caller to turn into a
fallback reply: this module never produces text for the customer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Histogram

from kabar import egress
from kabar.ari.extract import COUNTRIES, DOCUMENTS, EMAIL_VALID, FIELDS, Extraction, detect_country
from kabar.observability.metrics import REGISTRY

LLM_SECONDS = Histogram(
    "kabar_ari_llm_seconds", "ARI model calls by outcome (retries included)", ["outcome"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64), registry=REGISTRY,
)

DEFAULT_BASE_URLS = {
    "grok": "https://api.x.ai/v1",
    "sealion": "https://api.sea-lion.ai/v1",
    "openai": "https://api.openai.com/v1",
    "ollama": "http://127.0.0.1:11434/v1",
}
PROVIDERS = (*DEFAULT_BASE_URLS, "custom")


class LlmError(Exception):
    """The model could not answer (timeout, HTTP error, unusable output)."""


def _i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def bucket(key: str) -> int:
    """0–99, the same as the original's JavaScript string hash (§6.4), over UTF-16 code units."""
    x = 0
    units = key.encode("utf-16-le")
    for i in range(0, len(units), 2):
        x = _i32(_i32(x) << 5) - x + int.from_bytes(units[i : i + 2], "little")
    return abs(x) % 100


@dataclass(frozen=True, slots=True)
class Target:
    """One model to call."""

    arm: str  # "a" or "b" (the A/B split)
    provider: str
    base_url: str
    model: str
    api_key: str | None
    timeout: float = 20.0
    retries: int = 1
    temperature: float = 0.7
    max_tokens: int = 300

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        # "https://api.x.ai/v1" → …/v1/chat/completions; a bare host gets the /v1 prefix.
        return base + ("/chat/completions" if re.search(r"/v\d+[a-z]*(/openai)?$", base) else "/v1/chat/completions")


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    model: str
    tokens: int | None
    latency_ms: int


def choose_target(llm: dict[str, Any], keys: dict[str, str], contact_id: str) -> Target | None:
    """The model for this contact: arm A when its bucket is below ``ab_split`` (or no B exists)."""
    if not llm or not llm.get("model"):
        return None
    arm, cfg = "a", llm
    alternate = llm.get("alternate") or None
    if alternate and alternate.get("model") and bucket(contact_id) >= int(llm.get("ab_split", 100)):
        arm, cfg = "b", {**llm, **alternate}
    provider = cfg.get("provider") or "custom"
    return Target(
        arm=arm,
        provider=provider,
        base_url=cfg.get("base_url") or DEFAULT_BASE_URLS.get(provider, ""),
        model=cfg["model"],
        api_key=keys.get("alternate_api_key" if arm == "b" else "api_key"),
        timeout=float(llm.get("timeout_seconds", 20.0)),
        retries=int(llm.get("max_retries", 1)),
        temperature=float(llm.get("temperature", 0.7)),
        max_tokens=int(llm.get("max_tokens", 300)),
    )


async def check_base_urls(llm: Any, settings: Any) -> None:
    """The save-time check of the model endpoints (given, or the provider's default), the same
    egress rules every call goes through; 422 naming the field."""
    from kabar.errors import invalid

    variants = [("llm.base_url", llm)]
    if getattr(llm, "alternate", None) is not None:
        variants.append(("llm.alternate.base_url", llm.alternate))
    for name, variant in variants:
        url = variant.base_url or DEFAULT_BASE_URLS.get(variant.provider)
        if not url:
            continue  # "custom" without a URL: the config check says it is required
        try:
            await egress.validate_url(url, allow_private=egress.private_allowed(settings))
        except egress.EgressRefused as exc:
            raise invalid(name, str(exc) if variant.base_url else f"the {variant.provider} default ({url}) {exc}") from None


_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


async def chat(
    target: Target,
    messages: list[dict[str, str]],
    *,
    json_mode: bool = False,
    max_tokens: int | None = None,
    temperature: float | None = None,
    client: httpx.AsyncClient | None = None,
) -> Completion:
    body: dict[str, Any] = {
        "model": target.model,
        "messages": messages,
        "max_tokens": max_tokens or target.max_tokens,
        "temperature": target.temperature if temperature is None else temperature,
    }
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    own = client is None
    client = client or egress.client(allow_private=False)  # callers pass one that knows the settings
    started = time.perf_counter()
    last_error = "no attempt"
    outcome = "error"
    try:
        for attempt in range(target.retries + 1):
            if attempt:
                await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
            try:
                response = await client.post(target.url, json=body, headers=headers, timeout=target.timeout)
            except egress.EgressRefused as exc:  # the same answer on every attempt: do not retry
                raise LlmError(f"base_url refused: {exc}") from None
            except httpx.TimeoutException:
                last_error = f"timeout after {target.timeout}s"
                continue
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}"
                continue
            if response.status_code in _RETRYABLE:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise LlmError(f"HTTP {response.status_code}")
            completion = _completion(response, target, started)
            outcome = "ok"
            return completion
        raise LlmError(last_error)
    finally:
        LLM_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        if own:
            await client.aclose()


def _completion(response: httpx.Response, target: Target, started: float) -> Completion:
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LlmError("unexpected response shape") from exc
    if not isinstance(content, str) or not content.strip():
        raise LlmError("empty reply")
    usage = data.get("usage") or {}
    return Completion(
        content=content.strip(),
        model=str(data.get("model") or target.model),
        tokens=usage.get("total_tokens") if isinstance(usage.get("total_tokens"), int) else None,
        latency_ms=int((time.perf_counter() - started) * 1000),
    )


def clean_reply(text: str) -> str:
    """Strip what models add around a WhatsApp message (quotes, role labels, <think> blocks)."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    text = re.sub(r"^\s*(assistant|ARI|bot)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = text.strip().strip('"').strip()
    return text[:1500]


def parse_extraction(content: str) -> Extraction:
    """The JSON the model returned, validated: unknown keys ignored, bad values dropped."""
    match = re.search(r"\{.*\}", content, flags=re.DOTALL)
    if not match:
        raise LlmError("no JSON object in extraction reply")
    try:
        data = json.loads(match.group(0))
    except ValueError as exc:
        raise LlmError("extraction reply is not valid JSON") from exc
    if not isinstance(data, dict):
        raise LlmError("extraction reply is not an object")
    out = Extraction()
    for key in FIELDS:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip() or value.strip().lower() in ("null", "none", "-"):
            continue
        value = value.strip()[:200]
        if key == "email" and not EMAIL_VALID.match(value):
            continue
        if key == "country":
            value = detect_country(value) or (value if value in COUNTRIES else value.title())
        out.fields[key] = value
    docs = data.get("documents") if isinstance(data.get("documents"), dict) else {}
    for key in DOCUMENTS:
        if isinstance(docs.get(key), bool):
            out.documents[key] = docs[key]
    out.wants_human = data.get("wants_human") is True
    out.wants_booking = data.get("wants_booking") is True
    return out
