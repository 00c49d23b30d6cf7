"""Latency of GET …/contacts/by-phone against a running ``kabar serve`` (not a test).

    export KABAR_DATABASE_URL=sqlite:////tmp/kb/kabar.db
    kabar seed --demo --contacts 10000
    kabar serve --port 38765 &
    python tests/contacts/bench_by_phone.py --url http://127.0.0.1:38765 --seconds 15 --connections 1,16,64

Logs in as the demo owner, creates an API key (bots call by-phone with one), samples phones of
existing contacts, and drives the endpoint with ``wrk`` (a Python client saturates before the
server does), asking in mixed formats (``0812…``, ``62812…``, ``+62812…``) with one lookup in
ten for an unknown number. Prints P50/P95/P99 and throughput per connection count.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

LUA = """
local phones = {%(phones)s}
local n = 0
request = function()
  n = n + 1
  local national = phones[(n * 7919) %% #phones + 1]
  local phone
  if n %% 10 == 0 then phone = "089900000000"
  elseif n %% 3 == 0 then phone = "0" .. national
  elseif n %% 3 == 1 then phone = "%%2B62" .. national
  else phone = "62" .. national end
  return wrk.format("GET", "%(path)s?phone=" .. phone, {["Authorization"] = "Bearer %(key)s"})
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%.3f %%.3f %%.3f %%.3f %%d %%d %%d\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, summary.errors.status, summary.duration))
end
"""


async def setup(url: str, email: str, password: str, sample: int) -> tuple[str, str, list[str]]:
    """(workspace id, API key, national numbers of existing Indonesian contacts)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = (await client.post("/v1/auth/login", json={"email": email, "password": password})).raise_for_status().json()
        session = {"Authorization": f"Bearer {login['token']}"}
        ws = (await client.get("/v1/me", headers=session)).raise_for_status().json()["workspaces"][0]["id"]
        key = (await client.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "by-phone bench"}, headers=session)).raise_for_status().json()
        phones: list[str] = []
        cursor = None
        while len(phones) < sample:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(f"/v1/workspaces/{ws}/contacts", params=params, headers=session)).raise_for_status().json()
            phones += [c["phone"][3:] for c in page["data"] if c["phone"].startswith("+62")]
            cursor = page["next_cursor"]
            if not cursor:
                break
        # The key's first use is recorded (a write); keep that out of the measurement.
        (await client.get(f"/v1/workspaces/{ws}/contacts/by-phone", params={"phone": "0" + phones[0]}, headers={"Authorization": f"Bearer {key['secret']}"})).raise_for_status()
    return ws, key["secret"], phones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:38765")
    parser.add_argument("--email", default="owner@demo.kabar.id")
    parser.add_argument("--password", default="kabar-demo-2026")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--sample", type=int, default=2000, help="distinct phones to ask for")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    ws, key, phones = asyncio.run(setup(args.url, args.email, args.password, args.sample))
    script = LUA % {"phones": ",".join(f'"{p}"' for p in phones), "path": f"/v1/workspaces/{ws}/contacts/by-phone", "key": key}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "by_phone.lua"
        path.write_text(script)
        print(f"{len(phones)} phones sampled; {args.seconds} s per level; wrk against {args.url}")
        for connections in (int(c) for c in args.connections.split(",")):
            threads = min(2, connections)
            out = subprocess.run(
                [wrk, f"-t{threads}", f"-c{connections}", f"-d{args.seconds}s", "-s", str(path), args.url],
                capture_output=True, text=True, check=True,
            ).stdout
            line = next(line for line in out.splitlines() if line.startswith("RESULT"))
            p50, p95, p99, worst, count, non_2xx, micros = line.split()[1:]
            print(
                f"connections {connections:>3}: p50 {float(p50):.2f} ms  p95 {float(p95):.2f} ms  p99 {float(p99):.2f} ms  "
                f"max {float(worst):.1f} ms  {int(count) / (int(micros) / 1e6):.0f} req/s  non-2xx {non_2xx}"
            )


if __name__ == "__main__":
    main()
