"""The one retry and pacing mechanism: what is retried, how long it waits, what it never shows."""

from __future__ import annotations

import email.utils
import http.client
import socket
import threading
from collections import deque
from collections.abc import Callable

import pytest

from sandbox.server import Request, StandIn
from sandbox.server import Response as Answer
from shared.http import (
    AuthError,
    FatalError,
    HttpClient,
    Pacer,
    Response,
    RetriableError,
    RetryPolicy,
    StaticKey,
    Transport,
    announced_wait,
)
from shared.http.pacing import CATCH_UP_S, HEADROOM


class Scripted(StandIn):
    """Answers with the queued responses, one per request, then 200."""

    vendor = "scripted"

    def __init__(self):
        super().__init__()
        self.queue: deque[Answer] = deque()

    def routes(self):
        return [("POST", r"/batch", self.answer), ("GET", r"/batch", self.answer)]

    def answer(self, request: Request) -> Answer:
        return self.queue.popleft() if self.queue else Answer(200, {"ok": True})

    def state(self):
        return {}

    def reset(self):
        self.queue.clear()


@pytest.fixture(scope="module")
def server():
    with Scripted() as running:
        yield running


@pytest.fixture
def client(server):
    server.queue.clear()
    server.log.clear()
    waits: list[float] = []
    http = HttpClient("Vendor", Pacer(10_000), Transport(), policy=RetryPolicy(attempts=4, base_delay=0.01),
                      sleep=waits.append)
    http.waits = waits
    return http


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Response:
    message = http.client.HTTPMessage()
    for name, value in (headers or {}).items():
        message[name] = value
    return Response(status, "", message, body)


def test_every_throttling_signal_in_use_is_read():
    now = 1_700_000_000.0
    assert announced_wait(response(429, {"Retry-After": "7"}), lambda: now) == 7
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert announced_wait(response(429, {"Retry-After": date}), lambda: now) == pytest.approx(30, abs=1)
    assert announced_wait(response(429, {"X-RateLimit-Reset": str(int(now) + 3)}), lambda: now) == 3  # Braze: epoch
    assert announced_wait(response(429, {"X-Rate-Limit-Reset": "12"}), lambda: now) == 12  # seconds to wait
    problem = response(429, {"Content-Type": "application/problem+json"}, b'{"retryAfter": 9}')
    assert announced_wait(problem, lambda: now) == 9  # Omnisend's problem body
    assert announced_wait(response(429), lambda: now) is None  # Snapchat: a bare 429


def test_server_errors_are_retried_with_growing_waits_until_success(server, client):
    server.queue.extend([Answer(503, {}), Answer(500, {}), Answer(502, {})])
    assert client.request("POST", f"{server.url}/batch", json={}).status_code == 200
    assert len(server.log) == 4 and client.stats.retries == 3 and client.stats.server_errors == 3
    assert client.waits[0] < client.waits[2]


def test_an_announced_wait_is_honoured_exactly(server, client):
    server.queue.append(Answer(429, {}, {"Retry-After": "2"}))
    client.request("POST", f"{server.url}/batch", json={})
    assert client.waits == [2.0] and client.stats.throttled == 1


def test_giving_up_after_the_attempts_says_what_the_vendor_answered(server, client):
    server.queue.extend([Answer(503, {"message": "down for maintenance"})] * 4)
    with pytest.raises(RetriableError, match=r"Vendor answered 503: down for maintenance \(gave up after 4 attempts\)"):
        client.request("POST", f"{server.url}/batch", json={})


def test_other_client_errors_are_not_retried(server, client):
    server.queue.append(Answer(400, {"message": "bad payload"}))
    with pytest.raises(FatalError, match=r"Vendor refused the request \(400\): bad payload"):
        client.request("POST", f"{server.url}/batch", json={})
    assert len(server.log) == 1


