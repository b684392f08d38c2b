"""The `alur` command: run a service, manage local infrastructure, seed stock, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys

from alur.infra.procs import StartError
from alur.settings import SERVICES, Settings


def _run(name: str, settings: Settings) -> None:
    if name in SERVICES:
        from alur.runtime.worker import run_service

        definition = importlib.import_module(f"services.{name}.bootstrap").DEFINITION
        run_service(definition, settings)
    elif name == "gateway-sim":
        import uvicorn

        from alur.runtime.logs import logging_config
        from alur.simulators.gateway import create_app

        uvicorn.run(create_app(settings.pg_dsn), host=settings.listen_host,
                    port=settings.gateway_port, log_level=settings.log_level, access_log=False,
                    log_config=logging_config(name, settings.log_level))
    elif name == "smtp-sink":
        from alur.runtime.logs import configure
        from alur.simulators.smtp import start_sink

        configure(name, settings.log_level)
        controller = start_sink(settings.mail_dir, settings.listen_host, settings.smtp_port)
        print(f"SMTP sink on {settings.listen_host}:{settings.smtp_port}, "
              f"mail in {settings.mail_dir}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        controller.stop()


def _infra(action: str, settings: Settings) -> None:
    from alur.infra import stack

    if action == "up":
        stack.infra_up(settings)
    elif action == "down":
        stack.infra_down(settings)
    else:
        for row in stack.status(settings):
            print("{:<14} {:<22} {:<18} {}".format(*row))


def _stack(action: str, settings: Settings) -> None:
    from alur.infra import stack

    if action == "up":
        for name, pid in stack.services_up(settings).items():
            print(f"{name:<14} pid {pid}")
    else:
        stack.services_down(settings)


def _stock(args: argparse.Namespace, settings: Settings) -> None:
    from services.inventory.seed import set_stock

    asyncio.run(set_stock(settings, [(args.location, args.sku, args.on_hand)]))
    print(f"{args.sku} at {args.location}: {args.on_hand} on hand")


def _schemas(action: str) -> None:
    from schemas import tools

    paths = tools.write_samples() if action == "samples" else tools.export()
    for path in paths:
        print(path)


def _deploy(action: str) -> None:
    from alur.infra import grafana, k8s, prometheus

    defaults = Settings.model_construct()  # the documented defaults, not this shell's ALUR_*
    for path in [*prometheus.write_configs(defaults), *grafana.write_dashboards(),
                 *k8s.write_manifests(defaults)]:
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alur", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one component in the foreground")
    run.add_argument("name", choices=[*SERVICES, "gateway-sim", "smtp-sink"])
    infra = sub.add_parser("infra", help="local Kafka, PostgreSQL, SMTP sink, gateway simulator")
    infra.add_argument("action", choices=["up", "down", "status"])
    stack = sub.add_parser("stack", help="the five services as background processes")
    stack.add_argument("action", choices=["up", "down"])
    stock = sub.add_parser("stock", help="set the units on hand of a SKU at a location")
    stock.add_argument("location")
    stock.add_argument("sku")
    stock.add_argument("on_hand", type=int)
    schemas = sub.add_parser("schemas", help="write golden samples or JSON Schema + AsyncAPI")
    schemas.add_argument("action", choices=["samples", "export"])
    deploy = sub.add_parser("deploy", help="regenerate deploy/ files derived from the settings")
    deploy.add_argument("action", choices=["render"])
    demo = sub.add_parser("demo", help="everything up, simulated shops, a summary, all down")
    demo.add_argument("--orders", type=int, default=300)
    demo.add_argument("--shops", type=int, default=5)
    demo.add_argument("--keep-running", action="store_true",
                      help="leave what the demo started running")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        if args.command == "run":
            _run(args.name, settings)
        elif args.command == "infra":
            _infra(args.action, settings)
        elif args.command == "stack":
            _stack(args.action, settings)
        elif args.command == "stock":
            _stock(args, settings)
        elif args.command == "schemas":
            _schemas(args.action)
        elif args.command == "deploy":
            _deploy(args.action)
        elif args.command == "demo":
            from alur.demo import run_demo

            return run_demo(settings, orders=args.orders, shops=args.shops,
                            keep_running=args.keep_running)
    except StartError as exc:
        print(f"alur: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
