"""The gateway's settings: one ``GatewaySettings`` (env prefix ``GATEWAY_``) and the
sub-settings it nests (``GATEWAY_<PART>__<FIELD>``, or ``GATEWAY_<PART>`` as JSON)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from gateway.moderation import ANSWER_REFUSAL, DEFAULT_ACTIONS, REFUSAL, SAFETY_PROMPT, Action
from services.moderation_labels import LABELS
from services.settings import ServiceSettings
from services.turn_events import DEFAULT_EVENTS_STREAM


class UpstreamConfig(BaseModel):
    """One vLLM OpenAI server and what the gateway adds to requests routed to it."""

    url: str = Field(description="Base URL of its OpenAI API, e.g. http://127.0.0.1:8001/v1.")
    api_key: SecretStr | None = None
    stop: list[str] = Field(
        default_factory=list, description="Stop strings added to every request (OpenChatKit: <human>)."
    )
    default_max_tokens: int | None = Field(
        default=None, ge=1, description="Tokens reserved for the answer when a request sets none."
    )
    tokenizer: str | None = Field(
        default=None, description="Local tokenizer directory for counting; None: ask the upstream's /tokenize."
    )
    chat_template: str | None = Field(
        default=None, description="Template file the upstream serves with, for local counting."
    )
    discover: Literal["none", "dns"] = Field(
        default="none",
        description="dns: the URL's host is a headless Service; every address it resolves to is a replica "
        "(re-resolved at each model refresh).",
    )

    @property
    def root_url(self) -> str:
        """The server root (vLLM's /tokenize lives there, not under /v1)."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


class KeySettings(BaseModel):
    """Virtual keys. ``GATEWAY_KEYS__*`` (or ``GATEWAY_KEYS`` as JSON)."""

    enabled: bool | None = Field(
        default=None,
        description="Accept virtual keys (sk-ock-...) from the store. None: when a static key or the master key "
        "is set. Set true on replicas that hold neither (otherwise their API is open).",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL of the key store: the feedback service's database "
        "(default: its SQLite file in data_dir; PostgreSQL in deployments).",
    )
    migrate_on_start: bool = Field(default=True, description="Bring the store's schema up to date when opened.")
    cache_ttl_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a key lookup is cached in this process: a revocation or limit change made "
        "through another replica takes effect within this time (at once on the replica that made it).",
    )
    last_used_interval_s: float = Field(default=60.0, gt=0, description="How often last-used times are written.")


class LimitSettings(BaseModel):
    """Per-key rate limits in Redis. ``GATEWAY_LIMITS__*`` (or ``GATEWAY_LIMITS`` as JSON)."""

    enabled: bool = Field(default=True, description="Enforce the limits of keys that have some.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="The Redis every gateway replica shares (credentials in the URL: redis://:PASSWORD@host:port/0).",
    )
    redis_timeout_s: float = Field(default=0.5, gt=0, description="Socket timeout of limiter calls.")
    failure_mode: Literal["fail_open", "fail_closed"] = Field(
        default="fail_open",
        description="When Redis does not answer: fail_open serves requests without limits (counted in "
        "openchatkit_gateway_limiter_unavailable_total, logged once per log_interval_s); fail_closed answers 503.",
    )
    log_interval_s: float = Field(default=30.0, gt=0, description="At most one 'Redis unavailable' log line per this.")
    prefix: str = Field(default="ock:rl", description="Prefix of the limiter's Redis keys.")
    slot_lease_s: float = Field(
        default=900.0, gt=0, description="A concurrency slot not released (gateway crashed) frees itself after this."
    )
    default_reserve_tokens: int = Field(
        default=256,
        ge=1,
        description="Completion tokens reserved when neither the request nor the model sets max_tokens.",
    )
    owner_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="How long an answer's id is remembered for feedback by its key."
    )


