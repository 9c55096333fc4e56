#!/usr/bin/env python
"""Push latency benchmark: from a consumer's webhook answered 200 to the frame on the agent's socket.

N agents connect over real websockets to a running Tern server (/ws/agent/, logged in with a
session cookie, allowed Origin), consumers text the demo number through signed Twilio webhooks
(bench/inbound.py's signing), each consumer's chat is assigned to one of the agents, and then every
timed text is matched by its body (unique per text) to the `message.created` frame on the socket
of the agent holding the chat.

    TWILIO_AUTH_TOKEN=bench-token python manage.py serve --port 8150 &
    TWILIO_AUTH_TOKEN=bench-token python bench/push_latency.py --url http://127.0.0.1:8150 --agents 200

Sets up what it needs in the server's database (the same DATABASE_URL / TERN_VAR_DIR): agent users
pushbench000… with agent profiles in the demo queue, and a session for each. Prints p50/p99/max
milliseconds and the frames missed. Loopback only; see bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import secrets
import statistics
import sys
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for inbound.py's signing

from inbound import DEMO_NUMBER, Poster, Results, Text, _is_loopback, percentile, setup_django  # noqa: E402

WS_PATH = "/ws/agent/"
AGENT_PREFIX = "pushbench"
CONSUMER_PREFIX = "+15557"  # + two digits of the run + four of the consumer
MAX_AGENTS = 500
MAX_CONSUMERS = 2_000
MAX_COUNT = 50_000
MAX_CONCURRENCY = 64
PING_EVERY = 20  # seconds, as the adapter does (presence forgets a socket silent for 90 s)
CONNECT_AT_ONCE = 10
CONNECT_ATTEMPTS = 5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running Tern server, on loopback")
    parser.add_argument("--agents", type=int, default=10, help="agents connected over websockets (default 10)")
    parser.add_argument("--consumers", type=int, help="consumers, one chat each (default: one per agent)")
    parser.add_argument("--count", type=int, default=600, help="timed texts, dealt round-robin to the consumers (default 600)")
    parser.add_argument(
        "--rate", type=float, default=10.0,
        help="timed texts per second, all consumers together (default 10; 0 = as fast as --concurrency allows)",
    )
    parser.add_argument(
        "--setup-rate", type=float, default=2.0,
        help="chats opened per second before the timed texts (default 2; 0 = all at once). Each opening "
        "is pushed to every agent of the queue, so a burst costs chats × agents frames",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel webhook connections (default 8)")
    parser.add_argument("--capacity", type=int, default=3, help="each agent's max concurrent chats (default 3, raised to fit)")
    parser.add_argument("--queue", default="Billing", help="the queue the agents join; menu choice 1 of the demo (default Billing)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame before counting it missed")
    parser.add_argument("--settle-timeout", type=float, default=180.0, help="seconds to wait for the setup's SMS replies to go out")
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN") or "bench-token",
        help="the server's TWILIO_AUTH_TOKEN (default: $TWILIO_AUTH_TOKEN or bench-token)",
    )
    parser.add_argument("--to", default=DEMO_NUMBER, help=f"the portal number texted (default {DEMO_NUMBER})")
    parser.add_argument("--public-base-url", default=os.environ.get("PUBLIC_BASE_URL", ""))
    parser.add_argument("--ping-every", type=float, default=PING_EVERY, help="seconds between heartbeats (default 20, as the adapter; 0 = none)")
    parser.add_argument("--frames-log", help="write every frame heard (agent, time, type, seq) to this JSON-lines file")
    parser.add_argument("--keep", action="store_true", help="leave the run's chats open (default: ended afterwards)")
    args = parser.parse_args(argv)
    args.consumers = args.consumers or args.agents
    if not 1 <= args.agents <= MAX_AGENTS:
        parser.error(f"--agents must be between 1 and {MAX_AGENTS}")
    if not 1 <= args.consumers <= MAX_CONSUMERS:
        parser.error(f"--consumers must be between 1 and {MAX_CONSUMERS}")
    if not args.consumers <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between --consumers and {MAX_COUNT}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if args.rate < 0 or args.setup_rate < 0:
        parser.error("--rate and --setup-rate must be 0 or more")
    args.capacity = max(args.capacity, math.ceil(args.consumers / args.agents))
    if args.capacity > 50:
        parser.error("more than 50 chats per agent: give more --agents or fewer --consumers")
    args.url = args.url.rstrip("/")
    target = urllib.parse.urlsplit(args.url)
    if target.scheme != "http" or not target.hostname or not _is_loopback(target.hostname):
        parser.error("--url must be http:// on a loopback address (127.0.0.1, localhost, [::1])")
    return args


# --- the database (sync, before and after the event loop) --------------------------------------


@dataclass
class Seat:
    """One bench agent: its profile id and a logged-in session."""

    agent_id: int
    username: str
    session_key: str


def prepare_agents(count: int, queue_name: str, capacity: int) -> list[Seat]:
    """Agent users pushbench000… (no usable password), allowed to see full numbers (frames are
    matched to consumers by number), offline with no connection, members of the queue, each
    with a fresh session as the login form would leave it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.models import Permission
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    from portal.models import AgentProfile, AgentStatus
    from queues.models import Queue

    queue = Queue.objects.filter(name=queue_name).first()
    if queue is None:
        raise SystemExit(f"No queue named {queue_name!r}: run `manage.py seed_demo` first, or pass --queue.")
    User = get_user_model()
    full_numbers = Permission.objects.get(content_type__app_label="portal", codename="view_full_numbers")
    seats = []
    with transaction.atomic():
        # Agents of an earlier, larger run whose sockets died without a disconnect still count as
        # connected for a while: routing would give them this run's chats.
        AgentProfile.objects.filter(user__username__startswith=AGENT_PREFIX).update(
            status=AgentStatus.OFFLINE, connection_count=0
        )
        for index in range(count):
            username = f"{AGENT_PREFIX}{index:03d}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User(username=username, first_name=f"Bench {index}")
                user.set_unusable_password()
                user.save()
            user.user_permissions.add(full_numbers)
            agent, _ = AgentProfile.objects.get_or_create(user=user, defaults={"display_name": f"Bench {index:03d}"})
            AgentProfile.objects.filter(pk=agent.pk).update(
                max_concurrent_chats=capacity, status=AgentStatus.OFFLINE, connection_count=0
            )
            queue.agents.add(agent)
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            seats.append(Seat(agent.pk, username, session.session_key))
    return seats