def test_a_401_with_a_static_key_fails_at_once_without_echoing_the_key(server, client):
    server.queue.append(Answer(401, {"message": "invalid key"}))
    with pytest.raises(AuthError) as caught:
        client.request("POST", f"{server.url}/batch", auth=StaticKey({"Authorization": "Bearer sk-123456"}), json={})
    assert "sk-123456" not in str(caught.value) and len(server.log) == 1


@pytest.mark.parametrize("auth_header, secret", [
    ("Bearer sk-live-0123456789", "sk-live-0123456789"),
    ("Omnisend-API-Key ok-live-0123456789", "ok-live-0123456789"),
    ("Basic Y20tYXBpLWtleS0wMTIzNDU2Nzg5Ong=", "cm-api-key-0123456789"),  # "cm-api-key-0123456789:x"
])
def test_a_vendor_that_echoes_the_credential_it_refused_does_not_put_it_in_the_error(server, client, auth_header,
                                                                                     secret):
    server.queue.append(Answer(401, {"message": f"invalid key {secret} for this account ({auth_header})"}))
    with pytest.raises(AuthError) as refused:
        client.request("POST", f"{server.url}/batch", auth=StaticKey({"Authorization": auth_header}), json={})
    server.queue.extend([Answer(400, {"message": f"bad request with {secret}"})])
    with pytest.raises(FatalError) as failed:
        client.request("POST", f"{server.url}/batch", auth=StaticKey({"Authorization": auth_header}), json={})
    for error in (refused.value, failed.value):
        assert secret not in str(error) and "[redacted]" in str(error)


def test_a_token_grant_echoed_back_keeps_its_form_values_out_of_the_error(server, client):
    form = {"grant_type": "refresh_token", "client_secret": "cs-0123456789", "refresh_token": "rt-0123456789"}
    server.queue.append(Answer(400, {"message": "bad grant: client_secret=cs-0123456789 refresh_token=rt-0123456789"}))
    with pytest.raises(FatalError) as failed:
        client.request("POST", f"{server.url}/batch", data=form)
    assert "cs-0123456789" not in str(failed.value) and "rt-0123456789" not in str(failed.value)
    assert "refresh_token=[redacted]" in str(failed.value)  # the grant type, no secret, stays readable


def test_a_token_grant_echoed_as_it_was_sent_url_encoded_keeps_its_secrets_out_of_the_error(server, client):
    """A base64 token's "+/=" travel as %2B, %2F, %3D in the form body; a vendor echoing
    the body it refused repeats them so, or JSON-escaped."""
    import re
    from urllib.parse import urlencode

    form = {"grant_type": "refresh_token", "refresh_token": "Ab+cD/eF==Gh1234567890", "client_id": "id-0123456789"}
    sent = urlencode(form)
    assert "Ab%2BcD%2FeF%3D%3DGh1234567890" in sent
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), sent)
    server.queue.append(Answer(400, {"message": f"Invalid refresh token (received: {sent}; {lower_hex}; "
                                                "token Ab+cD\\/eF==Gh1234567890)"}))
    with pytest.raises(FatalError) as failed:
        client.request("POST", f"{server.url}/batch", data=form)
    message = str(failed.value)
    for leaked in ("Ab+cD", "Ab%2BcD", "Ab%2bcD", "Ab+cD\\/eF", "Gh1234567890", "id-0123456789"):
        assert leaked not in message
    assert message.count("refresh_token=[redacted]") == 2


def test_a_long_message_is_cut_after_its_credentials_are_redacted_so_no_beginning_of_one_stays(server, client):
    form = {"grant_type": "refresh_token", "refresh_token": "rt-0123456789abcdef"}
    server.queue.append(Answer(400, {"message": "x" * 280 + " rt=rt-0123456789abcdef"}))  # cut at 297 chars
    with pytest.raises(FatalError) as failed:
        client.request("POST", f"{server.url}/batch", data=form)
    assert "rt-01" not in str(failed.value) and str(failed.value).endswith("rt=[redacted]")


