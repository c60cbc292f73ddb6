"""A conversation's messages as a tree: branches, siblings and the leaf a branch ends in.

Pure functions over already loaded messages; children and siblings are ordered oldest first.
"""

from __future__ import annotations

from collections import defaultdict

from beanie import PydanticObjectId

from backend.models import Message


def _order(message: Message) -> tuple[object, str]:
    return (message.created_at, str(message.id))


class MessageTree:
    """Messages indexed by id and by parent."""

    def __init__(self, messages: list[Message]) -> None:
        self.nodes = sorted(messages, key=_order)
        self.by_id: dict[PydanticObjectId, Message] = {m.id: m for m in self.nodes if m.id is not None}
        self.children: dict[PydanticObjectId | None, list[Message]] = defaultdict(list)
        # each message's index in `nodes` and among its siblings: O(1) paging by id
        self.order: dict[PydanticObjectId, int] = {}
        self.sibling_index: dict[PydanticObjectId, int] = {}
        for index, message in enumerate(self.nodes):
            parent = message.parent_id if message.parent_id in self.by_id else None
            siblings = self.children[parent]
            if message.id is not None:
                self.order[message.id] = index
                self.sibling_index[message.id] = len(siblings)
            siblings.append(message)

    def siblings(self, message: Message) -> list[Message]:
        """The messages sharing `message`'s parent, itself included, oldest first (the tree's own list)."""
        parent = message.parent_id if message.parent_id in self.by_id else None
        return self.children[parent]

    def after(self, items: list[Message], after_id: PydanticObjectId | None, first: int) -> list[Message]:
        """Up to `first` of `items` (all of `nodes`, or one sibling list) following the message
        `after_id` (from the start when None; nothing when it is not among them)."""
        if after_id is None:
            return items[:first]
        index = (self.order if items is self.nodes else self.sibling_index).get(after_id)
        if index is None or index >= len(items) or items[index].id != after_id:
            return []
        return items[index + 1 : index + 1 + first]

    def leaf_under(self, message_id: PydanticObjectId) -> PydanticObjectId:
        """The leaf reached from `message_id` by always following the newest child."""
        current = message_id
        while self.children.get(current):
            newest = self.children[current][-1].id
            assert newest is not None
            current = newest
        return current

    def branch(self, leaf_id: PydanticObjectId | None) -> list[Message]:
        """Root-to-leaf messages ending at `leaf_id`; the newest message's branch when it is unknown."""
        if leaf_id not in self.by_id:
            if not self.nodes:
                return []
            leaf_id = self.nodes[-1].id
        path: list[Message] = []
        seen: set[PydanticObjectId] = set()
        current = self.by_id.get(leaf_id) if leaf_id is not None else None
        while current is not None and current.id not in seen:
            assert current.id is not None
            seen.add(current.id)
            path.append(current)
            current = self.by_id.get(current.parent_id) if current.parent_id is not None else None
        return path[::-1]
