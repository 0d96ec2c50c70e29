"""A lean open-loop HTTP load generator (asyncio + uvloop, raw sockets, requests prepared in advance).

Request i is due at start + i / rate whatever happened before it (open loop), and its latency counts from
that due time, so a slow server cannot slow the generator down and hide its own queueing (no coordinated
omission). Each request goes on an idle keep-alive connection, or a new one when all are busy.

Run by benchmarks/serving_speed.py in its own process (pinned with taskset), as
    python loadgen.py REQUESTS.json RATE SECONDS [--warmup S]
where REQUESTS.json is {"host", "port", "requests": [latin-1 strings of whole HTTP/1.1 requests]}; it
prints one JSON line: sent, ok, errors, achieved rate, p50/p95/p99/max ms and the first error seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np


class Connection:
    """One keep-alive HTTP/1.1 connection: write a prepared request, read one response (status and body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body


async def generate(host: str, port: int, requests: list[bytes], rate: float, seconds: float, warmup: float) -> dict:
    """Send requests[i % n] at `rate` per second for warmup + seconds; the stats of those due after warmup."""
    idle: list[Connection] = []
    latencies: list[float] = []
    errors: list[str] = []
    counted = [0]
    finished = [0.0]  # when the last answer came
    total = int((warmup + seconds) * rate)
    first_counted = int(warmup * rate)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, due: float) -> None:
        try:
            request = requests[i % len(requests)]
            if idle:
                connection = idle.pop()
                try:
                    status, body = await connection.exchange(request)
                except (ConnectionError, asyncio.IncompleteReadError):  # closed by the server while idle: as any client, retry
                    connection.writer.close()
                    connection = Connection(*await asyncio.open_connection(host, port))
                    status, body = await connection.exchange(request)
            else:
                connection = Connection(*await asyncio.open_connection(host, port))
                status, body = await connection.exchange(request)
            idle.append(connection)
            ok = status == 200 and body[:1] == b"{"
            why = "" if ok else f"HTTP {status}: {body[:160].decode('utf-8', 'replace')}"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if i >= first_counted:
            counted[0] += 1
            if ok:
                latencies.append(loop.time() - due)
                finished[0] = loop.time()
            else:
                errors.append(why)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    sending_ended = loop.time()
    await asyncio.wait(tasks, timeout=30)
    window_start = start + first_counted / rate  # answers per second from the first counted request's due time
    measured = max(seconds, finished[0] - window_start) if total > first_counted else 1.0
    lat = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {
        "sent": total - first_counted, "ok": len(latencies), "errors": len(errors),
        "unanswered": total - first_counted - counted[0],
        "achieved_rps": round(len(latencies) / measured, 1),
        "send_lag_ms": round((sending_ended - (start + (total - 1) / rate)) * 1000.0, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(np.max(lat)), 1),
        "first_error": errors[0] if errors else None,
    }


def get_request(host: str, target: str) -> str:
    """A keep-alive GET as latin-1 text."""
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n"


def upload_request(host: str, target: str, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
    """A keep-alive multipart POST of one file in field `file`, as latin-1 text."""
    boundary = "vitrinaloadgen7d1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode("latin-1") + data + f"\r\n--{boundary}--\r\n".encode("latin-1")
    head = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return (head.encode("latin-1") + body).decode("latin-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("requests", type=Path)
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent first and not counted")
    args = parser.parse_args()
    spec = json.loads(args.requests.read_text())
    requests = [r.encode("latin-1") for r in spec["requests"]]
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    result = run(generate(spec["host"], spec["port"], requests, args.rate, args.seconds, args.warmup))
    cpu = time.process_time()
    print(json.dumps({**result, "generator_cpu_s": round(cpu, 2)}), flush=True)


if __name__ == "__main__":
    main()