def end_bench_chats(numbers: list[str] | None = None) -> int:
    """End the bench's open chats (this run's, or every bench consumer's left by an earlier run)."""
    from chats.models import ACTIVE_STATUSES, Chat, DisconnectedBy, FinishReason
    from chats.services import end_chat

    chats = Chat.objects.filter(status__in=ACTIVE_STATUSES)
    chats = chats.filter(consumer_number__in=numbers) if numbers else chats.filter(consumer_number__startswith=CONSUMER_PREFIX)
    ended = 0
    for chat in chats:
        by = DisconnectedBy.AGENT if chat.agent_id else DisconnectedBy.SYSTEM
        end_chat(chat=chat, by=by, reason=FinishReason.AGENT_ENDED, notify_consumer=False)
        ended += 1
    return ended


def unsent_replies(numbers: list[str]) -> int:
    """The run's SMS replies not yet handed to the provider."""
    from sms.models import MessageStatus, OutboundMessage

    waiting = [MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.SENDING]
    return OutboundMessage.objects.filter(to_number__in=numbers, status__in=waiting).count()


def forget_sessions(seats: list[Seat]) -> None:
    from django.contrib.sessions.models import Session

    Session.objects.filter(session_key__in=[seat.session_key for seat in seats]).delete()


# --- the sockets --------------------------------------------------------------------------------


@dataclass
class Socket:
    seat: Seat
    ws: object = None
    last_seq: int = 0
    frames: int = 0
    seq_gaps: int = 0
    closed_code: int | None = None
    kinds: Counter = field(default_factory=Counter)  # frames heard, by event type
    error: str = ""
    ping_sent: list[float] = field(default_factory=list)
    chat_status: dict = field(default_factory=dict)  # chat id → (version, status) last heard
    out_of_order: list[tuple] = field(default_factory=list)  # (chat, last status heard, version, status)
    pong_ms: list[float] = field(default_factory=list)  # ping → pong: how long the consumer was busy


