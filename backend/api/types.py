"""GraphQL object types and enums."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from beanie import PydanticObjectId
from strawberry.scalars import JSON

from backend import models
from backend.api.context import Info
from backend.api.evaluation import ModelEvaluation
from backend.api.response_budget import charge
from backend.models.common import oid
from backend.services import conversations as conversation_service
from backend.services import llama, model_info, served_models, status
from backend.services.tree import MessageTree
from backend.services.validation import MAX_PAGE_SIZE, object_id, page_size
from common.chat import SearchMode

# The documents' enums, registered with Strawberry under their GraphQL names.
strawberry.enum(models.Role, name="Role", description="What a user may do.")
strawberry.enum(models.MessageRole, name="MessageRole", description="Who wrote a message.")
strawberry.enum(
    models.MessageStatus, name="MessageStatus", description="Where an answer is in its lifecycle."
)
Role = models.Role
MessageRole = models.MessageRole
MessageStatus = models.MessageStatus
strawberry.enum(
    SearchMode,
    name="SearchMode",
    description="Where a chat turn looks for sources: nowhere, the web (Tavily), or your documents (`chakor docs add`).",
)


@strawberry.type(description="An account.")
class User:
    id: strawberry.ID
    email: str
    display_name: str | None
    role: Role
    disabled: bool
    approved: bool = strawberry.field(description="False while a sign-up waits for an admin.")
    created_at: datetime

    @classmethod
    def from_model(cls, user: models.User) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            display_name=user.display_name,
            role=user.role,
            disabled=user.disabled,
            approved=user.approved,
            created_at=user.created_at,
        )


@strawberry.type(description="Tokens for a signed-in session, and who it belongs to.")
class AuthPayload:
    access_token: str
    refresh_token: str
    user: User


@strawberry.type(
    description="The answer to a sign-up, the same whether or not the address already had an account: "
    "tokens and user are null; sign in with `login` (FORBIDDEN while the account waits for approval)."
)
class RegisterPayload:
    access_token: str | None = None
    refresh_token: str | None = None
    user: User | None = None


@strawberry.type(
    description="One search result: a web page, or a document passage (`url` is its URL or file name, `content` the snippet)."
)
class SearchResult:
    title: str
    url: str
    content: str
    score: float | None
    collection: str | None = strawberry.field(
        description="The document collection a passage came from; null for a web result."
    )

    @classmethod
    def from_model(cls, source: models.Source) -> SearchResult:
        return cls(
            title=source.title,
            url=source.url,
            content=source.content,
            score=source.score,
            collection=source.collection,
        )


@strawberry.type(description="One message of a conversation.")
class Message:
    id: strawberry.ID
    conversation_id: strawberry.ID
    parent_id: strawberry.ID | None = strawberry.field(
        description="The message answered or followed; null for a first turn."
    )
    sibling_count: int = strawberry.field(
        description="How many versions this message has (edits, regenerated answers), itself included."
    )
    sibling_index: int = strawberry.field(description="This version's place among them, from 0 (the oldest).")
    previous_sibling_id: strawberry.ID | None = strawberry.field(
        description="The version just before this one; null for the oldest."
    )
    next_sibling_id: strawberry.ID | None = strawberry.field(
        description="The version just after this one; null for the newest."
    )
    role: MessageRole
    content: str
    status: MessageStatus
    created_at: datetime
    sources: list[SearchResult] | None
    sources_error: str | None
    tokens_predicted: int | None
    tokens_per_second: float | None
    finish_reason: str | None
    error: str | None
    model_name: str | None = strawberry.field(
        name="model", description="The served model that wrote this answer (null for a user's message)."
    )
    tree: strawberry.Private[MessageTree]
    model: strawberry.Private[models.Message]

    @strawberry.field(
        description="A page of this message's versions, itself included, oldest first: `first` "
        f"(at most {MAX_PAGE_SIZE}) after the version `after`."
    )
    def sibling_ids(self, first: int | None = 10, after: strawberry.ID | None = None) -> list[strawberry.ID]:
        size = page_size(10 if first is None else first)
        start = None if after is None else object_id(after) or PydanticObjectId("0" * 24)
        page = self.tree.after(self.tree.siblings(self.model), start, size)
        return [strawberry.ID(str(m.id)) for m in page]

    @classmethod
    def from_model(cls, message: models.Message, tree: MessageTree) -> Message:
        parent = message.parent_id if message.parent_id in tree.by_id else None
        siblings = tree.siblings(message)
        index = tree.sibling_index.get(oid(message), 0)
        previous = siblings[index - 1].id if index > 0 else None
        following = siblings[index + 1].id if index + 1 < len(siblings) else None
        return cls(
            id=strawberry.ID(str(message.id)),
            conversation_id=strawberry.ID(str(message.conversation_id)),
            parent_id=None if parent is None else strawberry.ID(str(parent)),
            sibling_count=len(siblings),
            sibling_index=index,
            previous_sibling_id=None if previous is None else strawberry.ID(str(previous)),
            next_sibling_id=None if following is None else strawberry.ID(str(following)),
            tree=tree,
            model=message,
            role=message.role,
            content=message.content,
            status=message.status,
            created_at=message.created_at,
            sources=None
            if message.sources is None
            else [SearchResult.from_model(s) for s in message.sources],
            sources_error=message.sources_error,
            tokens_predicted=message.tokens_predicted,
            tokens_per_second=message.tokens_per_second,
            finish_reason=message.finish_reason,
            error=message.error,
            model_name=message.model,
        )


def _charged(messages: list[Message]) -> list[Message]:
    """`messages`, their text counted toward the operation's response budget."""
    charge(sum(len(m.content) for m in messages))
    return messages


