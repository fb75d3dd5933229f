#!/usr/bin/python3
"""go-cart-actor's messages.ControlPlane, called from Python's C-core gRPC client (Debian's python3-grpcio).

The stubs are generated at run time with `python3 -m grpc_tools.protoc` from our copy of the seed's
proto (proto/cart_actor/control_plane.proto), so the calls carry exactly what go-cart-actor's own
generated clients put on the wire: the method paths and the documented fields (host, unix_time,
known_hosts, hosts, cart_ids, cart_id, new_host, accepted, message).

Input (stdin): a JSON list of calls, run in order, each
  {"target": "127.0.0.1:8080", "method": "Ping" | "Negotiate" | "GetCartIds" | "ConfirmOwner" | "Closing",
   "request": {...fields by their proto names...},
   "tls": null | {"ca": path, "cert": path, "key": path}   (mTLS; "cert"/"key" may be absent),
   "timeout": seconds (default 10)}
Output (stdout): one JSON object {"results": [{"code": "OK", "response": {...}} | {"code": ..., "details": ...}]}
with every field of each response (defaults included). Exit status 0 when every call was made (whatever
its status: the caller judges), 2 when the stubs cannot be generated or the input is malformed.
"""

import json
import os
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import json_format

PROTO_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "cart_actor")
)


def fail(message):
    sys.stderr.write("cart_actor_calls: " + message + "\n")
    sys.exit(2)


def generate_stubs(out_dir):
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I" + PROTO_DIR,
        "-I" + well_known,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        os.path.join(PROTO_DIR, "control_plane.proto"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        fail("protoc failed (%d): %s" % (result.returncode, (result.stderr or result.stdout).strip()))
    sys.path.insert(0, out_dir)
    import control_plane_pb2
    import control_plane_pb2_grpc

    return control_plane_pb2, control_plane_pb2_grpc


def to_dict(message):
    try:
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    except TypeError:  # protobuf >= 5 renamed the option
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel_for(call):
    tls = call.get("tls")
    if not tls:
        return grpc.insecure_channel(call["target"])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(tls["ca"]),
        private_key=read(tls["key"]) if tls.get("key") else None,
        certificate_chain=read(tls["cert"]) if tls.get("cert") else None,
    )
    return grpc.secure_channel(call["target"], credentials)


def main():
    try:
        calls = json.load(sys.stdin)
    except ValueError as error:
        fail("the input is not JSON: %s" % error)
    with tempfile.TemporaryDirectory(prefix="cart-actor-stubs-") as out_dir:
        pb2, pb2_grpc = generate_stubs(out_dir)
        requests = {
            "Ping": pb2.Empty,
            "Negotiate": pb2.NegotiateRequest,
            "GetCartIds": pb2.Empty,
            "ConfirmOwner": pb2.OwnerChangeRequest,
            "Closing": pb2.ClosingNotice,
        }
        results = []
        for call in calls:
            method = call.get("method")
            if method not in requests:
                fail("unknown method %r" % (method,))
            channel = channel_for(call)
            try:
                stub = pb2_grpc.ControlPlaneStub(channel)
                request = json_format.ParseDict(call.get("request") or {}, requests[method]())
                response = getattr(stub, method)(request, timeout=call.get("timeout", 10))
                results.append({"code": "OK", "response": to_dict(response)})
            except grpc.RpcError as error:
                results.append({"code": error.code().name, "details": error.details()})
            finally:
                channel.close()
        json.dump({"results": results}, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