def test_a_credential_http_cannot_carry_fails_without_quoting_it(server, client):
    with pytest.raises(FatalError) as failed:
        client.request("POST", f"{server.url}/batch", auth=StaticKey({"Authorization": "Bearer sk-0123456789\n"}),
                       json={})
    assert "sk-0123456789" not in str(failed.value) and "line break" in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_a_dropped_connection_is_retried(server, client, monkeypatch):
    from sandbox.server import Faults

    monkeypatch.setattr(server, "faults", Faults(drop_before=1.0))
    with pytest.raises(RetriableError, match="connection failed or dropped"):
        client.request("POST", f"{server.url}/batch", json={})
    assert client.stats.network_errors == 4


def test_a_kept_alive_connection_closed_while_idle_is_replaced_at_once_but_through_the_pacer(server):
    # A stale keep-alive is not a fault (no back-off, no retry counted), yet the request is
    # sent again only after the pacer's turn: a throttle window may have begun meanwhile.
    server.queue.clear()
    turns = []

    class CountingPacer(Pacer):
        def acquire(self) -> float:
            turns.append(1)
            return super().acquire()

    transport = Transport()
    client = HttpClient("Vendor", CountingPacer(10_000), transport, policy=RetryPolicy(attempts=4, base_delay=0.01))
    client.request("POST", f"{server.url}/batch", json={})
    for idle in transport._idle.values():  # the pooled connection dies, as when the server closes it
        for connection in idle:
            connection.sock.shutdown(socket.SHUT_RDWR)
    client.request("POST", f"{server.url}/batch", json={"second": True})
    assert len(turns) == 3
    assert client.stats.retries == 0 and client.stats.network_errors == 0
    assert server.log[-1]["status"] == 200


def _clocked(limit: float, **options) -> tuple[Pacer, list[float]]:
    """A pacer on a clock of its own: sleeping moves the clock (`now[0]`)."""
    now = [0.0]
    return Pacer(limit, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), **options), now


def _shared(share: float = 1.0) -> _Budget:
    """A budget as when another process is listed as sending to the connection: requests are spaced."""
    budget = _Budget(share)
    budget.alone = None
    return budget


def test_a_pacer_alone_lets_the_vendors_count_for_a_window_go_at_once_then_waits_for_the_window():
    """Snapchat counts 10 requests in any second: a run needing four sends them as they are
    ready; the eleventh waits until the first is a window (stretched by the headroom) old."""
    pacer, now = _clocked(10, window_s=1.0)
    assert [pacer.acquire() for _ in range(10)] == [0.0] * 10 and now[0] == 0.0
    pacer.acquire()
    assert now[0] == pytest.approx(1.0 / HEADROOM)
    for _ in range(9):
        pacer.acquire()
    assert now[0] == pytest.approx(1.0 / HEADROOM)
    pacer.acquire()
    assert now[0] == pytest.approx(2.0 / HEADROOM)  # 97% of the limit, on average


@pytest.mark.parametrize("limit, window, alone", [(10, 1.0, True), (400 / 60, 60.0, True), (1000, 3.0, True),
                                                  (10, 1.0, False), (7.3, 10.0, True)])
def test_no_window_of_the_vendors_ever_holds_more_requests_than_it_counts(limit, window, alone):
    """Whatever the moments requests are ready (bursts, pauses, a process joining and the
    pacer switching from bursts to spacing midway), no span of the vendor's window holds
    more than its count (Omnisend: 400 in any minute)."""
    import bisect
    import random

    randomness = random.Random(f"{limit}-{window}-{alone}")
    budget = _Budget(1.0)
    budget.alone = float("inf") if alone else None
    pacer, now = _clocked(limit, window_s=window, budget=budget)
    arrived = []
    for number in range(int(limit * window * 6)):
        if number == int(limit * window * 3):
            budget.alone = None  # another process joined: spaced from now on
        # Ready half as fast again as the limit allows on average, with pauses of up to 20 turns.
        now[0] += randomness.choice([0.0] * 30 + [0.001, 0.3, 1.5, 20.0]) / limit
        pacer.acquire()
        # Each on its way for up to 2% of a second: the vendor counts arrivals.
        arrived.append(now[0] + randomness.uniform(0, 0.02))
    arrived.sort()
    busiest = max(bisect.bisect_left(arrived, start + window) - i for i, start in enumerate(arrived))
    assert busiest <= limit * window + 1e-9


