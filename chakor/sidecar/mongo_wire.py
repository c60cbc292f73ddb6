"""The embedded database: mongoeco's MongoDB-wire server (run with .venv-db's Python >= 3.13).

usage: python mongo_wire.py HOST PORT (memory | PATH/TO/db.sqlite)
"""

import asyncio
import signal
import sys

from mongoeco.engines import SQLiteEngine
from mongoeco.engines.memory import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(host: str, port: int, storage: str) -> None:
    engine = MemoryEngine() if storage == "memory" else SQLiteEngine(storage)
    server = AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)
    address = await server.start()
    print(f"mongo-wire listening at {address.uri} storage={storage}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
