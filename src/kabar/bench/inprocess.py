"""In-process cost per request: the app called directly over ASGI (no sockets, no generator).

``python -m kabar.bench.inprocess [sqlite|postgres] [N]`` seeds a small dataset in a scratch
database and prints microseconds per request for by-phone, the conversation list and a workspace
read; ``PROFILE=bp`` (or ``PROFILE=list``) adds a cProfile of N more requests. ``LISTQ`` sets the
list query, ``CONC`` how many requests are in flight at once (1). For before/after comparisons of hot-path changes on a busy machine.
"""
import asyncio
import cProfile
import os
import pstats
import random
import sys
import time
from urllib.parse import quote
os.environ.setdefault("KABAR_LOG_LEVEL", "WARNING")
db = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
CONC = int(os.environ.get("CONC", "1"))
if db == "sqlite":
    path = "/tmp/kabar-inprocess.db"
    for s in ("", "-wal", "-shm"):
        if os.path.exists(path + s): os.unlink(path + s)
    os.environ["KABAR_DATABASE_URL"] = f"sqlite:///{path}"
else:
    os.environ["KABAR_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:5432/kabar_prof"
os.environ["KABAR_DATA_DIR"] = "/tmp/kabar-inprocess-data"
from kabar.config import load_settings
from kabar.db.migrate import upgrade
from kabar.app import create_app, start_runtime, stop_runtime
from kabar.bench.dataset import seed

async def recreate_postgres():
    import asyncpg
    c = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await c.execute('DROP DATABASE IF EXISTS kabar_prof WITH (FORCE)'); await c.execute('CREATE DATABASE kabar_prof'); await c.close()

async def main():
    settings = load_settings()
    app = create_app(settings, run_jobs=False)
    await start_runtime(app, settings)
    rt = app.state.runtime
    [bw] = await seed(rt, workspaces=1, contacts=2000, messages_per_conversation=5)
    rng = random.Random(1)
    async def call(path, query, token):
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
                 "headers": [(b"host", b"x"), (b"authorization", f"Bearer {token}".encode())], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        out = []
        async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
        async def send(m): out.append(m)
        await app(scope, receive, send)
        assert out[0]["status"] == 200, (out[0]["status"], out[1].get("body")[:300])
    bp = lambda: call(f"/v1/workspaces/{bw.id}/contacts/by-phone", "phone=" + quote(rng.choice(bw.phones)), bw.api_key)
    ls = lambda: call(f"/v1/workspaces/{bw.id}/conversations", os.environ.get("LISTQ", "limit=50"), bw.session_token)
    ws = lambda: call(f"/v1/workspaces/{bw.id}", "", bw.session_token)
    for name, f, n in (("by-phone", bp, N), ("list", ls, N // 5), ("workspace", ws, N)):
        for _ in range(200): await f()
        t, cpu = time.perf_counter(), time.process_time()
        if CONC > 1:  # requests in flight at once (pool and lock behaviour under concurrency)
            async def worker(k):
                for _ in range(k): await f()
            await asyncio.gather(*(worker(n // CONC) for _ in range(CONC)))
        else:
            for _ in range(n): await f()
        dt, dcpu = (time.perf_counter() - t) / n, (time.process_time() - cpu) / n
        # CPU time is the steadier figure on a shared machine (other processes stretch wall time).
        print(f"{name}: {dt*1e6:.0f} us/request in-process ({1/dt:.0f}/s), {dcpu*1e6:.0f} us CPU")
    if os.environ.get("PROFILE"):
        pr = cProfile.Profile(); pr.enable()
        for _ in range(N): await (ls() if os.environ["PROFILE"] == "list" else bp())
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25); pr.dump_stats(os.environ.get("PROFILE_OUT", "/tmp/kabar-inprocess.prof"))
    await stop_runtime(app)
if db != "sqlite":
    asyncio.run(recreate_postgres())
upgrade(load_settings().database_url)  # before the loop: the PostgreSQL migration runs its own
asyncio.run(main())