@pytest.mark.parametrize("limit, window, expected", [
    (10, 1.0, (1.0, 10)),  # Snapchat
    (1000, 3.0, (1.0, 1000)),  # Braze: 3,000 per 3 s, counted a second at a time
    (400 / 60, 60.0, (3.0, 20)),  # Omnisend: 400 a minute, whole in 3 s
    (7.3, 1.0, (0.0, 0)),  # no whole count within 3 s: spaced only
    (2.5, 3.0, (0.0, 0)),  # 5 in 2 s, but 2 s windows do not tile Braze's 3: a burst each side of its edge
    (0.5, 1.0, (0.0, 0)),  # not even one request in the vendor's window of a second
    (float("inf"), 1.0, (0.0, 0)),
])
def test_the_burst_window_is_the_shortest_whole_second_count_within_the_vendors_window(limit, window, expected):
    from shared.http.pacing import burst_of

    assert burst_of(limit, window) == expected


def test_sharing_the_connection_the_pacer_spaces_requests_at_its_rate():
    pacer, now = _clocked(10, budget=_shared())
    for _ in range(21):
        pacer.acquire()
    assert now[0] == pytest.approx(2.0 / HEADROOM)  # under the limit


def test_a_pacer_alone_since_less_than_a_window_first_lets_the_others_window_pass():
    """Another process that left half a second ago may have sent its window's count just
    before: they count at the vendor until that window has passed."""
    budget = _Budget(1.0)
    budget.alone = 0.5
    pacer, now = _clocked(10, budget=budget)
    pacer.acquire()
    assert now[0] == pytest.approx(1.0 / HEADROOM - 0.5)


