#!/usr/bin/env python
"""Burst benchmark (issue 10): many consumers text twice at once — a first text, then the menu
choice "1" — while agents are connected over websockets, on a Tern it starts itself.

    .venv/bin/python bench/burst.py --consumers 1000 --agents 20 --database postgres

Starts `manage.py serve` on a fresh database (bench/versus.py's start_tern: migrate, seed_demo,
the sending limit lifted), makes N agents in the demo's Billing queue (capacity 3) and connects
each over a real websocket, then every consumer posts its two signed webhooks in order, all
consumers at once. Afterwards, once every text is handled and every reply handed to the provider,
it checks in the database: non-200 answers, texts lost or stored twice, every consumer's one chat
in Billing with their two texts in order, each consumer's replies once each, no agent over
capacity, and every assigned chat heard on its agent's socket. Loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inbound  # noqa: E402
import push_latency  # noqa: E402
import versus  # noqa: E402

MAX_CONSUMERS = 5000
MAX_AGENTS = 200


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=1000, help="consumers texting at once (default 1000)")
    parser.add_argument("--agents", type=int, default=20, help="agents connected over websockets (default 20)")
    parser.add_argument("--capacity", type=int, default=3, help="each agent's max concurrent chats (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="parallel webhook connections (default 64)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--web-workers", type=int, default=0, help="default 2 on PostgreSQL, 1 on SQLite")
    args = parser.parse_args(argv)
    if not 1 <= args.consumers <= MAX_CONSUMERS or not 1 <= args.agents <= MAX_AGENTS:
        parser.error(f"--consumers 1..{MAX_CONSUMERS}, --agents 1..{MAX_AGENTS}")
    return args


def point_django_at(server: versus.Server) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "TERN_VAR_DIR"):
        if name in server.env:
            os.environ[name] = server.env[name]
        else:
            os.environ.pop(name, None)
    inbound.setup_django(versus.TOKEN)


def burst(url: str, consumers: list[str], concurrency: int) -> tuple[inbound.Results, float, list[inbound.Text]]:
    """Each consumer's "Hi" then "1", in order; all consumers at once."""
    results = inbound.Results()
    poster = inbound.Poster(url, "", versus.TOKEN, inbound.DEMO_NUMBER, results)
    texts = []

    def consumer(number: str):
        for body in ("Hi, I need help", "1"):
            text = inbound.Text(number, body, "SM" + os.urandom(16).hex())
            texts.append(text)
            poster.post(text)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(consumer, consumers))
    return results, time.perf_counter() - started, texts


def check(consumers: list[str], seats, capacity: int, heard: dict[int, set[int]]) -> list[str]:
    """What must hold once everything is handled; returns what did not."""
    from django.db.models import Count

    from chats.models import Author, Chat, ChatStatus, Message
    from portal.models import ChatSettings
    from queues.models import Queue
    from sms.models import OutboundMessage

    problems = []
    billing = Queue.objects.get(name="Billing")
    chats = {chat.consumer_number: chat for chat in Chat.objects.filter(consumer_number__in=consumers)}
    counts = Counter(Chat.objects.filter(consumer_number__in=consumers).values_list("consumer_number", flat=True))
    if len(chats) != len(consumers) or any(n != 1 for n in counts.values()):
        problems.append(f"{len(consumers) - len(chats)} consumers without a chat, {sum(n > 1 for n in counts.values())} with several")
    wrong_queue = [c for c in chats.values() if c.queue_id != billing.pk or c.status not in (ChatStatus.QUEUED, ChatStatus.ASSIGNED)]
    if wrong_queue:
        problems.append(f"{len(wrong_queue)} chats not waiting in or assigned from Billing, e.g. {wrong_queue[0].status}")
    texts: dict[int, list[str]] = {}
    for chat_id, body in Message.objects.filter(chat__in=chats.values(), author=Author.CONSUMER).order_by("created_at", "pk").values_list("chat_id", "body"):
        texts.setdefault(chat_id, []).append(body)
    out_of_order = sum(texts.get(c.pk) != ["Hi, I need help", "1"] for c in chats.values())
    if out_of_order:
        problems.append(f"{out_of_order} chats whose texts are not [first, 1]")
    settings = ChatSettings.load()
    doubled = (
        OutboundMessage.objects.filter(to_number__in=consumers)
        .values("to_number", "body").annotate(n=Count("pk")).filter(n__gt=1).count()
    )
    if doubled:
        problems.append(f"{doubled} replies sent twice to one consumer")
    no_opt_in = len(consumers) - OutboundMessage.objects.filter(to_number__in=consumers, body=settings.opt_in_message).count()
    if no_opt_in:
        problems.append(f"{no_opt_in} consumers without the opt-in text")
    load = Counter(Chat.objects.filter(consumer_number__in=consumers, status=ChatStatus.ASSIGNED).values_list("agent_id", flat=True))
    over = {agent: n for agent, n in load.items() if n > capacity}
    if over:
        problems.append(f"agents over capacity: {over}")
    ours = {seat.agent_id for seat in seats}
    unheard = [
        c.pk for c in chats.values()
        if c.status == ChatStatus.ASSIGNED and c.agent_id in ours and c.pk not in heard.get(c.agent_id, set())
    ]
    if unheard:
        problems.append(f"{len(unheard)} assigned chats never pushed to their agent's socket")
    print(f"chats               {len(chats):8d}   ({sum(c.status == ChatStatus.ASSIGNED for c in chats.values())} assigned, "
          f"{sum(c.status == ChatStatus.QUEUED for c in chats.values())} waiting in Billing)")
    print(f"agents' load        {dict(sorted(Counter(load.values()).items()))} (chats per agent: agents)")
    return problems


