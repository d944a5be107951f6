"""HTTP mode on waitress: one endpoint for everything, junk refused before Bolt, a burst acked in time.

Everything goes over real loopback sockets to the real app (build_app) served by SlackHTTPServer; only
Slack's Web API is the local fake. Malformed requests are written as raw bytes, since http.client
refuses to send most of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.playground.simulate import SlackSimulator, http_parts
from bot.slack.answering import BUSY, PLACEHOLDER
from bot.slack.http import MAX_BODY_BYTES, SlackHTTPServer
from bot.store import Store

from .slack_fake import ADMIN, PERSON, SIGNING_SECRET, final_update, in_thread_of


@pytest.fixture
def serve_http():
    """Serve an app on 127.0.0.1, any free port, in a thread; every server started is stopped after."""
    running = []

    def start(app) -> SlackHTTPServer:
        server = SlackHTTPServer(app, SIGNING_SECRET, port=0)
        thread = threading.Thread(target=server.serve_forever, name="test-waitress", daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.stop()
        thread.join(10)
        assert not thread.is_alive(), "the HTTP server did not stop within 10 s"


def post(url, body: bytes, headers: dict):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are; (status, response body). The server closes after answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head + body)
        except OSError:  # it may answer (413) and close before an oversized body is all sent
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def request_head(headers: list[tuple[bytes, bytes]], path: bytes = b"/slack/events") -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def signed(body: bytes, timestamp: bytes) -> bytes:
    """Slack's signature over raw bytes, so that even a body that is not UTF-8 can be signed right."""
    base = b"v0:" + timestamp + b":" + body
    return b"v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest().encode()


def test_http_mode_takes_events_commands_and_interactivity_on_one_endpoint(
    make_app, serve_http, sim, fake_slack, store_path
):
    server = serve_http(make_app())
    assert server.address[0] == "127.0.0.1"
    url = server.url

    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "unused"})
    status, body = post(url, challenge.encode(), sim.headers(challenge, content_type="application/json"))
    assert status == 200 and "c-123" in body
    status, body = post(url, *http_parts(sim.command("/reindex", "help", user=PERSON, channel="CHTTP")))
    assert status == 200 and body.startswith("*/reindex*")
    click = sim.button("feedback_up", "ans-http", user=PERSON, channel="CHTTP", message_ts="1.1")
    assert post(url, *http_parts(click))[0] == 200
    fake_slack.wait_for("chat.postEphemeral", lambda p: p.get("user") == PERSON)
    assert [(v["answer_id"], v["vote"]) for v in Store(store_path).votes()] == [("ans-http", "up")]

    forged = SlackSimulator("wrong").command("/reindex", "", user=ADMIN, channel="C")
    forged_body, headers = http_parts(forged)
    assert post(url, forged_body, headers)[0] == 401
    status, body = post(url.replace("/slack/events", "/other"), forged_body, headers)
    assert status == 404 and "POSTs to /slack/events" in json.loads(body)["error"]
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(url, timeout=30)
    assert got.value.code == 405 and got.value.headers["Allow"] == "POST"


