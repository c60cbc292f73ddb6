"""Settings for every component, from `CHAKOR_*` environment variables and an optional `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import REPO_ROOT
from common.chat import SYSTEM_PROMPT

ENV_PREFIX = "CHAKOR_"
DEV_JWT_SECRET = "dev-insecure-change-me"
MIN_JWT_SECRET_BYTES = 32  # HS256 keys shorter than its 256-bit output weaken it (RFC 7518 3.2)
# The backend reads a conversation's tree (every version of every message) up to this many nodes,
# so CHAKOR_MAX_MESSAGES_PER_CONVERSATION, which every write (turn or import) keeps to, may not pass it.
MAX_CONVERSATION_MESSAGES = 5000


class Settings(BaseSettings):
    """All of Chakor's configuration. Field `foo_bar` is read from `CHAKOR_FOO_BAR`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "production"] = "development"

    # Network endpoints of the four components.
    backend_host: str = "127.0.0.1"
    backend_port: int = Field(8000, ge=1, le=65535)
    frontend_host: str = "127.0.0.1"
    frontend_port: int = Field(3000, ge=1, le=65535)
    llama_host: str = "127.0.0.1"
    llama_port: int = Field(8080, ge=1, le=65535)
    db_host: str = "127.0.0.1"
    db_port: int = Field(27017, ge=1, le=65535)

    # Database: unset -> the embedded mongoeco sidecar; set -> that MongoDB, no sidecar.
    mongodb_uri: str | None = None
    db_name: str = "chakor"
    db_storage: Literal["sqlite", "memory"] = "sqlite"

    # Model served by llama-server and the tokenizer the backend renders prompts with.
    model_path: Path | None = None
    tokenizer_path: Path | None = None
    llama_server_bin: Path | None = None
    llama_extra_urls: list[str] = Field(default_factory=list)
    llama_ctx_size: int = Field(2048, ge=64)
    llama_threads: int = Field(2, ge=1)
    llama_parallel: int = Field(4, ge=1)
    # The registry of models served side by side (`chakor models`; `chakor up` sets it when one lists any):
    # the backend then serves its models, each on its own port, instead of the one model above.
    model_registry: Path | None = None
    # The key llama-server demands and the backend sends (`chakor up` makes a new one each start).
    llama_api_key: str | None = None

    # Where runs, logs and pid files live (relative paths are relative to the repository root).
    runs_dir: Path = Path("runs")
    var_dir: Path = Path("var")
    # `chakor up` rotates each component's log under <var>/logs at this size, keeping this many old files.
    log_max_bytes: int = Field(10 << 20, ge=4096)
    log_backups: int = Field(5, ge=1)

    # Auth and security.
    jwt_secret: str = DEV_JWT_SECRET
    access_token_minutes: int = Field(15, ge=1)
    refresh_token_days: int = Field(30, ge=1)
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:3000", "http://localhost:3000"]
    )
    graphiql: bool | None = None
    # GraphiQL's npm packages (frontend/setup.sh installs them), served by the backend from /graphql/static/.
    graphiql_assets_dir: Path = Path(".tools/graphiql/node_modules")
    introspection: bool | None = None
    # Who may create an account: `open`, `approval` (an admin approves), `closed` (admins create accounts).
    signup: Literal["open", "approval", "closed"] | None = None
    # The first admin: created at backend start-up when no account has this e-mail (needs the password).
    admin_email: str | None = None
    admin_password: str | None = None
    # The address people reach the site at (e.g. `https://chat.example.com` when nginx fronts it): the
    # pages name `<public_url>/v1` as the OpenAI-compatible base URL. Empty: the backend's own address.
    public_url: str = ""
    # Peers whose X-Forwarded-For is believed (addresses or CIDR networks): nginx, the web app.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    max_message_chars: int = Field(32_000, ge=1)
    max_concurrent_streams_per_user: int = Field(2, ge=1)
    login_max_attempts: int = Field(5, ge=1)
    login_window_seconds: int = Field(60, ge=1)
    # Sign-up attempts (each one argon2 hash) per client address per window; every attempt counts.
    signup_max_attempts: int = Field(20, ge=1)
    signup_window_seconds: int = Field(3600, ge=1)

    # Per-user caps on stored data and paid calls (each refusal names its setting).
    max_conversations_per_user: int = Field(1000, ge=1)
    # 2000: what imports always allowed; reading a tree that wide takes about 1.5 s on the sidecar
    max_messages_per_conversation: int = Field(2000, ge=2, le=MAX_CONVERSATION_MESSAGES)
    imports_per_hour: int = Field(20, ge=1)
    web_searches_per_day: int = Field(100, ge=1)  # Tavily calls (cache hits are free)
    # Uploaded documents (DOCUMENTS search over a user's own files): the size of one file, refused while
    # its request streams in; files and bytes per user; passages per file (10 000: a full-size text
    # file at the ~1000 characters a passage holds).
    max_document_bytes: int = Field(10 << 20, ge=1024)
    max_documents_per_user: int = Field(200, ge=1)
    max_document_bytes_per_user: int = Field(100 << 20, ge=1024)
    max_passages_per_document: int = Field(10_000, ge=1)

    # Web search (Tavily). Without a key web search reports "not configured".
    tavily_api_key: str | None = None
    tavily_base_url: str = "https://api.tavily.com"
    search_cache_seconds: int = Field(3600, ge=0)

    # Chat (backend): the default answer budget in tokens and the system prompt.
    chat_max_tokens: int = Field(512, ge=1)
    chat_system_prompt: str = SYSTEM_PROMPT
    # Tokens (prompt + answer) one user may use per UTC day; 0 = unlimited.
    daily_token_quota: int = Field(0, ge=0)

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret_in_production(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("environment") == "production" and (
            value == DEV_JWT_SECRET or len(value.encode()) < MIN_JWT_SECRET_BYTES
        ):
            raise ValueError(
                f"production needs a secret of at least {MIN_JWT_SECRET_BYTES} bytes that is not the "
                "development default (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return value

    @field_validator(
        "runs_dir",
        "var_dir",
        "model_path",
        "tokenizer_path",
        "llama_server_bin",
        "graphiql_assets_dir",
        "model_registry",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return REPO_ROOT / value

    @property
    def max_request_bytes(self) -> int:
        """The largest HTTP body or WebSocket message the backend reads (an import, a chat turn): a
        maximal message in JSON (6 bytes a character at worst, `\\uXXXX`) plus room for the query,
        and at least 1 MiB."""
        return max(1 << 20, self.max_message_chars * 6 + (64 << 10))

    @property
    def backend_url(self) -> str:
        return f"http://{self.backend_host}:{self.backend_port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.backend_url}/graphql"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-compatible API's base URL as clients outside should use it (`.../v1`)."""
        return f"{(self.public_url.rstrip('/') or self.backend_url)}/v1"

    @property
    def frontend_url(self) -> str:
        return f"http://{self.frontend_host}:{self.frontend_port}"

    @property
    def llama_url(self) -> str:
        return f"http://{self.llama_host}:{self.llama_port}"

    @property
    def llama_urls(self) -> list[str]:
        return [self.llama_url, *self.llama_extra_urls]

    @property
    def database_uri(self) -> str:
        return self.mongodb_uri or f"mongodb://{self.db_host}:{self.db_port}"

    @property
    def uses_sidecar(self) -> bool:
        return self.mongodb_uri is None

    @property
    def max_upload_request_bytes(self) -> int:
        """The largest body the upload route reads: one maximal file plus 64 KiB for the multipart
        framing and the operation (its query and variables)."""
        return self.max_document_bytes + (64 << 10)

    @property
    def docs_index_dir(self) -> Path:
        """The document-search index (`chakor docs add`), beside the database under the var folder."""
        return self.var_dir / "docs-index"

    @property
    def graphiql_enabled(self) -> bool:
        return self.environment == "development" if self.graphiql is None else self.graphiql

    @property
    def introspection_enabled(self) -> bool:
        """Schema introspection: on in development, in production only with GraphiQL or when asked for."""
        return self.graphiql_enabled if self.introspection is None else self.introspection

    @property
    def signup_policy(self) -> Literal["open", "approval", "closed"]:
        """CHAKOR_SIGNUP, or `open` in development and `approval` in production."""
        if self.signup is not None:
            return self.signup
        return "approval" if self.environment == "production" else "open"


class SettingsError(RuntimeError):
    """A `CHAKOR_*` variable has a bad value; the message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one message that names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
