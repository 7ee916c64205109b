"""Hostile clients against ``segzero serve`` on loopback: a burst past the queue, slow clients, a corpus
of malformed bodies, and the server's memory before and after.

Starts ``segzero serve`` as a child process (tiny random models unless ``--reasoner`` and
``--segmenter`` are given) with short timeouts, then, over real sockets:

1. **burst**: ``--burst`` requests at once against a queue of ``--queue-size``. Every refused
   request must be a 503 with ``Retry-After``; each is retried after that many seconds until it
   is served. Counts the 503s, the requests served and the time until the last was.
2. **slow clients**: ``--slow-clients`` connections that send half their headers, trickle their
   headers a byte at a time, or send a tenth of a declared body, and then hold on. Counts how many
   the server cut off, after how many seconds and with a 408, and times a normal request sent
   while they wait.
3. **malformed bodies**: named malformed requests plus ``--mutations`` seeded mutations (cuts,
   flipped and inserted bytes) of valid JSON and multipart bodies, each on its own connection.
   Counts the answers by status: a 5xx is a failure.
4. **memory**: the server's resident set (VmRSS) after its warm-up and after each phase.

Exits 1 on any 5xx, a refusal without Retry-After, a request never served, or a slow client the
server kept.

    python benchmarks/serve_hostile.py
    python benchmarks/serve_hostile.py --burst 64 --queue-size 8 --slow-clients 300 --json serve_hostile.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

TIMEOUT_S = 2.0


def png_bytes(seed: int, width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (with a valid checksum) claims ``width x height`` pixels."""
    data = bytearray(png_bytes(3))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC covers type and fields
    return bytes(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set of process ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``segzero serve`` in a child process on a free loopback port."""

    def __init__(self, args: argparse.Namespace, models: tuple[str, str, int | None]) -> None:
        reasoner, segmenter, frame = models
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "segzero.cli", "serve", "--reasoner", reasoner, "--segmenter", segmenter,
            "--port", str(self.port), "--device", args.device, "--max-new-tokens", str(args.max_new_tokens),
            "--max-batch-size", str(args.batch_size), "--queue-size", str(args.queue_size),
            "--header-timeout-s", str(TIMEOUT_S), "--body-timeout-s", str(TIMEOUT_S),
            "--keep-alive-timeout-s", str(TIMEOUT_S), "--log-level", "warning",
        ]  # fmt: skip
        if frame:
            command += ["--frame", str(frame)]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - read until stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, seconds: float) -> None:
        import httpx

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"segzero serve exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("ready"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"segzero serve was not ready within {seconds:g} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- 1. burst past the queue -----------------------------------------------------------------------


async def burst(url: str, n: int, max_retries: int, deadline: float) -> dict:
    import httpx

    refused = without_retry_after = other = served = 0
    statuses: Counter = Counter()
    started = time.perf_counter()
    last_served = 0.0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal refused, without_retry_after, other, served, last_served
        data = png_bytes(i)
        for _ in range(max_retries + 1):
            try:
                response = await client.post(
                    f"{url}/v1/segment",
                    files={"image": (f"{i}.png", data, "image/png")},
                    data={"request": f"object {i}"},
                )
            except httpx.TransportError as exc:
                statuses[type(exc).__name__] += 1
                other += 1
                return
            statuses[response.status_code] += 1
            if response.status_code == 200:
                served += 1
                last_served = time.perf_counter() - started
                return
            if response.status_code != 503:
                other += 1
                return
            refused += 1
            retry_after = response.headers.get("retry-after")
            if retry_after is None:
                without_retry_after += 1
                return
            await asyncio.sleep(min(float(retry_after), max(0.0, deadline - time.monotonic())))

    # A new connection per request: a connection kept alive through a Retry-After wait may be closed by the
    # server's keep-alive timeout just as it is reused, an error of HTTP/1.1, not of the server.
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        await asyncio.gather(*(one(client, i) for i in range(n)))
    return {
        "requests": n,
        "refused_503": refused,
        "refused_without_retry_after": without_retry_after,
        "other_errors": other,
        "served": served,
        "seconds_until_all_served": last_served,
        "statuses": dict(statuses),
    }


# -- 2. slow clients -------------------------------------------------------------------------------

HALF_HEADERS = b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
PART_BODY = (
    b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n" + b'{"request": "'
)


def slow_clients(port: int, n: int, url: str) -> dict:
    """``n`` connections split between half headers, trickled headers and a partial body; returns when the
    server has closed every one or after ``3 * TIMEOUT_S + 10`` seconds."""
    import httpx

    normal: dict[str, float] = {}

    def normal_request(key: str, wait_s: float) -> None:  # a well-behaved client
        time.sleep(wait_s)
        started = time.perf_counter()
        response = httpx.post(
            f"{url}/v1/segment",
            files={"image": ("a.png", png_bytes(0), "image/png")},
            data={"request": "the object"},
            timeout=60,
        )
        normal[key] = time.perf_counter() - started if response.status_code == 200 else float("nan")

    normal_request("alone", 0.0)
    kinds = ("half headers", "trickled headers", "partial body")
    clients = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        kind = kinds[i % 3]
        sent_at = time.monotonic()
        if kind != "trickled headers":
            sock.sendall(HALF_HEADERS if kind == "half headers" else PART_BODY)
        clients.append(
            {"sock": sock, "kind": kind, "start": sent_at, "got": b"", "closed_after": None, "sent": 0}
        )
    normal_thread = threading.Thread(target=normal_request, args=("while held", TIMEOUT_S / 2))
    normal_thread.start()
    give_up = time.monotonic() + 3 * TIMEOUT_S + 10
    trickle = HALF_HEADERS + b"X-Slow: " + b"a" * 10_000
    next_trickle = time.monotonic()
    while any(c["closed_after"] is None for c in clients) and time.monotonic() < give_up:
        now = time.monotonic()
        if now >= next_trickle:
            next_trickle = now + TIMEOUT_S / 10
            for c in clients:
                if c["kind"] == "trickled headers" and c["closed_after"] is None:
                    try:
                        c["sock"].send(trickle[c["sent"] : c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        c["closed_after"] = time.monotonic() - c["start"]
        open_socks = [c["sock"] for c in clients if c["closed_after"] is None]
        readable, _, _ = select.select(open_socks, [], [], 0.05)
        for c in clients:
            if c["sock"] in readable:
                try:
                    chunk = c["sock"].recv(65536)
                except OSError:
                    chunk = b""
                c["got"] += chunk
                if not chunk:
                    c["closed_after"] = time.monotonic() - c["start"]
    normal_thread.join()
    result: dict = {
        "clients": n,
        "timeout_s": TIMEOUT_S,
        "normal_request_s_alone": normal["alone"],
        "normal_request_s_while_held": normal.get("while held", float("nan")),
        "by_kind": {},
    }
    for kind in kinds:
        group = [c for c in clients if c["kind"] == kind]
        cut = [c["closed_after"] for c in group if c["closed_after"] is not None]
        result["by_kind"][kind] = {
            "clients": len(group),
            "cut_off": len(cut),
            "answered_408": sum(c["got"].startswith(b"HTTP/1.1 408") for c in group),
            "min_s": min(cut, default=float("nan")),
            "max_s": max(cut, default=float("nan")),
        }
    for c in clients:
        c["sock"].close()
    result["kept"] = sum(c["closed_after"] is None for c in clients)
    return result


# -- 3. malformed bodies ---------------------------------------------------------------------------


def raw_request(body: bytes, content_type: str, method: str = "POST", path: str = "/v1/segment") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def named_cases() -> dict[str, bytes]:
    png = png_bytes(1)
    json_ct = "application/json"
    cases = {
        "empty JSON": raw_request(b"", json_ct),
        "truncated JSON": raw_request(b'{"image_base64": "aGk', json_ct),
        "JSON list": raw_request(b"[1, 2, 3]", json_ct),
        "JSON string": raw_request(b'"hello"', json_ct),
        "arrays 100,000 deep": raw_request(b"[" * 100_000 + b"]" * 100_000, json_ct),
        "objects 50,000 deep": raw_request(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, json_ct),
        "integer of 5,000 digits": raw_request(b'{"overlay": 1' + b"0" * 5000 + b"}", json_ct),
        "NaN overlay": raw_request(b'{"image_base64": "aGk=", "request": "x", "overlay": NaN}', json_ct),
        "invalid UTF-8": raw_request(b'{"request": "\xff\xfe"}', json_ct),
        "UTF-16 JSON": raw_request(json.dumps({"request": "x"}).encode("utf-16"), json_ct),
        "lone surrogate request": raw_request(
            json.dumps({"image_base64": base64.b64encode(png).decode(), "request": "cup\ud800"}).encode(),
            json_ct,
        ),
        "control tokens in the request": raw_request(
            json.dumps({"image_base64": base64.b64encode(png).decode(), "request": "<|image_pad|>"}).encode(),
            json_ct,
        ),
        "request as a number": raw_request(
            json.dumps({"image_base64": base64.b64encode(png).decode(), "request": 5}).encode(), json_ct
        ),
        "10,000 unknown fields": raw_request(
            json.dumps({f"f{i}": i for i in range(10_000)}).encode(), json_ct
        ),
        "bad base64": raw_request(b'{"image_base64": "***", "request": "x"}', json_ct),
        "data URL without base64": raw_request(
            b'{"image_base64": "data:image/png,abc", "request": "x"}', json_ct
        ),
        "base64 of text": raw_request(b'{"image_base64": "aGVsbG8gd29ybGQ=", "request": "x"}', json_ct),
        "multipart without boundary": raw_request(b"--x\r\n\r\n", "multipart/form-data"),
        "multipart cut short": raw_request(
            b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="a',
            "multipart/form-data; boundary=b0undary",
        ),
        "two images": raw_request(
            *multipart([("image", "a.png", png), ("image", "b.png", png), ("request", None, b"x")])
        ),
        "no image": raw_request(*multipart([("request", None, b"x")])),
        "request as a file": raw_request(*multipart([("image", "a.png", png), ("request", "r.txt", b"cup")])),
        "empty request": raw_request(*multipart([("image", "a.png", png), ("request", None, b"  . ")])),
        "request of 100,000 characters": raw_request(
            *multipart([("image", "a.png", png), ("request", None, b"x" * 100_000)])
        ),
        "overlay maybe": raw_request(
            *multipart([("image", "a.png", png), ("request", None, b"x"), ("overlay", None, b"maybe")])
        ),
        "traversal filename, not an image": raw_request(
            *multipart([("image", "../../../../etc/passwd", b"root:x:0:0"), ("request", None, b"x")])
        ),
        "truncated PNG": raw_request(
            *multipart([("image", "a.png", png[: len(png) // 2]), ("request", None, b"x")])
        ),
        "PNG claiming 100,000 x 100,000": raw_request(
            *multipart([("image", "a.png", png_claiming(100_000, 100_000)), ("request", None, b"x")])
        ),
        "EPS (not allowed)": raw_request(
            *multipart([("image", "a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n"), ("request", None, b"x")])
        ),
        "plain text": raw_request(b"image=1&request=x", "text/plain"),
        "no content type": raw_request(b"{}", "").replace(b"Content-Type: \r\n", b""),
        "Content-Length not a number": b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        "Content-Length negative": b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "declared 100 GB": b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000000\r\n\r\n{",
        "bad chunked encoding": b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "header of 100 KB": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        "binary garbage": bytes(random.Random(0).randrange(256) for _ in range(2000)),
        "GET on the segment endpoint": b"GET /v1/segment HTTP/1.1\r\nHost: x\r\n\r\n",
        "path traversal": b"GET /static/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "encoded path traversal": b"GET /static/%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    return cases


def mutated_cases(n: int, seed: int) -> dict[str, bytes]:
    """Seeded mutations of valid bodies: cut, bytes flipped or inserted, mostly in the structure."""
    rng = random.Random(seed)
    png = png_bytes(2)
    valid = [
        (
            json.dumps({"image_base64": base64.b64encode(png).decode(), "request": "the cup"}).encode(),
            "application/json",
        ),
        multipart([("image", "a.png", png), ("request", None, b"the cup"), ("overlay", None, b"true")]),
    ]
    cases = {}
    for i in range(n):
        body, content_type = rng.choice(valid)
        body = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            where = rng.choice((rng.randrange(min(len(body), 300)), rng.randrange(len(body))))
            op = rng.random()
            if op < 0.3:
                body = body[:where]
            elif op < 0.65:
                body[where : where + 1] = bytes([rng.randrange(256)])
            else:
                body[where:where] = rng.choice(
                    (b"{", b"}", b"[", b'"', b"\\", b"\r\n", b"--b0undary\r\n", b"\xff", b"\x00")
                )
        cases[f"mutation {i}"] = raw_request(bytes(body), content_type)
    return cases


def send_raw(port: int, data: bytes, wait: float = 30.0) -> int | None:
    """Send ``data`` on a new connection; the status of the answer, or None if the server hung up without one."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait)
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer (413, 431) and close before taking everything
        received = b""
        try:
            while b"\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass
    line = received.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit() else None


def malformed(port: int, mutations: int, seed: int) -> dict:
    cases = {**named_cases(), **mutated_cases(mutations, seed)}
    statuses: Counter = Counter()
    named: dict[str, int | None] = {}
    server_errors = []
    for name, data in cases.items():
        status = send_raw(port, data)
        statuses[str(status)] += 1
        if not name.startswith("mutation"):
            named[name] = status
        if status is None or status >= 500:
            server_errors.append(name)
    by_class = Counter(f"{s[0]}xx" if s != "None" else "no answer" for s in statuses.elements())
    return {
        "cases": len(cases),
        "named": named,
        "statuses": dict(statuses),
        "by_class": dict(by_class),
        "server_errors": server_errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reasoner", help="Reasoner hub id or folder (default: build tiny random models).")
    parser.add_argument("--segmenter", help="Segmenter hub id or folder (with --reasoner).")
    parser.add_argument("--frame", type=int, help="Reasoner frame side (default: the model's).")
    parser.add_argument("--device", default="cpu", help="Device of the served models.")
    parser.add_argument("--max-new-tokens", type=int, default=4, help="Generation budget per request.")
    parser.add_argument("--batch-size", type=int, default=4, help="The server's max_batch_size.")
    parser.add_argument("--queue-size", type=int, default=4, help="The server's queue_size.")
    parser.add_argument("--burst", type=int, default=32, help="Requests sent at once in the burst.")
    parser.add_argument("--retries", type=int, default=50, help="Most retries of one refused request.")
    parser.add_argument("--slow-clients", type=int, default=150, help="Slow connections held at once.")
    parser.add_argument("--mutations", type=int, default=200, help="Mutated valid bodies in the corpus.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the mutations.")
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="segzero-hostile-") as tmp:
        if args.reasoner:
            models = (args.reasoner, args.segmenter, args.frame)
        else:
            from segzero.tiny import make_tiny

            tiny = make_tiny(tmp)
            models = (str(tiny.reasoner), str(tiny.segmenter), args.frame or tiny.frame)
        server = Server(args, models)
        try:
            server.wait_ready(300)
            figures: dict = {"rss_mb": {"after warm-up": rss_mb(server.process.pid)}}
            figures["burst"] = asyncio.run(
                burst(server.url, args.burst, args.retries, time.monotonic() + 600)
            )
            figures["rss_mb"]["after the burst"] = rss_mb(server.process.pid)
            figures["slow_clients"] = slow_clients(server.port, args.slow_clients, server.url)
            figures["rss_mb"]["after the slow clients"] = rss_mb(server.process.pid)
            figures["malformed"] = malformed(server.port, args.mutations, args.seed)
            figures["rss_mb"]["after the malformed corpus"] = rss_mb(server.process.pid)
            alive = server.process.poll() is None
        finally:
            server.stop()
    report(figures, args, alive)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    b, s, m = figures["burst"], figures["slow_clients"], figures["malformed"]
    failed = (
        not alive
        or b["refused_without_retry_after"]
        or b["other_errors"]
        or b["served"] != b["requests"]
        or s["kept"]
        or m["server_errors"]
    )
    sys.exit(1 if failed else 0)


def report(figures: dict, args: argparse.Namespace, alive: bool) -> None:
    b = figures["burst"]
    print(
        f"burst: {b['requests']} requests at once, queue {args.queue_size}, batch {args.batch_size}: "
        f"{b['refused_503']} refusals, all 503 with Retry-After: {b['refused_without_retry_after'] == 0}; "
        f"other errors {b['other_errors']}; served {b['served']}/{b['requests']} "
        f"(the last after {b['seconds_until_all_served']:.1f} s)"
    )
    s = figures["slow_clients"]
    print(
        f"slow clients: {s['clients']} held at once, timeouts {s['timeout_s']:g} s; still open at the end: {s['kept']}"
    )
    for kind, g in s["by_kind"].items():
        print(
            f"  {kind:<17} {g['cut_off']:>4}/{g['clients']:<4} cut off after {g['min_s']:.2f}-{g['max_s']:.2f} s, "
            f"{g['answered_408']} answered 408"
        )
    print(
        f"  a normal request sent meanwhile took {s['normal_request_s_while_held']:.2f} s "
        f"(alone, just before: {s['normal_request_s_alone']:.2f} s)"
    )
    m = figures["malformed"]
    print(f"malformed corpus: {m['cases']} requests; by class {m['by_class']}; statuses {m['statuses']}")
    for name, status in m["named"].items():
        print(f"  {status}  {name}")
    if m["server_errors"]:
        print(f"  5xx or no answer: {m['server_errors']}")
    print("server RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in figures["rss_mb"].items()))
    print(f"server still running at the end: {alive}")


if __name__ == "__main__":
    main()
