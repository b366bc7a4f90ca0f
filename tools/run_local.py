"""`make run`: the local broker, migrations, and every service, until Ctrl-C.

Services run as they do in production (``python -m services.<name>``) on the embedded
defaults: Tansu on 127.0.0.1:9092 and SQLite files under ``.vtr/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings
from tools.localstack import TansuBroker, wait_for_port

#: (service, default port, keeps a database)
SERVICES: tuple[tuple[str, int, bool], ...] = (
    ("ingest", 8000, False),
    ("scorer", 8001, True),
    ("notifier", 8002, True),
)
ROOT = Path(__file__).resolve().parent.parent


def available_services() -> list[tuple[str, int, bool]]:
    return [entry for entry in SERVICES if (ROOT / "services" / entry[0] / "__main__.py").exists()]


def local_environment(**overrides: str) -> dict[str, str]:
    """The environment of every process ``make run`` starts: a person's local stack reads
    log lines, not JSON, unless asked otherwise (the services alone pick JSON in containers
    and pipes, and always with VTR_ENV=prod)."""
    env = {**os.environ, **overrides}
    if env.get("VTR_ENV", "dev") != "prod":
        env.setdefault("VTR_LOG_FORMAT", "text")
    return env


def migrate(services: list[tuple[str, int, bool]]) -> None:
    for name, _port, has_database in services:
        if has_database:
            subprocess.run(
                [sys.executable, "-m", f"services.{name}", "migrate"], check=True, cwd=ROOT, env=local_environment()
            )


def key_lines(bootstrap: str, kafka_port: int, scorer_port: int = 8001) -> list[str]:
    """What to put in ``Authorization: Bearer ...``: the development staff key, and the
    command that issues a seller's own key (docs/security.md)."""
    staff = ServiceSettings().api_keys[0].get_secret_value() if ServiceSettings().api_keys else ""
    shown = staff if staff.startswith(DEV_SECRET_PREFIX) else "(the first of VTR_API_KEYS)"
    prefix = "" if kafka_port == 9092 else f"VTR_KAFKA_BOOTSTRAP={bootstrap} "
    return [
        f"  {'API key':<9} {shown}   (development staff key: every seller, every scope)",
        "            e.g. curl -H 'Authorization: Bearer " + (shown if shown == staff else "<key>") + "' "
        f"http://127.0.0.1:{scorer_port}/v1/sellers/<seller-id>/vtr",
        "            a seller's own key (printed once):",
        f"            {prefix}.venv/bin/python -m shared.credentials issue --seller <seller-id> \\",
        "              --scope scores:read --scope shipments:write --scope notifications:read",
    ]


def main() -> None:  # noqa: C901 - start-up steps in order (broker, migrations, keys, services), one branch per option
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--migrate-only", action="store_true")
    parser.add_argument("--kafka-port", type=int, default=9092)
    args = parser.parse_args()
    services = available_services()
    (ROOT / ".vtr").mkdir(exist_ok=True)
    migrate(services)
    if args.migrate_only:
        return

    broker = TansuBroker(args.kafka_port, log_path=ROOT / ".vtr" / "tansu.log").start()
    env = local_environment(VTR_KAFKA_BOOTSTRAP=broker.bootstrap)
    processes: list[subprocess.Popen[bytes]] = []
    # VTR_<SERVICE>_PORT moves a service; waiting and printing use the port it really gets.
    ports = {name: int(os.environ.get(f"VTR_{name.upper()}_PORT", str(port))) for name, port, _ in services}
    # The services find each other on those ports (the notifier asks the scorer, the console the notifier).
    for name, variable in (("scorer", "VTR_SCORER_URL"), ("notifier", "VTR_NOTIFIER_URL")):
        if name in ports:
            env.setdefault(variable, f"http://127.0.0.1:{ports[name]}")
    try:
        for name, _port, _ in services:
            service_env = {**env, "VTR_HTTP_PORT": str(ports[name])}
            processes.append(subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=service_env))
        for name, _port, _ in services:
            wait_for_port("127.0.0.1", ports[name], timeout_seconds=60)
        print(f"\nvtrwatch is running (broker {broker.bootstrap}, state in .vtr/):")
        for name, _port, _ in services:
            print(
                f"  {name:<9} http://127.0.0.1:{ports[name]}   docs /docs   health /healthz /readyz   metrics /metrics"
            )
        console = f"http://127.0.0.1:{ports.get('scorer', 8001)}/console/<seller-id>"
        print(f"  {'console':<9} {console}   (sellers follow the signed link in their messages;")
        print("            a signed link for any seller: .venv/bin/python -m tools.console_link <seller-id>)")
        for line in key_lines(broker.bootstrap, args.kafka_port, ports.get("scorer", 8001)):
            print(line)
        print("Ctrl-C stops everything.\n", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("a service exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        # make and the terminal may both deliver the signal; a second one must not cut the
        # clean-up short and leave the broker running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()


if __name__ == "__main__":
    main()
