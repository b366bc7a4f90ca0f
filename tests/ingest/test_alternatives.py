"""Authentication alternatives chosen by settings, end to end against the real broker:
YunExpress's newer token + HMAC signing and its encrypted envelope, China Post's SM4 key
as EMS issues it (base64), and China Post failure replies echoing serialNo."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import orjson

from services.ingest import signatures
from services.ingest.settings import IngestSettings
from tests.ingest.samples import china_post_ems, unique_number, yunexpress_parcel
from tests.ingest.test_webhooks import events_of, post

Factory = Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]]
PATH = "/v1/webhooks/yunexpress"
AES_KEY = "k3y-0f-16-bytes!"


def _hmac_headers(settings: IngestSettings, body: bytes, token: str, date_ms: int | None = None) -> dict[str, str]:
    date = str(date_ms if date_ms is not None else int(time.time() * 1000))
    secret = settings.yunexpress_secret.get_secret_value()
    return {
        "content-type": "application/json",
        "token": token,
        "date": date,
        "sign": signatures.yunexpress_hmac_signature(body, date, "POST", PATH, secret),
    }


async def test_yunexpress_token_hmac_signing(
    ingest_factory: Factory, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(yunexpress_signing="token-hmac", yunexpress_token="app-token-1")
    number = "YT" + unique_number("")[:12] + "0000"
    body = orjson.dumps({"data_code": "tisPushData", "data": yunexpress_parcel(number)})
    async with ingest_factory(settings) as client:
        accepted = await client.post(PATH, content=body, headers=_hmac_headers(settings, body, "app-token-1"))
        wrong_token = await client.post(PATH, content=body, headers=_hmac_headers(settings, body, "other"))
        stale = await client.post(
            PATH,
            content=body,
            headers=_hmac_headers(settings, body, "app-token-1", int(time.time() * 1000) - 3_600_000),
        )
        tampered = await client.post(PATH, content=body + b" ", headers=_hmac_headers(settings, body, "app-token-1"))
        # The older scheme's headers are not accepted once the newer one is chosen.
        old_timestamp = str(int(time.time() * 1000))
        old = await client.post(
            PATH,
            content=body,
            headers={
                "X-Openapi-Request-Timestamp": old_timestamp,
                "X-Openapi-Signature": signatures.yunexpress_signature(
                    old_timestamp, body, settings.yunexpress_secret.get_secret_value()
                ),
            },
        )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 3
    assert [response.status_code for response in (wrong_token, stale, tampered, old)] == [401, 401, 401, 401]
    assert len(await events_of(settings, number, 3)) == 3


async def test_yunexpress_encrypted_envelope(
    ingest_factory: Factory, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(yunexpress_encrypted=True, yunexpress_aes_key=AES_KEY)
    number = "YT" + unique_number("")[:12] + "0000"
    clear = orjson.dumps({"data_code": "tisPushData", "data": yunexpress_parcel(number)})
    body = orjson.dumps({"encrypt": signatures.yunexpress_encrypt(clear, AES_KEY.encode())})
    wrong_key = orjson.dumps({"encrypt": signatures.yunexpress_encrypt(clear, b"another-16-bytes")})

    def signed(payload: bytes) -> dict[str, str]:
        timestamp = str(int(time.time() * 1000))
        secret = settings.yunexpress_secret.get_secret_value()
        return {
            "content-type": "application/json",
            "X-Openapi-Request-Timestamp": timestamp,
            "X-Openapi-Signature": signatures.yunexpress_signature(timestamp, payload, secret),
        }

    async with ingest_factory(settings) as client:
        accepted = await client.post(PATH, content=body, headers=signed(body))
        undecryptable = await client.post(PATH, content=wrong_key, headers=signed(wrong_key))
        in_clear = await client.post(PATH, content=clear, headers=signed(clear))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 3
    assert undecryptable.status_code == 401
    assert in_clear.status_code == 401
    assert {event.tracking_number for event in await events_of(settings, number, 3)} == {number}


async def test_china_post_key_as_ems_issues_it_and_serial_no_echo(
    ingest_factory: Factory, make_settings: Callable[..., IngestSettings]
) -> None:
    # The same 16 bytes as the dev default, in the 24-character base64 form EMS hands out.
    settings = make_settings(chinapost_sm4_key="ASNFZ4mrze/+3LqYdlQyEA==")
    number = unique_number("LK")
    push = china_post_ems(settings, number)
    forged = china_post_ems(settings, unique_number("LK"), key_hex="ffeeddccbbaa99887766554433221100")
    async with ingest_factory(settings) as client:
        accepted = await post(client, push)
        refused = await post(client, forged)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["code"] == "00000"
    assert refused.status_code == 401
    reply = refused.json()
    assert reply["code"] == "S00001"
    assert reply["serialNo"].startswith("SN-LK")  # echoed from the refused request
    assert reply["senderNo"] == "1100012345678"
    assert len(await events_of(settings, number, 4)) == 4


async def test_yunexpress_camel_case_push_through_the_endpoint(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    # The older shape used to get a 400 and a dead letter; it is read like the current one.
    from tests.ingest.samples import yunexpress_headers
    from tests.ingest.test_conformance import _camel_case_parcel

    number = "YT" + unique_number("")[:12] + "0000"
    body = orjson.dumps({"data": _camel_case_parcel(number)})
    response = await ingest.post(PATH, content=body, headers=yunexpress_headers(ingest_settings, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "code": 0, "message": "success", "accepted": 2}
    events = await events_of(ingest_settings, number, 2)
    assert {(event.carrier_code, event.last_mile_carrier) for event in events} == {
        ("PICKED_UP", "usps"),
        ("DELIVERED", "usps"),
    }
