"""Chakor's GraphQL API: Strawberry on FastAPI, Beanie on MongoDB, answers streamed from llama-server.

Run it with `python -m uvicorn backend.main:create_app --factory --host H --port P`; settings come from
`common.settings` (`CHAKOR_*`). Layout: `api/` (GraphQL types, resolvers, schema, permissions, context),
`models/` (Beanie documents), `services/` (auth, conversations, chat, search, llama pool, status),
`core/` (settings access, security, rate limiting, database, limits), `cli.py` (`chakor schema export`,
`chakor admin create-user`).
"""
