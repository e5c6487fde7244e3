"""The ``meshkit`` command line: the parser and the dispatch to each subcommand.

Subcommand modules are imported only when chosen, so ``meshkit --help`` and
``meshkit version`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from meshkit import __version__

MAIN_EPILOG = """\
examples:
  meshkit up                         start NATS and every service; Ctrl-C stops all
  meshkit up --nats-port 4300        the same with NATS on another port
  meshkit services                   who is registered (in another terminal)
  meshkit services --watch           the same, redrawn on every change
  meshkit run catalog                one service in the foreground (e.g. under a debugger)
  meshkit <command> --help           more on one command

settings (environment):
  MESHKIT_NATS_URL    use this NATS instead of starting one (default nats://127.0.0.1:4223)
  MESHKIT_NATS_PORT   port of the NATS that `meshkit up` starts (default 4223)
  MESHKIT_DATA_DIR    where data lives (default .meshkit in the current directory)
  MESHKIT_SYSTEM      the system file to use instead of the built-in one
  NO_COLOR / FORCE_COLOR   never / always colour the output
"""

UP_DESCRIPTION = """\
Start the whole system on this machine: an embedded NATS server (JetStream,
data under --data-dir), then every service of the system file as supervised
child processes (`python -m <module>`, each with MESHKIT_NATS_URL,
MESHKIT_DATA_DIR and MESHKIT_INSTANCE_ID=<service>-<n>).

Each output line carries a coloured service/instance tag. A service that
crashes is restarted with exponential backoff. Once every instance is
registered and answers /readyz, one line with `ready` lists their URLs.
Ctrl-C (or SIGTERM) stops the services, then NATS, within 10 s.

The built-in system file is meshkit/cli/system.yaml inside the package; its
comments explain every key (name, module, instances, env, port, env_prefix,
public). Copy it to start your own. Settings in your environment win over the
file's `env` and `port` (e.g. GATEWAY_PORT=9000 meshkit up).
"""

UP_EPILOG = """\
examples:
  meshkit up
  meshkit up --nats-port 4300 --data-dir /tmp/meshkit-demo
  meshkit up --system my-system.yaml --no-color | tee up.log
  meshkit up --raw-logs                    # JSON log lines as the services write them
  MESHKIT_NATS_URL=nats://10.0.0.5:4222 meshkit up     # use that NATS, start none
  GATEWAY_PORT=9000 CATALOG_LOG_LEVEL=debug meshkit up  # override the system file

exit codes: 0 stopped on request, 1 a service keeps crashing while starting,
2 bad setup (system file invalid, port in use)
"""

SERVICES_DESCRIPTION = """\
List the service instances in the registry: service, instance id, address,
port, version, status and age. The registry lives in the NATS at
$MESHKIT_NATS_URL (default nats://127.0.0.1:4223, the one `meshkit up` starts).
"""

SERVICES_EPILOG = """\
examples:
  meshkit services
  meshkit services --json | jq '.[] | select(.service == "catalog") | .url'
  meshkit services --watch
  MESHKIT_NATS_URL=nats://127.0.0.1:4300 meshkit services

exit codes: 0 listed, 1 nothing answers at the NATS URL (start it with `make up`)
or the registry cannot be read there
"""

RUN_DESCRIPTION = """\
Run one service in the foreground: by its name in the system file (with that
file's settings) or by module. This process becomes `python -m <module>`, so
Ctrl-C, a debugger and the exit code are the service's own.
"""

RUN_EPILOG = """\
examples:
  meshkit run catalog                          by name, with the system file's settings
  meshkit run meshkit.services.catalog.main    by module
  CATALOG_PORT=9000 meshkit run catalog        any service setting from the environment

It uses the NATS that `meshkit up` started (or MESHKIT_NATS_URL); the instance
id is <name>-run-<pid> unless MESHKIT_INSTANCE_ID is set.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of our descriptions and examples."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``meshkit`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="meshkit",
        description="meshkit: run and inspect a meshkit system on this machine.",
        epilog=MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"meshkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    up = sub.add_parser("up", help="start NATS and every service, supervised; Ctrl-C stops all",
                        description=UP_DESCRIPTION, epilog=UP_EPILOG, formatter_class=_Formatter)
    up.add_argument("--system", metavar="FILE",
                    help="system definition (YAML) to start (default: $MESHKIT_SYSTEM or the built-in one)")
    up.add_argument("--nats-port", metavar="N", type=_port, default=None,
                    help="port of the embedded NATS (default: $MESHKIT_NATS_PORT or 4223)")
    up.add_argument("--data-dir", metavar="DIR", type=Path, default=None,
                    help="where NATS and the services keep data (default: $MESHKIT_DATA_DIR or ./.meshkit)")
    up.add_argument("--no-color", action="store_true",
                    help="plain output even on a terminal (also: NO_COLOR=1; FORCE_COLOR=1 forces colour)")
    up.add_argument("--raw-logs", action="store_true",
                    help="pass the services' JSON log lines through unchanged (default off a terminal; "
                         "on one, each becomes a readable line: time, level, message, fields)")

    services = sub.add_parser("services", help="list the registered service instances",
                              description=SERVICES_DESCRIPTION,
                              epilog=SERVICES_EPILOG, formatter_class=_Formatter)
    services.add_argument("--json", action="store_true",
                          help="a JSON list of objects (service, instance_id, address, port, version, "
                               "status, age in seconds, url)")
    services.add_argument("--watch", action="store_true",
                          help="keep printing on every change until Ctrl-C (with --json: one list per line)")

    run = sub.add_parser("run", help="run one service in the foreground",
                         description=RUN_DESCRIPTION,
                         epilog=RUN_EPILOG, formatter_class=_Formatter)
    run.add_argument("target", metavar="MODULE_OR_NAME",
                     help="a service name from the system file (e.g. catalog) or a module with main()")
    run.add_argument("--system", metavar="FILE",
                     help="system file to look the name up in (default: $MESHKIT_SYSTEM or the built-in one)")

    from meshkit.cli import dlq_cmd

    dlq_cmd.add_parser(sub, _Formatter)
    sub.add_parser("version", help="print the meshkit and Python versions",
                   description="Print the meshkit version and the Python that runs it.",
                   epilog="example:\n  meshkit version", formatter_class=_Formatter)
    return parser


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run the chosen subcommand; the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "version":
        print(f"meshkit {__version__} (Python {sys.version.split()[0]}, {sys.executable})")
        return 0
    if args.command == "up":
        from meshkit.cli import up
        from meshkit.cli.output import use_color

        options = up.UpOptions(
            system_file=args.system,
            nats_port=args.nats_port or _env_port(parser),
            data_dir=args.data_dir or Path(os.environ.get("MESHKIT_DATA_DIR") or ".meshkit"),
            nats_url=os.environ.get("MESHKIT_NATS_URL") or None,
        )
        return up.command(options, color=use_color(sys.stdout, no_color=args.no_color),
                          readable_logs=not args.raw_logs and _isatty(sys.stdout))
    if args.command == "services":
        from meshkit.cli import services_cmd
        from meshkit.cli.probe import nats_url

        try:
            return services_cmd.command(nats_url(), as_json=args.json, watch=args.watch)
        except KeyboardInterrupt:
            return 0
    if args.command == "dlq":
        from meshkit.cli import dlq_cmd
        from meshkit.cli.probe import nats_url

        return dlq_cmd.command(args, nats_url())
    if args.command == "run":
        from meshkit.cli import run_cmd

        return run_cmd.command(args.target, args.system)
    parser.error(f"unknown command {args.command!r}")
    return 2


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _env_port(parser: argparse.ArgumentParser) -> int:
    raw = os.environ.get("MESHKIT_NATS_PORT")
    if not raw:
        return 4223
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"MESHKIT_NATS_PORT: {exc}")
        raise
