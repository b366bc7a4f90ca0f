"""Where the CPU of ``make bench``'s ingest single-event figure goes: the same services and
load as ``bench_ingest`` (the ingest as ``python -m services.ingest`` against a local
Tansu broker, the FastAPI + pydantic baseline, ``bench.load`` with 32 connections, rounds
alternated), reporting per request the CPU time of each side's server process, of the
broker, and the write syscalls per request (above 2, the ingest's share of produce
requests: 0.1 is ten records per produce request).

    python -m bench.ingest_cpu [--rounds 4] [--seconds 6]

CPU per request is read from ``/proc/<pid>/stat`` (user + system) around each load run,
so it is that process's own time whatever else runs on the machine; the requests per
second are not (on a shared machine they move with the load average: compare CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.__main__ import load
from tools.localstack import TansuBroker, free_port, wait_for_port
from tools.simulate.stack import ROOT, ServiceProcess

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def write_calls(pid: int) -> int:
    counters = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(counters["syscw"])


def measured_round(server: int, broker: int, spec: dict[str, Any]) -> dict[str, float]:
    server_cpu, broker_cpu, writes = cpu_seconds(server), cpu_seconds(broker), write_calls(server)
    result = load(spec)
    requests = max(result["requests"], 1)
    return {
        "requests": result["requests"],
        "req_per_s": result["requests_per_second"],
        "server_us": (cpu_seconds(server) - server_cpu) / requests * 1e6,
        "broker_us": (cpu_seconds(broker) - broker_cpu) / requests * 1e6,
        "writes": (write_calls(server) - writes) / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_cpu")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtrwatch-ingest-cpu-"))
    totals: dict[str, list[dict[str, float]]] = {"baseline": [], "ingest": []}
    with TansuBroker(log_path=work / "tansu.log") as broker:
        assert broker._process is not None
        broker_pid = broker._process.pid
        env = {"VTR_KAFKA_BOOTSTRAP": broker.bootstrap, "VTR_LOG_LEVEL": "WARNING"}
        with ServiceProcess("ingest", env, work / "ingest.log") as ingest, open(work / "baseline.log", "ab") as log:
            port = free_port()
            baseline = subprocess.Popen(
                [sys.executable, "-m", "bench.baseline_app", "--port", str(port)], cwd=ROOT, stdout=log, stderr=log
            )
            try:
                wait_for_port("127.0.0.1", port)
                assert ingest.pid is not None
                # No warm-up: the window is the whole run, so the CPU read around it matches the requests.
                common = {"concurrency": 32, "seconds": args.seconds, "warmup": 0.0, "kind": "single-event"}
                for index in range(args.rounds):
                    offset = index * 1_000_000
                    sides = (
                        ("baseline", baseline.pid, f"http://127.0.0.1:{port}", 25_000, offset),
                        ("ingest", ingest.pid, ingest.url, 60_000, 50_000_000 + offset),
                    )
                    for side, pid, url, count, first in sides:
                        spec = {**common, "count": count, "url": url, "offset": first}
                        figures = measured_round(pid, broker_pid, spec)
                        totals[side].append(figures)
                        print(
                            f"round {index} {side:<8} {figures['req_per_s']:7.0f} req/s  server"
                            f" {figures['server_us']:4.0f} us/req  broker {figures['broker_us']:3.0f} us/req"
                            f"  writes {figures['writes']:.2f}/req",
                            flush=True,
                        )
            finally:
                baseline.terminate()
                baseline.wait()
    for side, rounds in totals.items():
        requests = sum(r["requests"] for r in rounds)
        server = sum(r["server_us"] * r["requests"] for r in rounds) / max(requests, 1)
        broker_us = sum(r["broker_us"] * r["requests"] for r in rounds) / max(requests, 1)
        print(f"{side:<8} server {server:.0f} us/req, broker {broker_us:.0f} us/req over {requests:,} requests")
    ratio = sum(r["req_per_s"] for r in totals["ingest"]) / max(sum(r["req_per_s"] for r in totals["baseline"]), 1)
    print(f"req/s ratio ingest/baseline (sum of rounds): {ratio:.2f}")


if __name__ == "__main__":
    main()
