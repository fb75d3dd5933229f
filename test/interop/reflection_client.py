#!/usr/bin/python3
"""A gRPC client that knows nothing of corral's APIs but what server reflection tells it.

For Debian's python3 with python3-grpcio and python3-protobuf only: the grpc reflection stubs are not
packaged there, so the reflection messages are declared here (a FileDescriptorProto built by hand and
loaded into a private DescriptorPool) and the exchange runs over a plain stream_stream call.

It lists the services, fetches the file of each expected service, adds every file received to an
empty DescriptorPool (which rejects a malformed descriptor or a missing import: that is the test),
builds a message class for every message type, then calls distributed_llm.NodeService/GetNodeInfo
with gzip using classes made from the pool, and reports the status codes. One JSON summary goes to
stdout; diagnostics go to stderr. Exit status: 0 when everything held, 1 on any failure, 2 on usage.

  reflection_client.py 127.0.0.1:8080 corral.v1.NodesService distributed_llm.NodeService \\
      --expect-code-empty INVALID_ARGUMENT --expect-code-unknown NOT_FOUND [--node-id ID]
"""

import argparse
import json
import queue
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

F = descriptor_pb2.FieldDescriptorProto
NODE_SERVICE = "distributed_llm.NodeService"
NODE_METHOD = "GetNodeInfo"


class Failure(Exception):
    """Something the server got wrong; the message says what."""


def message_class(descriptor):
    """The message class of a descriptor, with the API of whichever protobuf release is installed."""
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


# ------------------------------------------------------------------ the reflection protocol's messages