def junk_requests(sim) -> list[tuple[str, bytes, bytes, set[int]]]:
    """(what, request head, body, statuses allowed): each is malformed or unsigned, none may run."""
    body = sim.event_body(
        {"type": "app_mention", "user": PERSON, "text": "<@UEXPERTBOT> hi", "ts": "1.1", "channel": "CJ"},
        event_id="EvJUNK",
    ).encode()
    now = str(int(time.time())).encode()
    json_type = (b"Content-Type", b"application/json")

    def head(ts: bytes, sig: bytes | None = None, length: bytes | None = None, data: bytes = body):
        sig = signed(data, ts) if sig is None else sig
        length = str(len(data)).encode() if length is None else length
        return request_head([json_type, (b"Content-Length", length),
                             (b"X-Slack-Request-Timestamp", ts), (b"X-Slack-Signature", sig)])  # fmt: skip

    not_utf8 = body[:-1] + b', "x": "\xff\xfe\xc3("}'
    huge = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    cases = [
        # Timestamps Bolt's int() chokes on or misreads, each with the signature right for it.
        ("timestamp abc", head(b"abc"), body, {401}),
        ("timestamp of 5,000 digits", head(b"9" * 5000), body, {401}),
        ("empty timestamp", head(b""), body, {401}),
        ("full-width digit timestamp", head(now.decode().translate(FULL_WIDTH).encode()), body, {401}),
        ("stale timestamp", head(str(int(time.time()) - 3600).encode()), body, {401}),
        ("non-ASCII signature", head(now, "v0=é".encode() + b"a" * 62), body, {401}),
        ("wrong signature", head(now, b"v0=" + b"0" * 64), body, {401}),
        ("invalid UTF-8 body", head(now, data=not_utf8), not_utf8, {400, 401}),
        ("Content-Length abc", head(now, length=b"abc"), body, {400}),
        ("negative Content-Length", head(now, length=b"-5"), body, {400}),
        ("oversized Content-Length", head(now, length=str(10 * MAX_BODY_BYTES).encode()), b"", {413}),
        ("oversized body", head(now, data=huge), huge, {413}),
        (
            "oversized chunked body",
            request_head([json_type, (b"Transfer-Encoding", b"chunked")]),
            b"%x\r\n" % len(huge) + huge + b"\r\n0\r\n\r\n",
            {413},
        ),  # fmt: skip
        (
            "no signature headers",
            request_head([json_type, (b"Content-Length", b"%d" % len(body))]),
            body,
            {401},
        ),  # fmt: skip
    ]
    rng = random.Random(13)
    for i in range(8):  # random garbage in every field, signed with what the garbage says
        ts = bytes(rng.randrange(33, 256) for _ in range(rng.randrange(0, 20)))
        data = bytes(rng.randrange(0, 256) for _ in range(rng.randrange(0, 2000)))
        sig = rng.choice([signed(data, ts), bytes(rng.randrange(33, 256) for _ in range(67))])
        cases.append((f"random garbage {i}", head(ts, sig, data=data), data, {400, 401}))
    for i in range(3):  # not HTTP at all
        noise = bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 300))) + b"\r\n\r\n"
        cases.append((f"random bytes {i}", noise, b"", {400}))
    return cases


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_unsigned_or_malformed_requests_are_refused_with_no_traceback_and_nothing_run(
    make_app, serve_http, sim, fake_slack, store_path, caplog
):
    server = serve_http(make_app())
    port = server.address[1]
    caplog.set_level(logging.DEBUG)
    for what, head, body, allowed in junk_requests(sim):
        status, answer = raw(port, head, body)
        assert status in allowed, f"{what}: got {status} {answer[:200]!r}"
        if status in (400, 401, 413) and answer.startswith(b"{"):
            assert json.loads(answer)["error"]  # says what is wrong
    assert [c.method for c in fake_slack.calls()] == ["auth.test"]  # only Bolt's start-up check
    assert Store(store_path).claim_event("event:EvJUNK")  # never seen by the dedup middleware
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


BURST = 100


def test_a_burst_of_mentions_is_all_acked_and_each_gets_exactly_one_reply(
    make_app, serve_http, sim, fake_slack
):
    # One answer runs and one waits; whoever finds both slots taken is told "busy" at once. Distinct
    # users, so that no per-user rate limit replies instead.
    server = serve_http(make_app(max_concurrent_answers=1, answer_queue_size=1))
    port = server.address[1]
    events = [
        sim.mention_event(f"What is step {i} of onboarding?", user=f"UBURST{i:03d}", channel="CBURST")
        for i in range(BURST)
    ]
    requests = [http_parts(sim.event(e, event_id=f"EvBURST{i:03d}")) for i, e in enumerate(events)]
    go = threading.Barrier(BURST)

    def send(parts) -> tuple[int, float]:
        body, headers = parts
        head = request_head([(k.encode(), v.encode()) for k, v in headers.items()]
                            + [(b"Content-Length", b"%d" % len(body))])  # fmt: skip
        go.wait()  # all connections at once, as the probe did
        started = time.monotonic()
        status, _ = raw(port, head, body)
        return status, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        acks = list(pool.map(send, requests))
    assert [s for s, _ in acks] == [200] * BURST
    slowest = max(t for _, t in acks)
    assert slowest < 3.0, f"an ack took {slowest:.2f} s; Slack retries after 3 s"

    for event in events:
        fake_slack.wait_for("chat.postMessage", in_thread_of(event), timeout=60)
    first = {i: fake_slack.calls("chat.postMessage", in_thread_of(e))[0] for i, e in enumerate(events)}
    answered = [i for i, post in first.items() if post.params["text"] == PLACEHOLDER]
    busy = [i for i, post in first.items() if post.params["text"] == BUSY]
    assert answered and busy and len(answered) + len(busy) == BURST  # slots free up during the burst
    for i in answered:  # each placeholder becomes a final message, not left "Thinking…"
        final_update(fake_slack, "CBURST", first[i].response["ts"])
    for i, event in enumerate(events):  # and nothing was answered twice meanwhile
        assert len(fake_slack.calls("chat.postMessage", in_thread_of(event))) == 1, f"event {i}"