@dataclass
class Run:
    """What the sockets heard, keyed for matching."""

    assigned: dict[str, asyncio.Future] = field(default_factory=dict)  # consumer number → (agent id, t)
    heard: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # text body → [(agent id, t)]
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)  # text body → first frame
    log: list | None = None  # every frame, with --frames-log
    connect_retries: list[str] = field(default_factory=list)


async def read_frames(sock: Socket, run: Run, hello: asyncio.Future):
    try:
        await _read_frames(sock, run, hello)
    except Exception as exc:  # noqa: BLE001 — counted and shown, the other sockets go on
        sock.error = repr(exc)
        if not hello.done():
            hello.set_exception(exc)


async def _read_frames(sock: Socket, run: Run, hello: asyncio.Future):
    import aiohttp

    async for msg in sock.ws:
        now = time.perf_counter()
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        event = json.loads(msg.data)
        sock.frames += 1
        seq = event.get("seq")
        if isinstance(seq, int):
            if sock.last_seq and seq != sock.last_seq + 1:
                sock.seq_gaps += 1
            sock.last_seq = seq
        kind = event.get("type")
        sock.kinds[kind] += 1
        if run.log is not None:
            run.log.append((sock.seat.agent_id, now, kind, seq, event))
        if kind == "pong" and len(sock.pong_ms) < len(sock.ping_sent):
            sock.pong_ms.append((now - sock.ping_sent[len(sock.pong_ms)]) * 1000)
        elif kind == "hello" and not hello.done():
            hello.set_result(now)
        elif kind == "chat.updated":
            chat = event.get("chat") or {}
            # Each chat.updated carries the chat's version: on one socket they must rise. One
            # that does not is an older event shown after a newer one (or the same one twice).
            last = sock.chat_status.get(chat.get("id"))
            if last is not None and chat.get("version", 0) <= last[0]:
                sock.out_of_order.append((chat.get("id"), last[1], chat.get("version"), chat.get("status")))
            sock.chat_status[chat.get("id")] = (chat.get("version", 0), chat.get("status"))
            if chat.get("status") == "assigned" and chat.get("agent_id") == sock.seat.agent_id:
                future = run.assigned.get(chat.get("consumer_number"))
                if future is not None and not future.done():
                    future.set_result((sock.seat.agent_id, now))
        elif kind == "message.created":
            body = (event.get("message") or {}).get("body", "")
            run.heard.setdefault(body, []).append((sock.seat.agent_id, now))
            future = run.waiting.get(body)
            if future is not None and not future.done():
                future.set_result((sock.seat.agent_id, now))
    sock.closed_code = sock.ws.close_code
    if not hello.done():
        hello.set_exception(ConnectionError(f"{sock.seat.username}: socket closed with code {sock.closed_code}"))


async def connect_all(session, args, seats: list[Seat], run: Run) -> tuple[list[Socket], list[asyncio.Task], list[float]]:
    from django.conf import settings

    ws_url = "ws" + args.url[len("http"):] + WS_PATH
    import aiohttp

    limit = asyncio.Semaphore(CONNECT_AT_ONCE)
    sockets, readers, connect_ms = [], [], []
    retries = run.connect_retries

    async def connect(seat: Seat):
        # As the adapter does, a refused or dropped handshake is tried again (daphne closes a
        # handshake the application has not accepted within 5 s); each retry is counted.
        async with limit:
            for attempt in range(1, CONNECT_ATTEMPTS + 1):
                started = time.perf_counter()
                ws = None
                try:
                    ws = await session.ws_connect(
                        ws_url,
                        headers={"Origin": args.url, "Cookie": f"{settings.SESSION_COOKIE_NAME}={seat.session_key}"},
                        autoping=True,
                        max_msg_size=0,
                    )
                    sock = Socket(seat, ws)
                    hello = asyncio.get_running_loop().create_future()
                    reader = asyncio.create_task(read_frames(sock, run, hello))
                    await asyncio.wait_for(hello, 30)
                except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError) as exc:
                    retries.append(f"{seat.username}: {exc!r}")
                    if ws is not None:
                        await ws.close()
                    if attempt == CONNECT_ATTEMPTS:
                        raise
                    await asyncio.sleep(attempt)
                    continue
                readers.append(reader)
                connect_ms.append((time.perf_counter() - started) * 1000)
                sockets.append(sock)
                return

    await asyncio.gather(*(connect(seat) for seat in seats))
    return sockets, readers, connect_ms