class FeedbackCaptureSettings(BaseModel):
    """Turn capture for the feedback loop. ``GATEWAY_FEEDBACK__*`` (or ``GATEWAY_FEEDBACK`` as JSON)."""

    enabled: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    stream: str = DEFAULT_EVENTS_STREAM
    service_url: str = Field(
        default="http://127.0.0.1:8004", description="The feedback service /v1/feedback is proxied to."
    )
    queue_size: int = Field(default=10_000, ge=1, description="Turns held in memory while Redis is slow or away.")
    batch_size: int = Field(default=128, ge=1, description="Turns published in one pipelined round trip.")
    redis_timeout_s: float = Field(default=1.0, gt=0)


class ModerationPolicySettings(BaseModel):
    """``GATEWAY_MODERATION`` (JSON) or ``GATEWAY_MODERATION__<FIELD>``. Off unless enabled
    (``openchatkit run`` enables it), so a bare gateway needs no moderation service."""

    enabled: bool = False
    url: str = Field(default="http://127.0.0.1:8002", description="The moderation service.")
    timeout_s: float = Field(default=10.0, gt=0)
    input_actions: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    output_actions: dict[str, Action] = Field(
        default_factory=lambda: dict(DEFAULT_ACTIONS), description="For answers, caution counts as allow."
    )
    moderate_answers: bool = True
    unsupported_language_action: Action = Field(
        default="caution",
        description="At least this for text in a language the moderation model cannot judge (block: refuse it).",
    )
    moderate_window: bool = Field(
        default=True, description="Also classify all client messages together as one text (worst label wins)."
    )
    fail_mode: Literal["closed", "open"] = "closed"
    stream_window: Literal["sentence", "tokens"] = Field(
        default="sentence", description="Classify streamed text per sentence, or per stream_window_tokens words."
    )
    stream_window_tokens: int = Field(default=24, ge=1, description="Window size in words (sentence mode: the cap).")
    max_text_chars: int = Field(
        default=20_000, ge=100, description="Longer texts are classified in pieces; the worst counts."
    )
    safety_prompt: str = SAFETY_PROMPT
    refusal: str = REFUSAL
    answer_refusal: str = ANSWER_REFUSAL

    @field_validator("input_actions", "output_actions")
    @classmethod
    def _known_labels(cls, value: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(value) - set(LABELS))
        if unknown:
            raise ValueError(f"unknown labels {unknown}; the labels are {list(LABELS)}")
        return {label: value.get(label, DEFAULT_ACTIONS[label]) for label in LABELS}


class RetrievalDefaults(BaseModel):
    """What a request gets when it does not say (per model, or for every model)."""

    enabled: bool = False
    top_k: int = Field(default=4, ge=1, le=50)
    sources: list[str] | None = Field(default=None, description="None: the retrieval service's default sources.")
    widen: bool = False


class RetrievalPolicySettings(BaseModel):
    """Retrieval augmentation. ``GATEWAY_RETRIEVAL__*`` (or ``GATEWAY_RETRIEVAL`` as JSON)."""

    url: str = Field(default="http://127.0.0.1:8003", description="The retrieval service.")
    timeout_s: float = Field(default=5.0, gt=0)
    defaults: RetrievalDefaults = Field(default_factory=RetrievalDefaults)
    models: dict[str, RetrievalDefaults] = Field(default_factory=dict, description="Per-model defaults by model id.")
    max_top_k: int = Field(default=20, ge=1)
    max_source_chars: int = Field(default=1200, ge=100, description="Text of one source given to the model.")
    max_context_chars: int = Field(default=4000, ge=200, description="Text of all sources together.")
    manage_collections: bool = Field(default=True, description="DELETE /v1/collections through the gateway.")
    manage_timeout_s: float = Field(default=60.0, gt=0, description="Listing and deleting collections.")


