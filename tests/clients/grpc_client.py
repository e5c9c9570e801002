"""Switchyard's gRPC service through Python's grpcio (tests/grpc/python.rs).

Usage: grpc_client.py PROTO_DIR OUT_DIR ADDR SUB_TOKEN PUB_TOKEN API_KEY

Generates the stubs from the committed proto into OUT_DIR with grpc_tools.protoc,
then: a subscriber stream and a publisher stream in channel `room-py` (the subscriber
receives the publisher's message), a bad token (UNAUTHENTICATED, 4001 in the
details), and unary Publish with an API key. Exits non-zero on any surprise.
"""

import queue
import subprocess
import sys

proto_dir, out_dir, addr, sub_token, pub_token, api_key = sys.argv[1:7]
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
     f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", "switchyard.proto"],
    check=True,
)
sys.path.insert(0, out_dir)

import grpc  # noqa: E402
import switchyard_pb2 as pb  # noqa: E402
import switchyard_pb2_grpc as rpc  # noqa: E402

TIMEOUT = 10


def connect(stub, token):
    """A Connect stream: (queue to send on, iterator of server frames)."""
    outbox = queue.Queue()
    frames = stub.Connect(iter(outbox.get, None),
                          metadata=[("authorization", f"Bearer {token}")],
                          timeout=TIMEOUT)
    return outbox, frames


def next_kind(frames, kind, skip=("presence",)):
    for frame in frames:
        got = frame.WhichOneof("kind")
        if got == kind:
            return getattr(frame, kind)
        if got not in skip:
            raise AssertionError(f"expected {kind}, got {frame}")
    raise AssertionError(f"stream ended waiting for {kind}")


with grpc.insecure_channel(addr) as channel:
    stub = rpc.SwitchyardStub(channel)

    sub_out, sub_frames = connect(stub, sub_token)
    assert next_kind(sub_frames, "welcome").peer_id == "py-sub"
    sub_out.put(pb.ClientFrame(subscribe=pb.Subscribe(channel="room-py", request_id="s")))
    assert next_kind(sub_frames, "ack").request_id == "s"

    pub_out, pub_frames = connect(stub, pub_token)
    assert next_kind(pub_frames, "welcome").peer_id == "py-pub"
    pub_out.put(pb.ClientFrame(publish=pb.Publish(
        channel="room-py", payload=b'{"py":true}', request_id="p")))
    assert next_kind(pub_frames, "ack").request_id == "p"

    message = next_kind(sub_frames, "message")
    assert message.channel == "room-py" and message.payload == b'{"py":true}', message
    assert getattr(message, "from") == "py-pub", message

    # A bad token: UNAUTHENTICATED, the close code in the details.
    _, bad = connect(stub, "not-a-token")
    try:
        next(bad)
        raise AssertionError("a bad token was served")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        assert e.details().startswith("4001"), e.details()

    # Unary Publish with an API key (the subscriber above sees it), then without one.
    reply = stub.Publish(pb.PublishRequest(channel="room-py", payload=b'"unary"'),
                         metadata=[("authorization", f"Bearer {api_key}")], timeout=TIMEOUT)
    assert reply.deliveries >= 1, reply
    message = next_kind(sub_frames, "message")
    assert getattr(message, "from") == "_server" and message.payload == b'"unary"', message
    try:
        stub.Publish(pb.PublishRequest(channel="room-py"), timeout=TIMEOUT)
        raise AssertionError("Publish without an API key was served")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e

    sub_out.put(None)
    pub_out.put(None)

print("ok")