def reflection_file(package):
    """grpc/reflection/<version>/reflection.proto's messages (v1 and v1alpha differ only by package)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="interop/%s/reflection.proto" % package, package=package, syntax="proto3"
    )

    def message(name, *fields, oneof=None):
        m = file.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for number, field_name, kind, extra in fields:
            f = m.field.add(name=field_name, number=number, label=F.LABEL_OPTIONAL)
            if kind == "repeated bytes":
                f.type, f.label = F.TYPE_BYTES, F.LABEL_REPEATED
            elif kind == "repeated int32":
                f.type, f.label = F.TYPE_INT32, F.LABEL_REPEATED
            elif kind in ("string", "int32"):
                f.type = F.TYPE_STRING if kind == "string" else F.TYPE_INT32
            else:  # a message of this file, "repeated Name" or "Name"
                if kind.startswith("repeated "):
                    f.label, kind = F.LABEL_REPEATED, kind[len("repeated ") :]
                f.type, f.type_name = F.TYPE_MESSAGE, ".%s.%s" % (package, kind)
            if extra == "oneof":
                f.oneof_index = 0

    message(
        "ServerReflectionRequest",
        (1, "host", "string", None),
        (3, "file_by_filename", "string", "oneof"),
        (4, "file_containing_symbol", "string", "oneof"),
        (5, "file_containing_extension", "ExtensionRequest", "oneof"),
        (6, "all_extension_numbers_of_type", "string", "oneof"),
        (7, "list_services", "string", "oneof"),
        oneof="message_request",
    )
    message("ExtensionRequest", (1, "containing_type", "string", None), (2, "extension_number", "int32", None))
    message(
        "ServerReflectionResponse",
        (1, "valid_host", "string", None),
        (2, "original_request", "ServerReflectionRequest", None),
        (4, "file_descriptor_response", "FileDescriptorResponse", "oneof"),
        (5, "all_extension_numbers_response", "ExtensionNumberResponse", "oneof"),
        (6, "list_services_response", "ListServiceResponse", "oneof"),
        (7, "error_response", "ErrorResponse", "oneof"),
        oneof="message_response",
    )
    message("FileDescriptorResponse", (1, "file_descriptor_proto", "repeated bytes", None))
    message(
        "ExtensionNumberResponse",
        (1, "base_type_name", "string", None),
        (2, "extension_number", "repeated int32", None),
    )
    message("ListServiceResponse", (1, "service", "repeated ServiceResponse", None))
    message("ServiceResponse", (1, "name", "string", None))
    message("ErrorResponse", (1, "error_code", "int32", None), (2, "error_message", "string", None))
    return file


class ReflectionStream:
    """One ServerReflectionInfo call, driven request by response; every read is bounded by its deadline."""

    def __init__(self, channel, version, host, timeout):
        package = "grpc.reflection.%s" % version
        pool = descriptor_pool.DescriptorPool()
        pool.Add(reflection_file(package))
        self._request = message_class(pool.FindMessageTypeByName(package + ".ServerReflectionRequest"))
        response = message_class(pool.FindMessageTypeByName(package + ".ServerReflectionResponse"))
        self._host = host
        self._requests = queue.Queue()
        call = channel.stream_stream(
            "/%s.ServerReflection/ServerReflectionInfo" % package,
            request_serializer=self._request.SerializeToString,
            response_deserializer=response.FromString,
        )
        # None ends the request stream (iter's sentinel).
        self._responses = call(iter(self._requests.get, None), timeout=timeout)

    def ask(self, **request):
        self._requests.put(self._request(host=self._host, **request))
        try:
            return next(self._responses)
        except StopIteration:
            raise Failure("the server ended the reflection stream after %r" % (request,)) from None
        except grpc.RpcError as error:
            raise Failure(
                "reflection call failed: %s %s" % (error.code().name, error.details())
            ) from None

    def files(self, what, **request):
        response = self.ask(**request)
        kind = response.WhichOneof("message_response")
        if kind == "error_response":
            raise Failure(
                "%s: error_response %d %s"
                % (what, response.error_response.error_code, response.error_response.error_message)
            )
        if kind != "file_descriptor_response":
            raise Failure("%s: expected file_descriptor_response, got %s" % (what, kind))
        return list(response.file_descriptor_response.file_descriptor_proto)

    def close(self):
        self._requests.put(None)
        self._responses.cancel()


# ------------------------------------------------------------------ building the pool from what was sent


class SchemaPool:
    """An empty DescriptorPool filled only with files received by reflection."""

    def __init__(self):
        self.pool = descriptor_pool.DescriptorPool()
        self.loaded = {}  # file name -> the serialized FileDescriptorProto added

    def add(self, serialized_files, what):
        pending = {}
        for raw in serialized_files:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if not proto.name:
                raise Failure("%s: a file descriptor without a name" % what)
            if proto.name in self.loaded:
                if self.loaded[proto.name] != raw:
                    raise Failure("%s: %s was sent twice with different contents" % (what, proto.name))
                continue
            if proto.name in pending and pending[proto.name][1] != raw:
                raise Failure("%s: %s appears twice in one answer, differently" % (what, proto.name))
            pending[proto.name] = (proto, raw)
        # Dependencies may come in any order: add a file once all its imports are in the pool. Each
        # round adds at least one file or stops.
        while pending:
            ready = [n for n, (p, _) in pending.items() if all(d in self.loaded for d in p.dependency)]
            if not ready:
                missing = sorted(
                    {d for p, _ in pending.values() for d in p.dependency if d not in self.loaded and d not in pending}
                )
                raise Failure(
                    "%s: cannot load %s: imports never sent: %s"
                    % (what, ", ".join(sorted(pending)), ", ".join(missing) or "(an import cycle)")
                )
            for name in ready:
                proto, raw = pending.pop(name)
                try:
                    self.pool.AddSerializedFile(raw)
                except Exception as error:  # the pool's own validation: malformed or inconsistent
                    raise Failure("%s: the descriptor pool rejected %s: %s" % (what, name, error)) from None
                self.loaded[name] = raw

    def message_classes(self):
        """Builds a class for every message of every file, nested and map entries included."""
        count = 0
        for name in self.loaded:
            stack = list(self.pool.FindFileByName(name).message_types_by_name.values())
            while stack:
                descriptor = stack.pop()
                message_class(descriptor)
                count += 1
                stack.extend(descriptor.nested_types)
        return count


# ------------------------------------------------------------------ calling a method learned by reflection


def call_get_node_info(channel, schema, node_id, timeout):
    try:
        service = schema.pool.FindServiceByName(NODE_SERVICE)
    except KeyError:
        raise Failure("%s was not learned by reflection" % NODE_SERVICE) from None
    method = service.methods_by_name.get(NODE_METHOD)
    if method is None:
        raise Failure("%s has no method %s" % (NODE_SERVICE, NODE_METHOD))
    request_class = message_class(method.input_type)
    response_class = message_class(method.output_type)
    request = json_format.ParseDict({"node_id": node_id}, request_class())
    stub = channel.unary_unary(
        "/%s/%s" % (service.full_name, method.name),
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        response = stub(request, timeout=timeout, compression=grpc.Compression.Gzip)
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}
    return {
        "code": "OK",
        "response": json_format.MessageToDict(response, preserving_proto_field_name=True),
    }


# ------------------------------------------------------------------ main


def run(args, summary):
    failures = summary["failures"]
    channel = grpc.insecure_channel(args.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        raise Failure("cannot connect to %s within %ss" % (args.address, args.timeout)) from None
    stream = ReflectionStream(channel, args.reflection, args.address, args.timeout)
    schema = SchemaPool()
    try:
        response = stream.ask(list_services="")
        if response.WhichOneof("message_response") != "list_services_response":
            raise Failure("list_services: got %s" % response.WhichOneof("message_response"))
        listed = [s.name for s in response.list_services_response.service]
        summary["services"] = listed
        missing = [s for s in args.services if s not in listed]
        summary["missing_services"] = missing
        if missing:
            failures.append("services not listed: %s" % ", ".join(missing))

        methods = {}
        # With no services named, every listed one is learned (what `grpcurl describe` would see).
        for name in args.services or listed:
            files = stream.files(name, file_containing_symbol=name)
            schema.add(files, name)
            first = descriptor_pb2.FileDescriptorProto.FromString(files[0]).name
            try:
                service = schema.pool.FindServiceByName(name)
            except KeyError:
                raise Failure("%s is not in the files sent for it (%s)" % (name, first)) from None
            if service.file.name != first:
                failures.append("%s is declared in %s, but %s was sent first" % (name, service.file.name, first))
            methods[name] = [m.name for m in service.methods]
        summary["methods"] = methods
        summary["files"] = sorted(schema.loaded)
        summary["message_types"] = schema.message_classes()
        summary["pool_built"] = True

        # An unknown symbol is an error_response NOT_FOUND, and the stream stays usable.
        response = stream.ask(file_containing_symbol="no.such.Symbol")
        if response.WhichOneof("message_response") != "error_response":
            failures.append("unknown symbol: got %s" % response.WhichOneof("message_response"))
        else:
            code = response.error_response.error_code
            summary["unknown_symbol"] = {
                "code": grpc.StatusCode.NOT_FOUND.name if code == 5 else code,
                "message": response.error_response.error_message,
            }
            if code != 5:
                failures.append("unknown symbol: error_code %d, not 5 (NOT_FOUND)" % code)
        if stream.ask(list_services="").WhichOneof("message_response") != "list_services_response":
            failures.append("the stream did not answer after an error_response")
    finally:
        stream.close()

    if args.skip_call:
        return
    calls = {}
    summary["GetNodeInfo"] = calls
    cases = [("empty", "", args.expect_code_empty), ("unknown", "no-such-node", args.expect_code_unknown)]
    if args.node_id is not None:
        cases.append(("existing", args.node_id, "OK"))
    for case, node_id, expected in cases:
        result = call_get_node_info(channel, schema, node_id, args.timeout)
        calls[case] = result
        if expected is not None and result["code"] != expected:
            failures.append(
                "GetNodeInfo(%r): %s (%s), expected %s"
                % (node_id, result["code"], result.get("details", ""), expected)
            )
    channel.close()


def main():
    codes = [c.name for c in grpc.StatusCode]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="host:port of a plaintext gRPC server")
    parser.add_argument(
        "services", nargs="*", help="fully qualified services that must be listed (default: learn every listed one)"
    )
    parser.add_argument("--reflection", choices=["v1", "v1alpha"], default="v1")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds, per call (default 20)")
    code_help = " (a grpc.StatusCode name: OK, NOT_FOUND, INVALID_ARGUMENT, ...)"
    parser.add_argument(
        "--expect-code-empty",
        choices=codes,
        metavar="CODE",
        help='status GetNodeInfo must answer for {"node_id": ""}' + code_help,
    )
    parser.add_argument(
        "--expect-code-unknown",
        choices=codes,
        metavar="CODE",
        help='status GetNodeInfo must answer for {"node_id": "no-such-node"}' + code_help,
    )
    parser.add_argument("--node-id", help="an existing node: GetNodeInfo must answer OK for it")
    parser.add_argument("--skip-call", action="store_true", help="only reflect, call nothing")
    args = parser.parse_args()

    summary = {
        "address": args.address,
        "reflection": args.reflection,
        "ok": False,
        "pool_built": False,
        "failures": [],
    }
    try:
        run(args, summary)
    except Failure as error:
        summary["failures"].append(str(error))
    except Exception as error:  # anything unexpected is a failure too, with its type
        summary["failures"].append("%s: %s" % (type(error).__name__, error))
    summary["ok"] = not summary["failures"]
    print(json.dumps(summary, indent=2, sort_keys=True))
    for failure in summary["failures"]:
        print("FAIL: " + failure, file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