async def run(args) -> int:
    import aiohttp

    kind = args.database
    web_workers = args.web_workers or (2 if kind == "postgres" else 1)
    work = Path(tempfile.mkdtemp(prefix="tern-burst-"))
    print(f"Tern burst: {args.consumers} consumers × 2 texts at once, {args.agents} agents connected, {kind}, "
          f"{web_workers} web process(es), {args.concurrency} connections; {os.cpu_count()} CPUs")
    server = versus.start_tern(kind, work, web_workers)
    try:
        point_django_at(server)
        from asgiref.sync import sync_to_async

        seats = await sync_to_async(push_latency.prepare_agents)(args.agents, "Billing", args.capacity)
        run_state = push_latency.Run()
        connect_args = argparse.Namespace(url=server.urls[0])
        async with aiohttp.ClientSession() as session:
            sockets, readers, _ = await push_latency.connect_all(session, connect_args, seats, run_state)
            pings = [asyncio.create_task(push_latency.keep_alive(sock, push_latency.PING_EVERY)) for sock in sockets]
            load_before = os.getloadavg()
            rng = random.Random()
            run_id = rng.randrange(100, 1000)
            consumers = [f"+1556{run_id:03d}{n:04d}" for n in range(args.consumers)]
            started = time.perf_counter()
            results, elapsed, texts = await asyncio.get_running_loop().run_in_executor(
                None, burst, server.urls[0], consumers, args.concurrency
            )
            seconds, replies, notes = await asyncio.get_running_loop().run_in_executor(
                None, versus.wait_end_to_end, kind, server, consumers, started
            )
            await asyncio.sleep(2)  # the last pushes
            heard: dict[int, set[int]] = {}
            for sock in sockets:
                heard[sock.seat.agent_id] = {cid for cid, (_, status) in sock.chat_status.items() if status == "assigned"}
            gaps = sum(sock.seq_gaps for sock in sockets)
            for task in pings + readers:
                task.cancel()
            for sock in sockets:
                await sock.ws.close()
        distinct, rows = versus.stored(kind, server, [t.sid for t in texts])
        latencies = [v * 1000 for v in results.latencies]
        print(f"webhooks            {len(latencies):8d}   in {elapsed:.2f} s ({len(latencies) / elapsed:.0f}/s)")
        print(f"latency p50         {statistics.median(latencies):8.1f} ms")
        print(f"latency p99         {inbound.percentile(latencies, 0.99):8.1f} ms")
        print(f"latency max         {max(latencies):8.1f} ms")
        print(f"HTTP statuses       {dict(sorted(results.statuses.items()))}")
        print(f"lost                {len(texts) - distinct:8d}")
        print(f"duplicated          {rows - distinct:8d}")
        print(f"end to end          {seconds:8.1f} s   until every text was handled and {replies} replies handed to the provider")
        print(f"socket seq gaps     {gaps:8d}")
        print(f"load average        {load_before[0]:8.2f} before, {os.getloadavg()[0]:.2f} after")
        problems = await sync_to_async(check)(consumers, seats, args.capacity, heard)
        problems += notes
        if set(results.statuses) != {200} or results.failures:
            problems.append(f"{len(results.failures)} requests not answered 200")
        if len(texts) != distinct or rows != distinct:
            problems.append("texts lost or stored twice")
        for problem in problems:
            print(f"PROBLEM             {problem}")
        print("all checks held" if not problems else f"{len(problems)} checks failed")
        return 1 if problems else 0
    finally:
        server.stop()


def main(argv=None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
