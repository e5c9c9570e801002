#!/usr/bin/env python3
"""A second, independent client of the Metered-style JSON wire: Python, `websockets`
and `PyJWT`, written from the public quickstart (HS256 JWT with `kid` in the header,
`/v1?token=...`, welcome -> subscribe -> ack -> publish).

    python metered_quickstart.py --url ws://127.0.0.1:PORT --kid KID --secret SECRET

Exit 0 when every check passed; 1 with the failed check; 2 on the global timeout.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from urllib.parse import quote

import jwt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

STEP_S = 4.0
GLOBAL_S = 15.0


class Failed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failed(message)
    print(f"ok - {message}", flush=True)


def mint(args, sub, channels, metadata=None, exp_in=3600):
    claims = {
        "sub": sub,
        "channels": channels,
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": int(time.time()) + exp_in,
    }
    if metadata is not None:
        claims["metadata"] = metadata
    return jwt.encode(claims, args.secret, algorithm="HS256", headers={"kid": args.kid})


class Peer:
    """One connection; frames are read on demand, each wait bounded."""

    def __init__(self, label, ws):
        self.label = label
        self.ws = ws
        self.seen = []

    @classmethod
    async def open(cls, label, args, token):
        ws = await asyncio.wait_for(connect(f"{args.url}/v1?token={quote(token)}"), STEP_S)
        return cls(label, ws)

    async def send(self, msg):
        await self.ws.send(json.dumps(msg))

    async def next_matching(self, what, pred):
        """Reads frames until one matches `pred`; the others are kept in `seen`."""
        deadline = time.monotonic() + STEP_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"{self.label}: no {what} within {STEP_S} s; frames so far: {self.seen}")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except ConnectionClosed as e:
                raise Failed(f"{self.label}: connection closed ({e}) while waiting for {what}") from e
            msg = json.loads(raw)
            self.seen.append(msg)
            if pred(msg):
                return msg


async def run(args):
    tag = uuid.uuid4().hex[:8]
    channel = f"room-{tag}"
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    print(f"# Python JSON client against {args.url}/v1, channel {channel}", flush=True)

    a = await Peer.open("alice", args, mint(args, alice, ["room-*"], {"name": "Alice"}))
    b = None
    try:
        welcome = await a.next_matching("welcome", lambda m: True)
        check(welcome.get("type") == "welcome" and welcome.get("peerId") == alice,
              f"the first frame is welcome with peerId {alice}")

        await a.send({"type": "subscribe", "channel": channel, "requestId": "sub-1"})
        ack = await a.next_matching("ack sub-1", lambda m: m.get("requestId") == "sub-1")
        check(ack["type"] == "ack", f"subscribe is acked ({ack})")
        snap = await a.next_matching("presence snapshot", lambda m: m.get("type") == "presence")
        check(snap.get("snapshot") is True and snap["joined"] == [] and snap["channel"] == channel,
              "then an empty presence snapshot")

        b = await Peer.open("bob", args, mint(args, bob, [channel], {"name": "Bob"}))
        await b.next_matching("welcome", lambda m: m.get("type") == "welcome")
        await b.send({"type": "subscribe", "channel": channel, "requestId": "s"})
        await b.next_matching("ack", lambda m: m.get("type") == "ack" and m.get("requestId") == "s")
        bsnap = await b.next_matching("presence snapshot", lambda m: m.get("type") == "presence")
        check([j["peerId"] for j in bsnap["joined"]] == [alice]
              and bsnap["joined"][0]["metadata"] == {"name": "Alice"},
              "bob's snapshot lists alice with her metadata")
        delta = await a.next_matching(
            "presence delta", lambda m: m.get("type") == "presence" and not m.get("snapshot"))
        check([j["peerId"] for j in delta["joined"]] == [bob], "alice gets a presence delta: bob joined")

        data = {"text": "héllo | wörld", "n": 3}
        await a.send({"type": "publish", "channel": channel, "data": data, "requestId": "pub-1"})
        await a.next_matching("ack pub-1", lambda m: m.get("requestId") == "pub-1")
        msg = await b.next_matching("message", lambda m: m.get("type") == "message")
        check(msg["from"] == alice and msg["channel"] == channel and msg["data"] == data,
              "bob gets alice's publish as message with from, channel and the data intact")
        check(not any(m.get("type") == "message" for m in a.seen),
              "alice did not get her own message (it would have come before her ack)")

        await b.send({"type": "send", "to": alice, "data": [1, 2, 3]})
        direct = await a.next_matching("direct", lambda m: m.get("type") == "direct")
        check(direct["from"] == bob and direct["data"] == [1, 2, 3], "bob's send reaches alice as direct")

        await b.ws.close()
        left = await a.next_matching(
            "presence left", lambda m: m.get("type") == "presence" and m.get("left"))
        check([l["peerId"] for l in left["left"]] == [bob], "bob closed: alice gets presence left")

        expired = await Peer.open("expired", args, mint(args, "late", [channel], exp_in=-3600))
        try:
            await asyncio.wait_for(expired.ws.recv(), STEP_S)
            raise Failed("an expired token got a frame instead of a close")
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            check(code == 4002, f"an expired token is closed 4002 before any frame (got {code})")

        print("# Python JSON client: all checks passed", flush=True)
    finally:
        await a.ws.close()
        if b is not None:
            await b.ws.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--kid", required=True)
    p.add_argument("--secret", required=True)
    args = p.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), GLOBAL_S))
    except asyncio.TimeoutError:
        print(f"FAIL: global timeout of {GLOBAL_S} s", file=sys.stderr)
        sys.exit(2)
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