async def keep_alive(sock: Socket, every: float):
    """The adapter's heartbeat: a ping every 20 s keeps the agent's presence (portal.presence
    forgets a socket silent for 90 s). Each socket starts at a random point of the period, as
    browsers opened at different times would."""
    await asyncio.sleep(random.uniform(0, every))
    while not sock.ws.closed:
        sock.ping_sent.append(time.perf_counter())
        await sock.ws.send_str('{"type": "ping"}')
        await asyncio.sleep(every)


# --- the consumers ------------------------------------------------------------------------------


@dataclass
class Sample:
    text: Text
    index: int = 0  # its place in the schedule
    sent: float = 0.0
    accepted: float = 0.0  # the HTTP 200 read
    status: int = 0
    agent_id: int | None = None  # the socket the frame arrived on
    frame: float | None = None


def timed_post(poster: Poster, text: Text) -> tuple[float, float, int]:
    started = time.perf_counter()
    status = poster.post(text)
    return started, time.perf_counter(), status


async def main_async(args, seats: list[Seat], numbers: list[str]) -> dict:
    import aiohttp

    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="webhook")
    results = Results()
    poster = Poster(args.url, args.public_base_url, args.auth_token, args.to, results)
    run = Run(log=[] if args.frames_log else None)
    report: dict = {"results": results, "t0": time.perf_counter()}

    async def post(text: Text) -> tuple[float, float, int]:
        return await loop.run_in_executor(pool, timed_post, poster, text)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        started = time.perf_counter()
        sockets, readers, connect_ms = await connect_all(session, args, seats, run)
        report["connect_s"] = time.perf_counter() - started
        report["connect_ms"] = connect_ms
        pingers = [asyncio.create_task(keep_alive(sock, args.ping_every)) for sock in sockets if args.ping_every]
        print(f"  {len(sockets)} agents connected in {report['connect_s']:.1f} s")

        # Setup: each consumer opens a chat (greeting, menu choice 1) and waits for it to reach
        # an agent's socket as chat.updated (assigned) — the agent is then in the chat's group.
        holder: dict[str, int] = {}
        assign_ms: list[float] = []
        for number in numbers:
            run.assigned[number] = loop.create_future()

        setup_t0 = time.perf_counter()

        async def open_chat(index: int, number: str):
            if args.setup_rate:  # chats opened at --setup-rate per second
                await asyncio.sleep(max(0.0, setup_t0 + index / args.setup_rate - time.perf_counter()))
            await post(Text(number, "Hi, I have a question", "SM" + secrets.token_hex(16)))
            sent, _, status = await post(Text(number, "1", "SM" + secrets.token_hex(16)))
            if status != 200:
                return
            try:
                agent_id, heard = await asyncio.wait_for(asyncio.shield(run.assigned[number]), 60)
            except asyncio.TimeoutError:
                return
            holder[number] = agent_id
            # Assignment runs after the batch worker handled the choice (it came inside the
            # request before issue 10): timed from the request.
            assign_ms.append((heard - sent) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(open_chat(index, number) for index, number in enumerate(numbers)))
        report["setup_s"] = time.perf_counter() - started
        report["assign_ms"] = assign_ms
        unassigned = [number for number in numbers if number not in holder]
        print(f"  {len(holder)} chats assigned in {report['setup_s']:.1f} s ({len(unassigned)} not assigned)")
        if unassigned:
            report["unassigned"] = unassigned

        # Let the setup's SMS replies (greeting, menu, queued and joined notices) go out, so the
        # timed texts do not compete with the task cluster working off a backlog.
        started = time.perf_counter()
        left = None
        while time.perf_counter() - started < args.settle_timeout:
            left = await asyncio.to_thread(unsent_replies, numbers)
            if not left:
                break
            await asyncio.sleep(1)
        report["settle_s"] = time.perf_counter() - started
        report["unsent_after_settle"] = left
        print(f"  setup replies sent after {report['settle_s']:.1f} s more ({left} still unsent)")

        # The timed texts, each consumer's in order, at --rate texts/s overall.
        active = [number for number in numbers if number in holder]
        run_tag = secrets.token_hex(3)
        samples: list[Sample] = []
        plan: dict[str, list[Sample]] = {number: [] for number in active}
        for n in range(args.count if active else 0):
            number = active[n % len(active)]
            body = f"push {run_tag} #{n} from {number}"
            sample = Sample(Text(number, body, "SM" + secrets.token_hex(16)), index=n)
            samples.append(sample)
            plan[number].append(sample)
            run.waiting[body] = loop.create_future()

        gate = asyncio.Semaphore(args.concurrency)
        t0 = time.perf_counter() + 0.5

        async def consumer(number: str):
            for sample in plan[number]:
                if args.rate:
                    delay = t0 + sample.index / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                async with gate:
                    sample.sent, sample.accepted, sample.status = await post(sample.text)

        loads: list[float] = []

        async def sample_load():  # the machine is shared: the figures need the load beside them
            while True:
                loads.append(os.getloadavg()[0])
                await asyncio.sleep(5)

        sampler = asyncio.create_task(sample_load())
        started = time.perf_counter()
        await asyncio.gather(*(consumer(number) for number in active))
        report["send_s"] = time.perf_counter() - started
        sampler.cancel()
        report["load_during"] = loads
        # Wait for the last frames, up to --timeout after the last 200.
        deadline = time.perf_counter() + args.timeout
        for sample in samples:
            future = run.waiting[sample.text.body]
            try:
                sample.agent_id, sample.frame = await asyncio.wait_for(
                    asyncio.shield(future), max(0.0, deadline - time.perf_counter())
                )
            except asyncio.TimeoutError:
                pass
        for pinger in pingers:
            pinger.cancel()
        for sock in sockets:
            await sock.ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    pool.shutdown(wait=True)
    report.update(samples=samples, holder=holder, sockets=sockets, heard=run.heard, connect_retries=run.connect_retries)
    if args.frames_log:
        with open(args.frames_log, "w") as out:
            for agent_id, at, kind, seq, event in run.log:
                out.write(json.dumps({"agent": agent_id, "t": round(at - report["t0"], 4), "type": kind, "seq": seq, "event": event}) + "\n")
    return report