class RoutingSettings(BaseModel):
    """Replica routing, ejection and backpressure. ``GATEWAY_ROUTING__*`` (or ``GATEWAY_ROUTING`` as JSON)."""

    policy: Literal["least_busy", "round_robin", "session"] = Field(
        default="least_busy",
        description="least_busy: fewest in-flight requests from this gateway (ties: vLLM's "
        "num_requests_waiting); round_robin; session: the same conversation (X-Session-Id, else the "
        "first user message) goes to the same replica, for prefix-cache hits.",
    )
    session_header: str = Field(default="x-session-id", description="Header naming a conversation for 'session'.")
    max_in_flight_per_replica: int = Field(default=128, ge=1, description="Generations one replica is sent at once.")
    max_waiting: int = Field(
        default=256, ge=0, description="Requests queued when every replica is full; beyond them, 429."
    )
    queue_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait in that queue before a 429.")
    max_attempts: int = Field(
        default=2,
        ge=1,
        description="Tries per request on different replicas, while nothing has been sent to the client.",
    )
    eject_after_failures: int = Field(default=1, ge=1, description="Consecutive failures that eject a replica.")
    ejection_base_s: float = Field(default=1.0, gt=0, description="First ejection's back-off; doubles per repeat.")
    ejection_max_s: float = Field(default=10.0, gt=0, description="Longest back-off.")
    probe_interval_s: float = Field(default=0.5, gt=0, description="How often ejected replicas are checked.")
    probe_timeout_s: float = Field(default=5.0, gt=0, description="Model listing, probes and scrapes.")
    scrape_interval_s: float = Field(
        default=2.0, ge=0, description="How often vLLM's /metrics is read for num_requests_waiting (0: never)."
    )

    def per_worker(self, workers: int) -> RoutingSettings:
        """One of ``workers`` gateway processes' share of the slot and queue bounds (rounded up),
        so the processes together hold a replica to about ``max_in_flight_per_replica``."""
        if workers <= 1:
            return self
        share = {
            "max_in_flight_per_replica": -(-self.max_in_flight_per_replica // workers),
            "max_waiting": -(-self.max_waiting // workers),
        }
        return self.model_copy(update=share)


class GatewaySettings(ServiceSettings):
    """The public API. Env prefix ``GATEWAY_``; lists and objects are JSON."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    port: int = 8000
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Gateway processes on this port (uvicorn workers; about one per core). Each holds its share "
        "of routing.max_in_flight_per_replica and routing.max_waiting, its own circuit breakers and key cache; "
        "rate limits are shared in Redis and /metrics sums every worker.",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Static bearer keys (the bootstrap key of make run), unlimited. With no static key, no "
        "master key and no virtual keys enabled, the API is open.",
    )
    master_key: SecretStr | None = Field(
        default=None, description="Bearer key of the admin API (/admin/keys); no default: unset disables it."
    )
    metrics_key: SecretStr | None = Field(
        default=None, description="When set, GET /metrics needs 'Authorization: Bearer <metrics_key>'."
    )
    keys: KeySettings = Field(default_factory=KeySettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    upstreams: list[UpstreamConfig] = Field(default_factory=lambda: [UpstreamConfig(url="http://127.0.0.1:8001/v1")])
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    request_timeout_s: float = Field(default=600.0, gt=0)
    model_refresh_s: float = Field(default=30.0, gt=0, description="How often upstream model lists are re-read.")
    template_overhead_tokens: int = Field(
        default=128, ge=0, description="Upper bound on the tokens a chat template adds, for the no-count fast path."
    )
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_prompts_per_request: int = Field(
        default=32, ge=1, description="/v1/completions: most prompts in one request's `prompt` list."
    )
    max_choices_per_request: int = Field(
        default=64, ge=1, description="/v1/completions: most generations per request (`n` x prompts)."
    )
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Document uploads (/v1/documents).")
    feedback: FeedbackCaptureSettings = Field(default_factory=FeedbackCaptureSettings)
    retrieval: RetrievalPolicySettings = Field(default_factory=RetrievalPolicySettings)
    moderation: ModerationPolicySettings = Field(default_factory=ModerationPolicySettings)
