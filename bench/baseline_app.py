"""The ceiling for the ingest's single-event webhook: a plain FastAPI endpoint that validates
the same 17TRACK body with pydantic and answers 200, served like the services are (uvicorn,
uvloop, httptools, one process, no access log).

    python -m bench.baseline_app --port 9000
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Event(BaseModel):
    time_iso: str | None = None
    time_utc: str | None = None
    description: str | None = None
    location: str | None = None
    stage: str | None = None
    sub_status: str | None = None


class Provider(BaseModel):
    events: list[Event] = []


class Tracking(BaseModel):
    providers: list[Provider] = []


class TrackInfo(BaseModel):
    tracking: Tracking | None = None


class Data(BaseModel):
    number: str
    carrier: int | str | None = None
    track_info: TrackInfo | None = None


class Push(BaseModel):
    event: str
    data: Data


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/webhooks/17track")
    async def push(body: Push) -> dict[str, int]:
        tracking = body.data.track_info.tracking if body.data.track_info else None
        return {"accepted": sum(len(p.events) for p in tracking.providers) if tracking else 0}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