# --- the figures --------------------------------------------------------------------------------


def summarise(values: list[float]) -> str:
    if not values:
        return "     n/a"
    return (
        f"p50 {statistics.median(values):7.1f}   p99 {percentile(values, 0.99):7.1f}   "
        f"max {max(values):7.1f} ms   (n={len(values)})"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django(args.auth_token)
    from django.conf import settings
    from django.db import connections

    database = settings.DATABASES["default"]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"Tern push latency benchmark → {args.url} ({WS_PATH})")
    print(
        f"  {args.agents} agents, {args.consumers} consumers, {args.count} timed texts at "
        f"{f'{args.rate:g}/s' if args.rate else 'full speed'}, {args.concurrency} webhook connections"
    )
    print(f"  database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}; channel layer: {layer}")
    print(f"  load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    # Ending the bench's chats publishes to groups whose sockets are gone: not worth a log line.
    logging.getLogger("channels_redis").setLevel(logging.WARNING)
    left = end_bench_chats()
    if left:
        print(f"  ended {left} open chats of earlier bench runs")
    seats = prepare_agents(args.agents, args.queue, args.capacity)
    run_number = random.randrange(100)
    numbers = [f"{CONSUMER_PREFIX}{run_number:02d}{index:04d}" for index in range(args.consumers)]
    connections.close_all()

    try:
        report = asyncio.run(main_async(args, seats, numbers))
    finally:
        if not args.keep:
            end_bench_chats()
        forget_sessions(seats)
    load_after = os.getloadavg()

    samples: list[Sample] = report["samples"]
    results: Results = report["results"]
    holder: dict[str, int] = report["holder"]
    sockets: list[Socket] = report["sockets"]
    got = [s for s in samples if s.frame is not None and s.status == 200]
    missed = [s for s in samples if s.status == 200 and s.frame is None]
    wrong_socket = [s for s in got if s.agent_id != holder.get(s.text.consumer)]
    duplicated = sum(len(report["heard"].get(s.text.body, [])) > 1 for s in samples)
    not_200 = [s for s in samples if s.status != 200]
    after_200 = [(s.frame - s.accepted) * 1000 for s in got]
    after_sent = [(s.frame - s.sent) * 1000 for s in got]
    webhook = [(s.accepted - s.sent) * 1000 for s in samples if s.status == 200]
    early = sum(value < 0 for value in after_200)

    print()
    # The webhook stores the text and answers; the push leaves when the batch worker that handled
    # it commits, after the 200 (before issue 10 it left inside the request and often beat the
    # 200: such a frame, already on the agent's screen when Twilio got its answer, counts as 0).
    print(f"200 → frame         {summarise([max(0.0, value) for value in after_200])}")
    print(f"  signed            {summarise(after_200)}, min {min(after_200, default=0):.1f} ms")
    print(f"  frames ahead of their 200: {early} of {len(after_200)}")
    print(f"request → frame     {summarise(after_sent)}")
    print(f"request → 200       {summarise(webhook)}")
    print(f"request '1' → chat.updated (assigned) {summarise(report['assign_ms'])}")
    print(f"connect → hello     {summarise(report['connect_ms'])}")
    if report["connect_retries"]:
        print(f"  handshakes tried again: {len(report['connect_retries'])}, e.g. {report['connect_retries'][0]}")
    pongs = [value for sock in sockets for value in sock.pong_ms]
    unanswered = sum(len(sock.ping_sent) - len(sock.pong_ms) for sock in sockets)
    print(f"ping → pong         {summarise(pongs)}, {unanswered} unanswered")
    print(f"timed texts         {len(samples):8d}   sent in {report.get('send_s', 0):.1f} s")
    print(f"frames missed       {len(missed):8d}")
    print(f"on the wrong socket {len(wrong_socket):8d}")
    print(f"heard twice         {duplicated:8d}")
    print(f"seq gaps            {sum(sock.seq_gaps for sock in sockets):8d}")
    kinds = sum((sock.kinds for sock in sockets), Counter())
    # The server numbers pushes per group before the channel layer; a socket that lost some is
    # told so ("stream.gap") and its page reloads.
    print(f"pushes lost (stream.gap) {kinds['stream.gap']:3d}")
    broken = [(sock.seat.agent_id, *item) for sock in sockets for item in sock.out_of_order]
    print(f"chat.updated out of order {len(broken):4d}" + (
        "   e.g. agent %s, chat %s: heard %s, then version %s → %s" % broken[0] if broken else ""))
    print(f"webhooks not 200    {len(not_200):8d}   statuses {dict(sorted(results.statuses.items()))}")
    print(f"chats not assigned  {len(report.get('unassigned', [])):8d}")
    print(f"frames heard        {sum(kinds.values()):8d}   {dict(kinds.most_common())}")
    closed = Counter(sock.closed_code for sock in sockets if sock.closed_code not in (None, 1000))
    if closed:
        print(f"sockets closed by the server {dict(closed)}")
    errors = [sock.error for sock in sockets if sock.error]
    if errors:
        print(f"socket readers failed {len(errors):4d}   e.g. {errors[0]}")
    loads = report.get("load_during") or [0.0]
    print(f"load average (1 min) during the timed texts: {min(loads):.2f}–{max(loads):.2f}")
    print(f"load average after  {' '.join(f'{v:.2f}' for v in load_after)}")
    for sample in missed[:5]:
        print(f"  missed: {sample.text.body!r} (agent {holder.get(sample.text.consumer)})")
    ok = not missed and not wrong_socket and not not_200 and not report.get("unassigned") and not results.failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