@strawberry.type(description="A conversation: a tree of messages, one branch of it active.")
class Conversation:
    id: strawberry.ID
    title: str
    created_at: datetime
    updated_at: datetime
    model: strawberry.Private[models.Conversation]

    @strawberry.field(
        description="The active branch (first turn to current leaf), its newest `last` messages."
    )
    async def messages(self, info: Info, last: int | None = 200) -> list[Message]:
        count = max(1, min(200 if last is None else last, conversation_service.MAX_MESSAGES))
        tree = await info.context.message_trees.load(oid(self.model))
        return _charged(
            [Message.from_model(m, tree) for m in tree.branch(self.model.active_leaf_id)[-count:]]
        )

    @strawberry.field(
        description="A page of every message of every branch, oldest first: `first` (at most "
        f"{MAX_PAGE_SIZE}) after the message `after` (page on with the last id; `messageCount` says how many)."
    )
    async def all_messages(
        self, info: Info, first: int | None = MAX_PAGE_SIZE, after: strawberry.ID | None = None
    ) -> list[Message]:
        size = page_size(MAX_PAGE_SIZE if first is None else first)
        start = None if after is None else object_id(after) or PydanticObjectId("0" * 24)
        tree = await info.context.message_trees.load(oid(self.model))
        return _charged([Message.from_model(m, tree) for m in tree.after(tree.nodes, start, size)])

    @strawberry.field(description="How many messages the conversation holds, every branch included.")
    async def message_count(self, info: Info) -> int:
        return len((await info.context.message_trees.load(oid(self.model))).nodes)

    @strawberry.field(description="The system prompt answers are made with (the server's unless set).")
    def system_prompt(self, info: Info) -> str:
        own = self.model.system_prompt
        return info.context.services.settings.chat_system_prompt if own is None else own

    @strawberry.field(description="Sampling temperature; null: the model server's default.")
    def temperature(self) -> float | None:
        return self.model.temperature

    @strawberry.field(
        description="Longest answer in tokens (the server's CHAKOR_CHAT_MAX_TOKENS unless set)."
    )
    def max_tokens(self, info: Info) -> int:
        return self.model.max_tokens or info.context.services.settings.chat_max_tokens

    @strawberry.field(
        name="model",
        description="The served model that answers it (`models`): chosen at its first turn, changed by a "
        "turn naming another or by updateConversation; the default model's for one that never chose.",
    )
    def model_name(self, info: Info) -> str:
        return self.model.model or info.context.services.models.default_name

    @strawberry.field(description="Whether the system prompt, temperature or maxTokens are the server's.")
    def uses_defaults(self) -> bool:
        m = self.model
        return m.system_prompt is None and m.temperature is None and m.max_tokens is None

    @classmethod
    def from_model(cls, conversation: models.Conversation) -> Conversation:
        return cls(
            id=strawberry.ID(str(conversation.id)),
            title=conversation.title,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            model=conversation,
        )


