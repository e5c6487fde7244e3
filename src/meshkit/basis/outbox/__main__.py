"""Run an outbox relay as its own process::

    python -m meshkit.basis.outbox --database sqlite+aiosqlite:///data/catalog.db \\
        --nats nats://127.0.0.1:4223 --prefix catalog --source catalog --holder relay-1

It publishes ``<prefix>_outbox`` until SIGTERM/SIGINT (graceful) or SIGKILL
(nothing is lost: unmarked rows are published again, with their dedup ids).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from meshkit.basis.bus import Bus
from meshkit.basis.outbox.outbox import Outbox
from meshkit.basis.outbox.relay import Relay
from meshkit.basis.storage import create_engine, session_factory


async def _run(args: argparse.Namespace) -> int:
    engine = create_engine(args.database)
    bus = Bus(args.nats, source=args.source)
    relay = Relay(Outbox(args.prefix, source=args.source), session_factory(engine), bus,
                  holder=args.holder, batch=args.batch, lease_ttl=args.lease_ttl, poll=args.poll)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while True:  # NATS may be down when we start: keep trying
        try:
            await bus.connect()
            break
        except Exception as exc:
            logging.getLogger("meshkit.outbox").warning("relay: %s; retrying", exc)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
                return 0
            except TimeoutError:
                continue
    await relay.start()
    print("relay ready", flush=True)
    await stop.wait()
    await relay.stop()
    await bus.close()
    await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the relay until a stop signal."""
    parser = argparse.ArgumentParser(prog="python -m meshkit.basis.outbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of the service's database")
    parser.add_argument("--nats", default=os.environ.get("MESHKIT_NATS_URL", "nats://127.0.0.1:4223"))
    parser.add_argument("--prefix", required=True, help="table prefix (the service name)")
    parser.add_argument("--source", default=None, help="CloudEvents source (default: the prefix)")
    parser.add_argument("--holder", default=f"relay-{os.getpid()}", help="lease holder id")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args(argv)
    args.source = args.source or args.prefix
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
