#!/usr/bin/python3
"""The Distributed LLM API reference's examples, from Python's C-core gRPC client, schema by reflection.

For Debian's python3 with python3-grpcio and python3-protobuf only (no generated stubs): the message
classes come from the descriptors the server sends by reflection (test/interop/reflection_client.py
does the reflection part). The channel is made the way the document's Python client makes it, with
gzip as the default compression:

    channel = grpc.insecure_channel(address,
        options=[('grpc.default_compression_algorithm', grpc.Compression.Gzip)])

then it runs the document's examples and a few more calls, and prints one JSON summary on stdout
(diagnostics on stderr). The document's Python example prints "Node: <node_id>, Status: <status>";
that line is printed here too, from `response.node.node_id` and `response.node.status`.

  dllm_examples.py 127.0.0.1:8080 [--node-id agent-1] [--timeout 20]

Exit status: 0 when every call answered as expected, 1 otherwise, 2 on usage.
"""

import argparse
import json
import os
import sys

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from reflection_client import Failure, ReflectionStream, SchemaPool, message_class  # noqa: E402

SERVICES = [
    "distributed_llm.NodeService",
    "distributed_llm.DiscoveryService",
    "distributed_llm.TUIService",
]


class Api:
    """Calls methods of the pool by name, with messages built from JSON (proto field names)."""

    def __init__(self, channel, schema, timeout):
        self.channel = channel
        self.schema = schema
        self.timeout = timeout

    def _method(self, path):
        service_name, method_name = path.rsplit("/", 1)
        service = self.schema.pool.FindServiceByName(service_name)
        method = service.methods_by_name[method_name]
        return method, message_class(method.input_type), message_class(method.output_type)

    def request(self, path, body):
        _, request_class, _ = self._method(path)
        return json_format.ParseDict(body, request_class())

    def unary(self, path, body):
        method, request_class, response_class = self._method(path)
        stub = self.channel.unary_unary(
            "/%s/%s" % (method.containing_service.full_name, method.name),
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub(self.request(path, body), timeout=self.timeout)

    def stream(self, path, body, count):
        """The first `count` messages of a server stream, then the call is cancelled."""
        method, request_class, response_class = self._method(path)
        stub = self.channel.unary_stream(
            "/%s/%s" % (method.containing_service.full_name, method.name),
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        call = stub(self.request(path, body), timeout=self.timeout)
        got = []
        try:
            for message in call:
                got.append(message)
                if len(got) >= count:
                    break
        finally:
            call.cancel()
        return got


def as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def code_of(call):
    try:
        call()
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}
    return {"code": "OK"}


def run(args, summary):
    failures = summary["failures"]
    # As the document's Python client does it: gzip for every call on the channel.
    channel = grpc.insecure_channel(
        args.address, options=[("grpc.default_compression_algorithm", grpc.Compression.Gzip)]
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        raise Failure("cannot connect to %s within %ss" % (args.address, args.timeout)) from None
    stream = ReflectionStream(channel, "v1", args.address, args.timeout)
    schema = SchemaPool()
    try:
        for name in SERVICES:
            schema.add(stream.files(name, file_containing_symbol=name), name)
    finally:
        stream.close()
    api = Api(channel, schema, args.timeout)

    # The document's Python example, field for field.
    response = api.unary("distributed_llm.NodeService/GetNodeInfo", {"node_id": args.node_id})
    print("Node: %s, Status: %s" % (response.node.node_id, response.node.status))
    summary["GetNodeInfo"] = as_dict(response)
    # The answer's node_id is the node's lasting id (it survives renames); asking by it finds the same node.
    again = api.unary("distributed_llm.NodeService/GetNodeInfo", {"node_id": response.node.node_id})
    if again.node.node_id != response.node.node_id:
        failures.append("GetNodeInfo by id %r answered node %r" % (response.node.node_id, again.node.node_id))

    # The document's grpcurl example for discovery.
    discovered = api.unary(
        "distributed_llm.DiscoveryService/DiscoverNodes", {"requester_id": "tui-client-1", "known_nodes": []}
    )
    summary["DiscoverNodes"] = as_dict(discovered)
    if not discovered.success:
        failures.append("DiscoverNodes: success is false")

    summary["GetPeers"] = as_dict(
        api.unary("distributed_llm.NodeService/GetPeers", {"requester_id": args.node_id, "include_self": True})
    )
    summary["GetMetrics"] = as_dict(
        api.unary(
            "distributed_llm.NodeService/GetMetrics",
            {"node_id": args.node_id, "metric_names": ["max_layers", "used_layers", "bogus"]},
        )
    )
    summary["GetClusterInfo"] = as_dict(api.unary("distributed_llm.DiscoveryService/GetClusterInfo", {}))
    summary["GetNodeList"] = as_dict(
        api.unary("distributed_llm.TUIService/GetNodeList", {"requester_id": "tui-client-1", "include_metrics": True})
    )
    summary["GetModelList"] = as_dict(api.unary("distributed_llm.TUIService/GetModelList", {}))
    summary["ExecuteCommand"] = {
        "help": as_dict(api.unary("distributed_llm.TUIService/ExecuteCommand", {"command": "help"})),
        "unknown": as_dict(
            api.unary("distributed_llm.TUIService/ExecuteCommand", {"command": "reboot", "args": ["now"]})
        ),
    }
    summary["StreamUpdates"] = [
        as_dict(m)
        for m in api.stream(
            "distributed_llm.TUIService/StreamUpdates",
            {"requester_id": "tui-client-1", "interval_seconds": 1, "update_types": ["nodes", "models", "metrics"]},
            3,
        )
    ]
    summary["StreamMetrics"] = [
        as_dict(m)
        for m in api.stream(
            "distributed_llm.NodeService/StreamMetrics",
            {"node_id": args.node_id, "interval_seconds": 1, "metric_names": ["used_layers"]},
            2,
        )
    ]
    summary["codes"] = {
        "GetNodeInfo_empty": code_of(lambda: api.unary("distributed_llm.NodeService/GetNodeInfo", {"node_id": ""})),
        "GetNodeInfo_unknown": code_of(
            lambda: api.unary("distributed_llm.NodeService/GetNodeInfo", {"node_id": "no-such-node"})
        ),
        "StreamMetrics_interval": code_of(
            lambda: api.stream(
                "distributed_llm.NodeService/StreamMetrics", {"node_id": args.node_id, "interval_seconds": -5}, 1
            )
        ),
    }
    channel.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="host:port of the plaintext gRPC listener (the document's localhost:8080)")
    parser.add_argument("--node-id", default="agent-1")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    summary = {"address": args.address, "ok": False, "failures": []}
    try:
        run(args, summary)
    except Failure as error:
        summary["failures"].append(str(error))
    except grpc.RpcError as error:
        summary["failures"].append("%s: %s" % (error.code().name, error.details()))
    except Exception as error:  # anything unexpected is a failure too, with its type
        summary["failures"].append("%s: %s" % (type(error).__name__, error))
    summary["ok"] = not summary["failures"]
    print(json.dumps(summary, indent=2, sort_keys=True))
    for failure in summary["failures"]:
        print("FAIL: " + failure, file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