@strawberry.input(
    description="Conversation changes; an omitted field stays, null restores the server default."
)
class ConversationInput:
    title: str | None = strawberry.UNSET
    system_prompt: str | None = strawberry.UNSET
    temperature: float | None = strawberry.UNSET
    max_tokens: int | None = strawberry.UNSET
    model: str | None = strawberry.field(
        default=strawberry.UNSET, description="A served model's name (`models`) to answer from now on."
    )

    def changes(self) -> conversation_service.ConversationChanges:
        def given(value: object) -> bool:
            return value is not strawberry.UNSET

        return conversation_service.ConversationChanges(
            title=self.title if given(self.title) else None,
            system_prompt=self.system_prompt if given(self.system_prompt) else None,
            temperature=self.temperature if given(self.temperature) else None,
            max_tokens=self.max_tokens if given(self.max_tokens) else None,
            set_system_prompt=given(self.system_prompt),
            set_temperature=given(self.temperature),
            set_max_tokens=given(self.max_tokens),
            model=self.model if given(self.model) else None,
            set_model=given(self.model),
        )


@strawberry.enum(description="What exportConversation writes.")
class ExportFormat(Enum):
    JSON = "json"
    MARKDOWN = "markdown"


@strawberry.type(description="An API key (its secret is shown only once, when created).")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_model(cls, key: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(str(key.id)),
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
        )


@strawberry.type(description="A new API key and its secret: store it now, it is not shown again.")
class ApiKeyCreated:
    key: ApiKey
    secret: str


@strawberry.type(description="Tokens and answers on one UTC day.")
class UsageDay:
    day: str = strawberry.field(description="YYYY-MM-DD (UTC).")
    tokens_in: int
    tokens_out: int
    answers: int
    web_searches: int = strawberry.field(description="Web searches sent to Tavily (cached results are free).")
    answers_by_model: JSON = strawberry.field(description="Answers per served model's name (`models`).")

    @classmethod
    def from_model(cls, row: models.UsageDay) -> UsageDay:
        return cls(
            day=row.day,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            answers=row.answers,
            web_searches=row.web_searches,
            answers_by_model=JSON(row.answers_by_model),
        )


@strawberry.type(description="One user's usage on one UTC day (admin view).")
class UserUsageDay:
    user_id: strawberry.ID
    email: str | None
    day: str
    tokens_in: int
    tokens_out: int
    answers: int


