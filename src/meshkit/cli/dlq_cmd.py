"""``meshkit dlq list|show|replay``: the dead letters of the bus (stream ``DLQ``).

Thin over :mod:`meshkit.basis.bus.dlq`; registered in :mod:`meshkit.cli.app` by :func:`add_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

EPILOG = """\
examples:
  meshkit dlq list                       every dead letter, oldest first
  meshkit dlq list --consumer search     only the `search` consumer's
  meshkit dlq show 12                    the whole letter (original event, error, deliveries)
  meshkit dlq replay 12                  republish its event on its subject and remove the letter

Replay delivers the event to every consumer of its subject again; consumers
with an inbox (meshkit.basis.inbox) skip it if they had already applied it.
exit codes: 0 done, 1 no such letter or NATS unreachable
"""


def add_parser(sub: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``dlq`` to the ``meshkit`` parser."""
    dlq = sub.add_parser("dlq", help="list, show and replay dead letters of the bus",
                         description="Dead letters: events a consumer gave up on after its maximum deliveries.",
                         epilog=EPILOG, formatter_class=formatter)
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list dead letters")
    listing.add_argument("--consumer", help="only this consumer's (durable name)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON list")
    show = actions.add_parser("show", help="print one dead letter as JSON")
    show.add_argument("seq", type=int)
    replay = actions.add_parser("replay", help="republish a dead letter's event and remove the letter")
    replay.add_argument("seq", type=int)


def command(args: argparse.Namespace, nats_url: str) -> int:
    """Run the chosen action against the NATS at ``nats_url``; the exit code."""
    return asyncio.run(_run(args, nats_url))


async def _run(args: argparse.Namespace, nats_url: str) -> int:
    from meshkit.basis.bus import Bus, get_dead_letter, list_dead_letters, replay_dead_letter
    from meshkit.basis.errors import MeshkitError

    bus = Bus(nats_url, source="meshkit-cli")
    try:
        await bus.connect(timeout=2.0)
        if args.dlq_action == "list":
            letters = await list_dead_letters(bus.js, consumer=args.consumer, limit=args.limit)
            if args.json:
                print(json.dumps([letter.to_json() for letter in letters], indent=2))
            elif not letters:
                print("no dead letters")
            else:
                print(f"{'SEQ':>6}  {'CONSUMER':<20} {'TYPE':<32} {'DELIVERIES':>10}  FAILED AT             ERROR")
                for x in letters:
                    when = datetime.fromtimestamp(x.failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
                    print(f"{x.seq:>6}  {x.consumer:<20} {x.event_type or '?':<32} {x.deliveries:>10}  {when}   {x.error[:80]}")
        elif args.dlq_action == "show":
            print(json.dumps((await get_dead_letter(bus.js, args.seq)).to_json(), indent=2))
        else:
            letter = await replay_dead_letter(bus.js, args.seq)
            print(f"replayed event {letter.event_id} ({letter.event_type}) on {letter.subject}; letter {args.seq} removed")
        return 0
    except MeshkitError as exc:
        print(f"meshkit dlq: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await bus.close()
