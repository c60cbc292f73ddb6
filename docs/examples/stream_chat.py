"""Stream a Chakor chat answer with an API key (graphql-transport-ws over `websockets`).

    CHAKOR_API_KEY=chk_... python docs/examples/stream_chat.py "What does json.dumps do?"

CHAKOR_URL defaults to ws://127.0.0.1:8000/graphql. Prints the answer as it streams, then the
conversation id (pass it as CHAKOR_CONVERSATION to continue that conversation).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import websockets

CHAT = """subscription($input: ChatInput!) { chat(input: $input) {
  __typename
  ... on ChatStarted { conversationId }
  ... on ChatToken { text }
  ... on ChatDone { tokensPredicted finishReason }
  ... on ChatError { code message }
} }"""


async def stream(question: str) -> int:
    url = os.environ.get("CHAKOR_URL", "ws://127.0.0.1:8000/graphql")
    chat_input = {"content": question}
    if os.environ.get("CHAKOR_CONVERSATION"):
        chat_input["conversationId"] = os.environ["CHAKOR_CONVERSATION"]
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        auth = {"Authorization": f"Bearer {os.environ['CHAKOR_API_KEY']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        try:
            accepted = json.loads(await ws.recv())["type"] == "connection_ack"
        except websockets.ConnectionClosed:  # a bad or revoked key: the server closes with 4403
            accepted = False
        if not accepted:
            print("the server refused the API key", file=sys.stderr)
            return 1
        payload = {"query": CHAT, "variables": {"input": chat_input}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                if message["payload"].get("errors"):
                    print(message["payload"]["errors"][0]["message"], file=sys.stderr)
                    return 1
                event = message["payload"]["data"]["chat"]
                kind = event["__typename"]
                if kind == "ChatToken":
                    print(event["text"], end="", flush=True)
                elif kind == "ChatStarted":
                    conversation = event["conversationId"]
                elif kind == "ChatDone":
                    print(
                        f"\n[{event['tokensPredicted']} tokens, {event['finishReason']}] conversation {conversation}"
                    )
                elif kind == "ChatError":
                    print(f"\n{event['code']}: {event['message']}", file=sys.stderr)
                    return 1
            elif message["type"] in ("complete", "error"):
                break
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(stream(" ".join(sys.argv[1:]) or "Hello!")))