@strawberry.type(description="Where a page ends.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ConversationEdge:
    cursor: str
    node: Conversation


@strawberry.type(description="A page of conversations, most recently active first.")
class ConversationConnection:
    edges: list[ConversationEdge]
    page_info: PageInfo


@strawberry.type
class UserEdge:
    cursor: str
    node: User


@strawberry.type(description="A page of users, newest first.")
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo


@strawberry.type(
    description="A served model: its card (GGUF metadata, eval report), kind, context and health."
)
class ModelInfo:
    id: str = strawberry.field(description="The name chat turns pick it by (`ChatInput.model`).")
    kind: str = strawberry.field(description="`chat` (answers turns) or `base` (a pretrained model).")
    description: str
    is_default: bool = strawberry.field(description="Whether turns that name no model get this one.")
    up: bool = strawberry.field(description="Whether one of its llama-servers answers its health probe.")
    name: str | None
    path: str | None
    architecture: str | None
    quantization: str | None
    context_length: int | None
    served_context: int | None
    parameters: float | None
    file_size_bytes: float | None
    chat_template: str | None
    metadata: JSON
    lineage: JSON
    verify_report: JSON | None
    evaluation: ModelEvaluation | None = strawberry.field(
        description="`chakor eval`'s report beside the served GGUF: bits per byte, QA F1, quant gates."
    )

    @classmethod
    def from_details(
        cls, d: model_info.ModelDetails, served: served_models.ServedModel, is_default: bool, up: bool
    ) -> ModelInfo:
        return cls(
            id=served.name,
            kind=served.kind,
            description=served.description,
            is_default=is_default,
            up=up,
            name=d.name,
            path=d.path,
            architecture=d.architecture,
            quantization=d.quantization,
            context_length=d.context_length,
            served_context=d.served_context,
            parameters=d.parameters,
            file_size_bytes=d.file_size_bytes,
            chat_template=d.chat_template,
            metadata=JSON(d.metadata),
            lineage=JSON(d.lineage),
            verify_report=None if d.verify_report is None else JSON(d.verify_report),
            evaluation=None if d.evaluation is None else ModelEvaluation.from_summary(d.evaluation),
        )


@strawberry.type(description="One llama-server as the backend sees it.")
class LlamaServerStatus:
    url: str
    healthy: bool
    status: str
    slots_total: int | None
    slots_idle: int | None
    tokens_per_second: float | None
    tokens_generated: float
    active_requests: int
    model: str | None = strawberry.field(description="The served model it serves (`models`).")

    @classmethod
    def from_state(cls, s: llama.ServerState, model: str | None = None) -> LlamaServerStatus:
        return cls(
            model=model,
            url=s.url,
            healthy=s.healthy,
            status=s.status,
            slots_total=s.slots_total,
            slots_idle=s.slots_idle,
            tokens_per_second=s.last_tokens_per_second,
            tokens_generated=s.tokens_generated,
            active_requests=s.active_requests,
        )


@strawberry.type(description="Health of the whole serving stack (admins only).")
class ServerStatus(status.Status[LlamaServerStatus]):
    """`status.Status`'s fields in its order, then when the snapshot was taken."""

    # Restated for Strawberry, which reads an inherited annotation in this module (where `ServerT` is unknown).
    llama_servers: list[LlamaServerStatus]
    timestamp: datetime

    @classmethod
    def from_status(
        cls, s: status.Status[llama.ServerState], now: datetime, models: served_models.ModelRoster
    ) -> ServerStatus:
        snapshot = {field.name: getattr(s, field.name) for field in dataclasses.fields(s)}
        servers = [
            LlamaServerStatus.from_state(server, models.model_of(server)) for server in s.llama_servers
        ]
        return cls(**{**snapshot, "llama_servers": servers, "timestamp": now})


@strawberry.input(description="One chat turn.")
class ChatInput:
    content: str
    conversation_id: strawberry.ID | None = None
    search: SearchMode | None = strawberry.field(
        default=None, description="Search before answering: OFF (the default), WEB or DOCUMENTS."
    )
    web_search: bool | None = strawberry.field(default=False, deprecation_reason="Use `search: WEB`.")
    regenerate: bool | None = strawberry.field(
        default=False, description="Answer the active branch's last user message again, as a new version."
    )
    temperature: float | None = None
    max_tokens: int | None = None
    edit_of: strawberry.ID | None = strawberry.field(
        default=None,
        description="A user message to edit: `content` becomes a new version of it and is answered.",
    )
    model: str | None = strawberry.field(
        default=None,
        description="The served model to answer with (`models`); it becomes the conversation's. Default: "
        "the conversation's model, else the default one.",
    )
    collections: list[str] | None = strawberry.field(
        default=None,
        description="Narrow DOCUMENTS search to these collections (yours or the site's); null: all of them.",
    )


@strawberry.type(description="The turn is stored; the answer starts streaming.")
class ChatStarted:
    conversation_id: strawberry.ID
    user_message_id: strawberry.ID
    assistant_message_id: strawberry.ID


@strawberry.type(
    description="Web or document results the answer cites as [1], [2], ... (sent before the first token)."
)
class ChatSources:
    results: list[SearchResult]
    available: bool
    error: str | None


@strawberry.type(description="A search mode and whether this server can search that way now.")
class SearchModeStatus:
    mode: SearchMode
    available: bool
    reason: str | None = strawberry.field(description="Why not, when unavailable.")


@strawberry.type(description="A piece of the answer.")
class ChatToken:
    text: str


@strawberry.type(description="The answer is complete (or was stopped).")
class ChatDone:
    message_id: strawberry.ID
    tokens_predicted: int
    tokens_per_second: float | None
    finish_reason: str


@strawberry.type(description="The turn failed; any partial answer is stored with status ERROR.")
class ChatError:
    code: str
    message: str


ChatEvent = Annotated[
    ChatStarted | ChatSources | ChatToken | ChatDone | ChatError,
    strawberry.union("ChatEvent", description="One event of a streaming chat turn."),
]
