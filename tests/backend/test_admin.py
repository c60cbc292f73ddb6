"""Admin fields: users, roles, disabling, cascading deletes, server status; and non-admins on them."""

from __future__ import annotations

import json
import os

import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import Backend
from tests.support.graphql import Api, Session
from tests.support.tiny_model import TinyModel
from trainer.configs import ModelConfig

USERS = """
query($first: Int, $after: String, $search: String) {
  users(first: $first, after: $after, search: $search) {
    edges { cursor node { id email displayName role disabled createdAt } } pageInfo { hasNextPage endCursor }
  }
}
"""
SET_ROLE = "mutation($id: ID!, $r: Role!) { setUserRole(userId: $id, role: $r) { id role } }"
SET_DISABLED = (
    "mutation($id: ID!, $d: Boolean!) { setUserDisabled(userId: $id, disabled: $d) { id disabled } }"
)
DELETE_USER = "mutation($id: ID!) { deleteUser(userId: $id) }"
STATUS_FIELDS = """
  llamaServers { url healthy status slotsTotal slotsIdle tokensPerSecond tokensGenerated activeRequests }
  cpuPercent memoryRssMb systemMemoryPercent databaseOk databaseLatencyMs databaseError activeStreams
  uptimeSeconds timestamp
"""
ADMIN_ONLY = [
    (USERS, {}),
    (f"{{ serverStatus {{ {STATUS_FIELDS} }} }}", {}),
    (SET_ROLE, {"id": str(ObjectId()), "r": "ADMIN"}),
    (SET_DISABLED, {"id": str(ObjectId()), "d": True}),
    (DELETE_USER, {"id": str(ObjectId())}),
]


@pytest.mark.parametrize(
    ("query", "variables"),
    ADMIN_ONLY,
    ids=["users", "serverStatus", "setUserRole", "setUserDisabled", "deleteUser"],
)
async def test_admin_fields_refuse_users(api: Api, alice: Session, query: str, variables: dict) -> None:
    error = await api.error(query, variables, alice.access_token)
    assert error["message"] == "admin only"
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await api.error(query, variables))["message"] == "authentication required"


async def test_non_admin_cannot_make_themselves_admin(api: Api, alice: Session, db: AsyncDatabase) -> None:
    await api.error(SET_ROLE, {"id": alice.id, "r": "ADMIN"}, alice.access_token)
    assert (await db.users.find_one({"_id": ObjectId(alice.id)}))["role"] == "user"


async def test_server_status_subscription_refuses_users(api: Api, alice: Session) -> None:
    with pytest.raises(Exception, match="admin only"):
        async for _ in api.subscribe(
            f"subscription {{ serverStatus {{ {STATUS_FIELDS} }} }}", {}, alice.authorization
        ):
            pass


async def test_list_and_search_users(api: Api, admin: Session) -> None:
    tagged = [await api.register(f"zebra-{i}@example.test", display_name=f"Zebra {i}") for i in range(3)]
    found = (await api.data(USERS, {"search": "ZEBRA-", "first": 2}, admin.access_token))["users"]
    assert [e["node"]["email"] for e in found["edges"]] == ["zebra-2@example.test", "zebra-1@example.test"]
    assert found["pageInfo"]["hasNextPage"] is True
    rest = (
        await api.data(
            USERS, {"search": "zebra-", "after": found["pageInfo"]["endCursor"]}, admin.access_token
        )
    )["users"]
    assert [e["node"]["id"] for e in rest["edges"]] == [tagged[0].id]
    by_name = (await api.data(USERS, {"search": "Zebra 1"}, admin.access_token))["users"]["edges"]
    assert [e["node"]["displayName"] for e in by_name] == ["Zebra 1"]
    assert (await api.data(USERS, {"search": "zebra-.*"}, admin.access_token))["users"]["edges"] == []


async def test_set_role(api: Api, admin: Session, alice: Session, db: AsyncDatabase) -> None:
    promoted = (await api.data(SET_ROLE, {"id": alice.id, "r": "ADMIN"}, admin.access_token))["setUserRole"]
    assert promoted == {"id": alice.id, "role": "ADMIN"}
    assert (await db.users.find_one({"_id": ObjectId(alice.id)}))["role"] == "admin"
    assert (await api.data(USERS, {"first": 1}, alice.access_token))["users"]["edges"]
    await api.data(SET_ROLE, {"id": alice.id, "r": "USER"}, admin.access_token)
    assert (await api.error(USERS, {}, alice.access_token))["message"] == "admin only"
    missing = await api.error(SET_ROLE, {"id": str(ObjectId()), "r": "USER"}, admin.access_token)
    assert missing["message"] == "user not found"


