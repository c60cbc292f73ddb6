"""Beanie documents."""

from backend.models.conversation import Conversation, Message, MessageRole, MessageStatus, Source
from backend.models.search_cache import SearchCacheEntry
from backend.models.user import RefreshToken, Role, User

DOCUMENT_MODELS = [User, RefreshToken, Conversation, Message, SearchCacheEntry]

__all__ = [
    "DOCUMENT_MODELS",
    "Conversation",
    "Message",
    "MessageRole",
    "MessageStatus",
    "RefreshToken",
    "Role",
    "SearchCacheEntry",
    "Source",
    "User",
]
