"""Beanie documents."""

from backend.models.api_key import ApiKey
from backend.models.conversation import Conversation, Message, MessageRole, MessageStatus, Source
from backend.models.counters import WindowCounter
from backend.models.document import DocumentQuota, UploadedDocument
from backend.models.leases import LoginFailure, StreamLease
from backend.models.search_cache import SearchCacheEntry
from backend.models.usage import UsageDay
from backend.models.user import RefreshToken, Role, User

DOCUMENT_MODELS = [
    User,
    RefreshToken,
    Conversation,
    Message,
    SearchCacheEntry,
    ApiKey,
    UsageDay,
    StreamLease,
    LoginFailure,
    WindowCounter,
    UploadedDocument,
    DocumentQuota,
]

__all__ = [
    "DOCUMENT_MODELS",
    "ApiKey",
    "Conversation",
    "DocumentQuota",
    "LoginFailure",
    "Message",
    "MessageRole",
    "MessageStatus",
    "RefreshToken",
    "Role",
    "SearchCacheEntry",
    "Source",
    "StreamLease",
    "UploadedDocument",
    "UsageDay",
    "User",
    "WindowCounter",
]