async def test_admin_cannot_disable_or_delete_themselves(api: Api, admin: Session) -> None:
    assert (await api.error(SET_DISABLED, {"id": admin.id, "d": True}, admin.access_token))["message"] == (
        "you cannot disable your own account"
    )
    assert (await api.error(DELETE_USER, {"id": admin.id}, admin.access_token))["message"] == (
        "you cannot delete your own account"
    )


async def test_delete_user_cascades(api: Api, admin: Session, db: AsyncDatabase) -> None:
    victim = await api.register()
    conversation = (
        await api.data('mutation { createConversation(title: "doomed") { id } }', token=victim.access_token)
    )["createConversation"]
    await db.messages.insert_one(
        {
            "conversation_id": ObjectId(conversation["id"]),
            "user_id": ObjectId(victim.id),
            "role": "user",
            "content": "hi",
        }
    )
    assert (await api.data(DELETE_USER, {"id": victim.id}, admin.access_token))["deleteUser"] is True
    uid = ObjectId(victim.id)
    assert await db.users.find_one({"_id": uid}) is None
    assert await db.conversations.count_documents({"user_id": uid}) == 0
    assert await db.messages.count_documents({"user_id": uid}) == 0
    assert await db.refresh_tokens.count_documents({"user_id": uid}) == 0
    assert (await api.error("{ me { id } }", token=victim.access_token))["message"] == "invalid access token"
    assert (await api.error(DELETE_USER, {"id": victim.id}, admin.access_token))[
        "message"
    ] == "user not found"


async def test_server_status(api: Api, admin: Session, backend: Backend) -> None:
    status = (await api.data(f"{{ serverStatus {{ {STATUS_FIELDS} }} }}", token=admin.access_token))[
        "serverStatus"
    ]
    [llama] = status["llamaServers"]
    assert llama["url"] == backend.settings.llama_url
    assert llama["healthy"] is True and llama["status"] == "ok"
    assert llama["slotsTotal"] == 4 and 0 <= llama["slotsIdle"] <= 4
    assert status["databaseOk"] is True and status["databaseError"] is None
    assert status["databaseLatencyMs"] > 0
    assert status["memoryRssMb"] > 10
    assert 0 <= status["systemMemoryPercent"] <= 100
    assert 0 <= status["cpuPercent"] <= 100 * (os.cpu_count() or 1)  # psutil: 100 per busy core
    assert status["activeStreams"] >= 0


async def test_server_status_subscription(api: Api, admin: Session) -> None:
    ticks = []
    async for result in api.subscribe(
        f"subscription {{ serverStatus(intervalMs: 250) {{ {STATUS_FIELDS} }} }}", {}, admin.authorization
    ):
        ticks.append(result["serverStatus"])
        if len(ticks) == 2:
            break
    assert all(tick["databaseOk"] and tick["llamaServers"][0]["healthy"] for tick in ticks)
    assert ticks[1]["timestamp"] > ticks[0]["timestamp"]
    with pytest.raises(Exception, match="intervalMs must be between 250 and 60000"):
        async for _ in api.subscribe(
            "subscription { serverStatus(intervalMs: 1) { cpuPercent } }", {}, admin.authorization
        ):
            pass


async def test_model_info(api: Api, alice: Session, backend: Backend, tiny_model: TinyModel) -> None:
    config = ModelConfig.from_dict(json.loads((tiny_model.export_dir / "config.json").read_text()))
    query = """{ model { name path architecture quantization contextLength servedContext parameters
                 fileSizeBytes chatTemplate metadata lineage verifyReport } }"""
    model = (await api.data(query, token=alice.access_token))["model"]
    assert model["path"] == backend.settings.model_path.name  # a user sees no server path
    assert model["architecture"] == "llama"
    assert model["quantization"] == "F32"
    assert model["contextLength"] == config.max_seq_len
    assert model["servedContext"] == 512  # 2048 tokens over 4 slots
    assert model["parameters"] == config.num_params()
    assert model["fileSizeBytes"] == backend.settings.model_path.stat().st_size
    assert "<|assistant|>" in model["chatTemplate"]
    assert model["metadata"]["general.architecture"] == "llama"
    assert len(model["lineage"]["tokenizer_sha256"]) == 64
    assert model["verifyReport"] is None