def test_a_request_whose_turn_a_throttle_window_voided_is_counted_when_it_leaves():
    """A 429's window announced while a sender slept to its turn: it leaves at the window's
    end, counted then, so the requests ready then do not make a burst of one too many."""
    now, sent = [0.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if not pacer._hold_until:
            pacer.hold(2.0)  # told while this first sleep lasted

    pacer = Pacer(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        pacer.acquire()  # a burst at 0: no sleep
    for _ in range(11):  # the first sleeps to 1.03 s, is held until 3.03, then 10 more come
        pacer.acquire()
        sent.append(now[0])
    at_the_windows_end = [t for t in sent if t == pytest.approx(sent[0])]
    assert sent[0] == pytest.approx(1.0 / HEADROOM + 2.0) and len(at_the_windows_end) == 10


def test_a_request_a_little_late_keeps_its_slot_and_does_not_push_the_next_ones_back():
    """A sender thread woken a few ms late (the interpreter lock) takes its slot at once,
    and the next request leaves on the original grid: lateness does not add up."""
    pacer, now = _clocked(10, budget=_shared())
    interval = 1 / (10 * HEADROOM)
    pacer.acquire()  # slot 0
    now[0] = interval + CATCH_UP_S / 2  # the thread comes late for slot 1
    assert pacer.acquire() == 0
    pacer.acquire()
    assert now[0] == pytest.approx(2 * interval)


def test_time_the_senders_left_unused_is_not_made_up_in_a_burst_when_spaced():
    """After a pause, at most CATCH_UP_S worth of slots leave at once: within the headroom."""
    pacer, now = _clocked(1000, budget=_shared())
    pacer.acquire()
    now[0] = 5.0
    at_once = 0
    while pacer.acquire() == 0:
        at_once += 1
    assert at_once <= 1000 * HEADROOM * CATCH_UP_S + 1
    assert 5.0 < now[0] < 5.0 + 0.002


def test_a_throttle_window_holds_every_sender_of_the_pacer():
    pacer, now = _clocked(1000)
    pacer.hold(5)
    pacer.acquire()
    assert now[0] >= 5


class _Budget:
    """A budget whose share the test sets (the real one, through a blob: test_rate_budget.py)."""

    def __init__(self, share: float):
        self.part, self.senders = share, 0
        self.alone: float | None = float("inf")  # seconds since another process sent (None: one sends)
        self.announced: list[float] = []  # throttle windows this process told the others
        self.others_hold: Callable[[], float] = lambda: 0.0  # seconds left of one another process announced

    def hold(self, seconds: float) -> None:
        self.announced.append(seconds)

    def held_s(self) -> float:
        return self.others_hold()

    def join(self) -> None:
        self.senders += 1

    def leave(self) -> None:
        self.senders -= 1

    def share(self) -> float:
        return self.part

    def alone_s(self) -> float | None:
        return self.alone if self.part == 1.0 else None


def test_a_pacer_sends_at_its_process_share_of_the_limit_and_tells_the_budget_its_senders():
    budget = _Budget(0.25)
    pacer = Pacer(100, budget=budget)
    pacer.join()
    pacer.join()
    assert budget.senders == 2
    assert pacer.rate == pytest.approx(25 * HEADROOM)
    budget.part = 1.0
    assert pacer.rate == pytest.approx(100 * HEADROOM)
    pacer.leave()
    assert budget.senders == 1
    assert Pacer(100).rate == pytest.approx(100 * HEADROOM)  # without a budget: the whole limit


def test_a_pacer_without_a_share_waits_until_it_has_one():
    now = [0.0]
    budget = _Budget(0.0)

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 0.5:
            budget.part = 1.0  # the other hosts made room

    pacer = Pacer(10, budget=budget, clock=lambda: now[0], sleep=sleep)
    waited = pacer.acquire()
    assert now[0] >= 0.5 and waited == pytest.approx(now[0])


def test_a_throttle_window_is_told_to_the_budget_and_one_told_by_another_process_holds_this_one():
    budget = _Budget(1.0)
    pacer, now = _clocked(10, budget=budget)
    pacer.hold(3)
    assert budget.announced == [3]  # the other processes learn it from the budget
    assert pacer.acquire() == pytest.approx(3)
    started = now[0]
    budget.others_hold = lambda: max(0.0, started + 2.0 - now[0])  # announced to another process
    pacer.acquire()
    assert now[0] - started >= 2.0


def test_an_answer_slower_than_the_timeout_is_retried_then_reported(server, monkeypatch):
    from sandbox.server import Faults

    monkeypatch.setattr(server, "faults", Faults(slow=1.0, slow_s=0.5))
    client = HttpClient("Vendor", Pacer(10_000), Transport(), policy=RetryPolicy(attempts=2, base_delay=0.01),
                        timeout=0.1)
    # The vendor got the request and worked on it: whether it applied it is unknown, and said.
    with pytest.raises(RetriableError, match="Vendor: no answer within the timeout; an attempt was sent and not "
                                             "answered: the vendor may have applied it \\(gave up after 2 attempts\\)"):
        client.request("POST", f"{server.url}/batch", json={})
    assert client.stats.network_errors == 2


def test_a_request_that_could_not_be_sent_does_not_say_it_may_have_been_applied():
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HttpClient("Vendor", Pacer(10_000), Transport(), policy=RetryPolicy(attempts=2, base_delay=0.01),
                        timeout=0.5)
    with pytest.raises(RetriableError) as failed:
        client.request("POST", f"http://127.0.0.1:{port}/batch", json={})
    assert str(failed.value) == "Vendor: connection failed or dropped (gave up after 2 attempts)"


# Header blocks as servers send them, and the odd shapes the email package must still decide.
HEADER_BLOCKS = [
    b"\r\n",
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n",
    b"A:b\r\nA:   two  \r\nEmpty:\r\nTab:\tx\r\nColons: a:b:c\r\n\r\n",  # repeats, blanks, colons in values
    b"Latin: \xe9t\xe9\n\n",  # bare LF line ends, a byte that is not ASCII
    b"A: b\r\n  folded\r\n\r\n",  # an obsolete continuation line
    b"no colon here\r\nA: b\r\n\r\n",
    b"A: b\rc\r\n\r\n",  # a stray carriage return
    b"From someone\r\nA: b\r\n\r\n",
    b": no name\r\n\r\n",
    b"Space In Name: x\r\n\r\n",
    b"A: b\r\n",  # the connection closed before the blank line
]


def _parsed(parse, block: bytes):
    import io

    message = parse(io.BytesIO(block))
    state = dict(vars(message))
    defects = [(type(defect), str(defect)) for defect in state.pop("defects")]
    return state, defects, message.items()


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_response_headers_read_directly_make_the_message_the_email_package_makes(block):
    from shared.http.headers import _stdlib_parse_headers, parse_headers

    assert _parsed(parse_headers, block) == _parsed(_stdlib_parse_headers, block)


def test_response_headers_read_directly_agree_with_the_email_package_on_random_blocks():
    import random

    from shared.http.headers import _stdlib_parse_headers, parse_headers

    pieces = [b"A", b"b", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xe9", b"-", b"\x0b", b"\x85"]
    draw = random.Random(7)
    for _ in range(5_000):
        block = b"".join(draw.choice(pieces) for _ in range(draw.randrange(1, 16))) + draw.choice(
            [b"\r\n\r\n", b"\n\n", b""])
        assert _parsed(parse_headers, block) == _parsed(_stdlib_parse_headers, block), block


def test_a_worker_reads_answer_headers_directly_and_still_honours_an_announced_wait(server, client, monkeypatch):
    from shared.http import headers

    monkeypatch.setattr(http.client, "parse_headers", http.client.parse_headers)  # restored after the test
    calls = []
    monkeypatch.setattr(headers, "_FIELD", _Counting(headers._FIELD, calls))
    assert headers.read_headers_directly() and http.client.parse_headers is headers.parse_headers
    server.queue.append(Answer(429, {}, {"Retry-After": "2"}))
    client.request("POST", f"{server.url}/batch", json={})
    ours = [text for thread, text in calls if thread == threading.get_ident()]  # not another thread's answer
    assert client.waits == [2.0] and client.stats.throttled == 1 and len(ours) == 2  # the 429, then the 200


class _Counting:
    """A compiled pattern that counts its `findall` calls."""

    def __init__(self, pattern, calls: list):
        self.pattern, self.calls = pattern, calls

    def findall(self, text: str):
        self.calls.append((threading.get_ident(), text))
        return self.pattern.findall(text)


def _read_request(connection) -> None:
    """Read one HTTP request whole (headers, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += connection.recv(65536)


def test_a_request_dropped_on_a_kept_alive_connection_once_sent_may_have_been_applied():
    """Closed after the vendor read it (and maybe applied it), a kept-alive connection looks
    like one closed while idle: sent again at once, and if the request fails for good, it
    says the vendor may have applied it."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        kept, _ = listener.accept()
        _read_request(kept)
        kept.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        _read_request(kept)  # the second request, read whole: then no answer
        kept.close()
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            _read_request(connection)
            connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    client = HttpClient("Vendor", Pacer(10_000), Transport(), policy=RetryPolicy(attempts=2, base_delay=0.01))
    try:
        client.request("POST", f"http://127.0.0.1:{port}/batch", json={})
        with pytest.raises(RetriableError) as failed:
            client.request("POST", f"http://127.0.0.1:{port}/batch", json={})
    finally:
        listener.close()
    assert str(failed.value).startswith("Vendor answered 503")
    assert "the vendor may have applied it" in str(failed.value)
