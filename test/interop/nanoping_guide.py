#!/usr/bin/python3
"""NanoPing's integration guide (examples/guide, "Flow of the integration guide"), run from Python.

The client is generated at run time, with `python3 -m grpc_tools.protoc`, from our copy of NanoPing's
protos (proto/nanoping/*.proto), so it sends and expects exactly what NanoPing's own generated clients
do: the same method paths, field numbers and oneofs. Both connections are plaintext HTTP/2, as
`grpc.NewClient(addr, insecure)` in the guide.

Modes:
  accept     the guide: watch the connection state, set the node's name and metadata, accept every
             authentication request on the controller, authenticate (a second call must fail
             ALREADY_EXISTS "Client is already authenticated"), then list nodes with the guide's filters
             on the client node's API.
  reject     the controller-side stream answers accept=false: authenticateByRequest must fail UNAUTHENTICATED.
  no-answer  the controller-side stream receives the request and never answers: with the hub's
             authenticationByRequest timeout short, authenticateByRequest must fail DEADLINE_EXCEEDED.

Output: the guide's lines ("Connection state: ...", "All nodes:", " Node: ...") on stdout, diagnostics
on stderr, and one JSON summary as the last line of stdout. Exit status: 0 when everything held, 1 on
any deviation (the failures are listed in the summary and on stderr), 2 on a usage or setup problem.

  nanoping_guide.py --client 127.0.0.1:10432 --controller 127.0.0.1:10564 \\
      --hub-http http://127.0.0.1:8769 [--mode accept|reject|no-answer] [--timeout 30]
"""

import argparse
import glob
import importlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

CLIENT_NAME = "My NanoPing Client"
ALREADY_TEXT = "Client is already authenticated"
PROTO_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "nanoping"))

_print_lock = threading.Lock()


def say(line=""):
    """A guide line on stdout (the background readers print too, so one line at a time)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def note(line):
    with _print_lock:
        sys.stderr.write("nanoping_guide: " + line + "\n")
        sys.stderr.flush()


class Failure(Exception):
    """The server did something the guide does not expect; the message says what."""


class SetupError(Exception):
    """The stubs could not be generated or imported."""


# ------------------------------------------------------------------ stubs from our copy of the protos


def generate_stubs(out_dir):
    """Runs protoc (grpc_tools) over proto/nanoping/*.proto into out_dir and imports the modules."""
    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "*.proto")))
    if not protos:
        raise SetupError("no .proto files in %s" % PROTO_DIR)
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
    ] + protos
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SetupError("protoc failed (%d): %s" % (result.returncode, (result.stderr or result.stdout).strip()))
    sys.path.insert(0, out_dir)
    names = [
        "hub_node_pb2",
        "hub_client_pb2",
        "hub_client_pb2_grpc",
        "hub_server_pb2",
        "hub_server_pb2_grpc",
        "logging_pb2",
        "logging_pb2_grpc",
    ]
    try:
        return {name: importlib.import_module(name) for name in names}
    except Exception as error:  # noqa: BLE001 - any import problem is a setup problem
        raise SetupError("cannot import the generated stubs: %r" % (error,)) from error


# ------------------------------------------------------------------ helpers


def code_name(error):
    return error.code().name if isinstance(error, grpc.RpcError) else type(error).__name__


def details(error):
    return error.details() if isinstance(error, grpc.RpcError) else str(error)


def connect(address, what, timeout):
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError as error:
        raise Failure("cannot connect to the %s at %s within %ss" % (what, address, timeout)) from error
    return channel


def metadata_value(item):
    """A NodeMetadataItem as [oneof case, JSON-able value]."""
    case = item.WhichOneof("value")
    if case is None:
        return [None, None]
    value = getattr(item, case)
    if case == "bytes_value":
        value = value.hex()
    return [case, value]


def node_json(node, pb):
    return {
        "id": node.id,
        "name": node.name,
        "online": node.online,
        "services": [pb["hub_node_pb2"].NodeService.Name(s) for s in node.services],
        "metadata": {key: metadata_value(node.metadata.items[key]) for key in sorted(node.metadata.items)},
    }


class StateWatcher:
    """Step 2: HubClientService/streamConnectionState in the background, recording every state."""

    def __init__(self, stub, pb):
        self._pb = pb
        self.states = []
        self.error = None
        self._changed = threading.Condition()
        self._call = stub.streamConnectionState(pb["hub_client_pb2"].StreamConnectionStateRequest())
        self._thread = threading.Thread(target=self._read, name="connection-state", daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for message in self._call:
                name = self._pb["hub_client_pb2"].ConnectionState.Name(message.state)
                say("Connection state: %s" % name)
                say()
                with self._changed:
                    self.states.append(name)
                    self._changed.notify_all()
        except grpc.RpcError as error:
            # The guide's reader stops silently on any error; we keep the code for the summary.
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = "%s: %s" % (code_name(error), details(error))
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, state, timeout):
        """Waits until `state` was seen (state=None: any state); False at the deadline or the stream's end."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (not self.states) if state is None else (state not in self.states):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._changed.wait(left)
            return True

    def close(self):
        self._call.cancel()
        self._thread.join(5)


class RequestAnswerer:
    """Step 4: HubServerService/authenticationByRequests (bidi) on the controller; sends nothing first,
    then answers every pushed request with `accept` (or, answer=None, never answers)."""

    def __init__(self, stub, pb, answer):
        self._pb = pb
        self._answer = answer
        self._outgoing = queue.Queue()
        self.requests = []
        self.answers_sent = 0
        self.error = None
        self._seen = threading.Condition()
        self._call = stub.authenticationByRequests(self._answers())
        self._thread = threading.Thread(target=self._read, name="authentication-requests", daemon=True)
        self._thread.start()

    def _answers(self):
        while True:
            item = self._outgoing.get()
            if item is None:
                return
            yield item

    def _read(self):
        try:
            for request in self._call:
                with self._seen:
                    self.requests.append(
                        {"request_id": str(request.request_id), "node": node_json(request.node, self._pb)}
                    )
                    self._seen.notify_all()
                note(
                    "authentication request %d from %r (%s)" % (request.request_id, request.node.name, request.node.id)
                )
                if self._answer is not None:
                    self._outgoing.put(
                        self._pb["hub_server_pb2"].AuthenticationByRequestAnswer(
                            request_id=request.request_id, accept=self._answer
                        )
                    )
                    self.answers_sent += 1
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = "%s: %s" % (code_name(error), details(error))
        with self._seen:
            self._seen.notify_all()

    def wait_for_request(self, timeout):
        deadline = time.monotonic() + timeout
        with self._seen:
            while not self.requests:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._seen.wait(left)
            return True

    def close(self):
        self._outgoing.put(None)
        self._call.cancel()
        self._thread.join(5)


# ------------------------------------------------------------------ the guide


def check(summary, condition, message):
    if not condition:
        summary["failures"].append(message)
        note("FAIL: " + message)
    return condition


def set_node_information(client, pb, summary, timeout):
    """Step 3: getLocalNodeId, then setNode with the guide's name and metadata."""
    hc = pb["hub_client_pb2"]
    hn = pb["hub_node_pb2"]
    local = client.getLocalNodeId(hc.GetLocalNodeIdRequest(), timeout=timeout)
    if not local.node_id:
        raise Failure("getLocalNodeId returned an empty node_id")
    summary["node_id"] = local.node_id
    summary["authenticated_before"] = local.is_authenticated
    metadata = hn.NodeMetadata()
    metadata.items["type"].string_value = "my-type"
    metadata.items["reference"].string_value = "my-reference"
    metadata.items["location"].string_value = "Denmark, Aalborg"
    metadata.items["random_zero_bytes"].bytes_value = bytes(10)
    response = client.setNode(
        hc.SetNodeRequest(node_id=local.node_id, name=CLIENT_NAME, metadata=metadata), timeout=timeout
    )
    if not response.HasField("node"):
        raise Failure("setNode answered without `node` (the Go guide reads response.node.id and panics)")
    summary["set_node"] = node_json(response.node, pb)
    check(summary, response.node.id == local.node_id, "setNode: node.id %r, expected %r" % (response.node.id, local.node_id))
    check(summary, response.node.name == CLIENT_NAME, "setNode: node.name %r, expected %r" % (response.node.name, CLIENT_NAME))
    expected = {
        "location": ["string_value", "Denmark, Aalborg"],
        "random_zero_bytes": ["bytes_value", "00" * 10],
        "reference": ["string_value", "my-reference"],
        "type": ["string_value", "my-type"],
    }
    check(
        summary,
        summary["set_node"]["metadata"] == expected,
        "setNode: node.metadata %s, expected %s" % (summary["set_node"]["metadata"], expected),
    )
    say("Updated client %s with node information" % response.node.id)
    say()


def authenticate(client, pb, hub_http, timeout):
    """Step 5: authenticateByRequest; returns (code name, details, seconds it blocked)."""
    started = time.monotonic()
    try:
        client.authenticateByRequest(
            pb["hub_client_pb2"].AuthenticateByRequestRequest(hub_server_address=hub_http), timeout=timeout
        )
        return "OK", "", time.monotonic() - started
    except grpc.RpcError as error:
        return code_name(error), details(error), time.monotonic() - started


def get_nodes(hub, pb, timeout, **request):
    response = hub.getNodes(pb["hub_server_pb2"].GetNodesRequest(**request), timeout=timeout)
    return [node_json(node, pb) for node in response.nodes]


def print_nodes(title, nodes):
    say(title)
    for node in nodes:
        say(" Node: %s" % node["name"])
    say()


def print_nodes_step(client_channel, pb, summary, controller_name, timeout):
    """Step 6, on the CLIENT node's API (the guide's HubServerService calls go to the client node)."""
    hub = pb["hub_server_pb2_grpc"].HubServerServiceStub(client_channel)
    hn = pb["hub_node_pb2"]
    nodes = summary["nodes"]

    nodes["all"] = get_nodes(hub, pb, timeout)
    print_nodes("All nodes:", nodes["all"])
    names = [n["name"] for n in nodes["all"]]
    check(summary, names[:1] == [controller_name], "getNodes {}: %r does not start with %r" % (names, controller_name))
    check(summary, CLIENT_NAME in names, "getNodes {}: %r lacks %r" % (names, CLIENT_NAME))
    mine = [n for n in nodes["all"] if n["id"] == summary.get("node_id")]
    check(summary, len(mine) == 1, "getNodes {}: this node (%s) listed %d times" % (summary.get("node_id"), len(mine)))
    if mine:
        check(
            summary,
            mine[0]["metadata"] == summary["set_node"]["metadata"],
            "getNodes {}: this node's metadata %s differs from what setNode returned %s"
            % (mine[0]["metadata"], summary["set_node"]["metadata"]),
        )

    type_filter = {"type": hn.NodeMetadataItem(string_value="my-type")}
    nodes["metadata_type"] = get_nodes(hub, pb, timeout, metadata_filters=type_filter)
    print_nodes("Nodes with metadata type=my-type:", nodes["metadata_type"])
    names = [n["name"] for n in nodes["metadata_type"]]
    check(summary, names == [CLIENT_NAME], "getNodes type=my-type: %r, expected [%r]" % (names, CLIENT_NAME))

    # Same key, same text, other oneof type: NanoPing compares the oneof case too, so nothing matches.
    bytes_filter = {"type": hn.NodeMetadataItem(bytes_value=b"my-type")}
    nodes["metadata_type_as_bytes"] = get_nodes(hub, pb, timeout, metadata_filters=bytes_filter)
    names = [n["name"] for n in nodes["metadata_type_as_bytes"]]
    check(summary, names == [], "getNodes type=bytes(my-type): %r, expected none (oneof type differs)" % (names,))

    # Only services a node serves are advertised: corral serves LOGGING (nanopinggrpc.logging) on every
    # node, and not RESOURCES, whose API NanoPing never published in the decoded protos.
    nodes["logging"] = get_nodes(hub, pb, timeout, service_filters=[hn.LOGGING])
    print_nodes("Nodes with Logging service enabled:", nodes["logging"])
    names = [n["name"] for n in nodes["logging"]]
    check(summary, CLIENT_NAME in names and controller_name in names, "getNodes [LOGGING]: %r lacks %r or %r" % (names, CLIENT_NAME, controller_name))
    nodes["resources"] = get_nodes(hub, pb, timeout, service_filters=[hn.RESOURCES])
    check(summary, nodes["resources"] == [], "getNodes [RESOURCES]: %r, expected none" % ([n["name"] for n in nodes["resources"]],))

    # getNode on the client node's own API answers for every node exactly as getNodes does.
    client = pb["hub_client_pb2_grpc"].HubClientServiceStub(client_channel)
    for listed in nodes["all"]:
        asked = client.getNode(pb["hub_client_pb2"].GetNodeRequest(node_id=listed["id"]), timeout=timeout)
        check(summary, node_json(asked.node, pb) == listed, "getNode(%s): %r, getNodes said %r" % (listed["name"], node_json(asked.node, pb), listed))

    # PIPELINES comes with a later feature: printed as the guide prints it, not asserted.
    try:
        nodes["pipelines"] = get_nodes(hub, pb, timeout, service_filters=[hn.PIPELINES])
        print_nodes("Nodes with Pipelines service enabled:", nodes["pipelines"])
    except grpc.RpcError as error:
        nodes["pipelines"] = {"code": code_name(error), "details": details(error)}
        say("Nodes with Pipelines service enabled: (%s: %s)" % (code_name(error), details(error)))
        say()


def logging_step(channel, pb, summary, timeout):
    """LoggingService/openLogStream of each LOGGING node's own log: the first batch, then cancel."""
    lg = pb["logging_pb2"]
    stub = pb["logging_pb2_grpc"].LoggingServiceStub(channel)
    summary["logs"] = {}
    for node in summary["nodes"].get("logging", []):
        request = lg.OpenLogStreamRequest(
            node_id=node["id"], options=lg.Options(lines=20), app_log_stream_request=lg.OpenAppLogStreamRequest()
        )
        stream = stub.openLogStream(request, timeout=timeout)
        try:
            batch = next(iter(stream))
            summary["logs"][node["name"]] = [
                {"level": lg.Level.Name(m.level), "message": m.message, "data": m.data} for m in batch.messages
            ]
        except grpc.RpcError as error:
            summary["logs"][node["name"]] = {"code": code_name(error), "details": details(error)}
        finally:
            stream.cancel()
        check(summary, isinstance(summary["logs"][node["name"]], list) and len(summary["logs"][node["name"]]) > 0, "openLogStream(%s): %r" % (node["name"], summary["logs"][node["name"]]))


def run(args, pb, summary):
    hc_grpc = pb["hub_client_pb2_grpc"]
    hs_grpc = pb["hub_server_pb2_grpc"]
    timeout = args.timeout

    # 1. Connect (plaintext HTTP/2) to the client node and to the controller's gRPC bridge.
    client_channel = connect(args.client, "client node", timeout)
    controller_channel = connect(args.controller, "controller bridge", timeout)
    client = hc_grpc.HubClientServiceStub(client_channel)
    watcher = answerer = None
    try:
        # 2. Watch the connection state; the first message is the current state.
        watcher = StateWatcher(client, pb)
        if not watcher.wait_for(None, timeout):
            raise Failure("streamConnectionState sent no state within %ss (%s)" % (timeout, watcher.error or "open"))
        check(
            summary,
            watcher.states[0] == "UNAUTHENTICATED",
            "streamConnectionState: first state %s, expected UNAUTHENTICATED (a node that never joined)" % watcher.states[0],
        )

        # 3. Name and metadata.
        set_node_information(client, pb, summary, timeout)

        # 4. Answer requests on the controller (started just before step 5, as the guide's goroutine).
        answer = {"accept": True, "reject": False, "no-answer": None}[args.mode]
        answerer = RequestAnswerer(hs_grpc.HubServerServiceStub(controller_channel), pb, answer)

        # 5. Join: blocks until accepted, rejected or timed out.
        code, text, elapsed = authenticate(client, pb, args.hub_http, args.auth_timeout)
        summary["authenticate"] = {"code": code, "details": text, "elapsed_s": round(elapsed, 3)}
        expected = {"accept": "OK", "reject": "UNAUTHENTICATED", "no-answer": "DEADLINE_EXCEEDED"}[args.mode]
        if not check(summary, code == expected, "authenticateByRequest: %s %r, expected %s" % (code, text, expected)):
            return
        check(summary, answerer.wait_for_request(timeout), "the controller's authenticationByRequests stream pushed no request")
        for request in answerer.requests:
            check(
                summary,
                request["node"]["id"] == summary["node_id"],
                "authentication request %s is for node %r, expected %r" % (request["request_id"], request["node"]["id"], summary["node_id"]),
            )
            check(
                summary,
                request["node"]["name"] == CLIENT_NAME,
                "authentication request %s names the node %r, expected %r" % (request["request_id"], request["node"]["name"], CLIENT_NAME),
            )
        check(summary, len(answerer.requests) == 1, "%d authentication requests pushed, expected 1" % len(answerer.requests))

        if args.mode != "accept":
            say("Authentication failed as expected: %s: %s" % (code, text))
            say()
            local = client.getLocalNodeId(pb["hub_client_pb2"].GetLocalNodeIdRequest(), timeout=timeout)
            summary["authenticated_after"] = local.is_authenticated
            check(summary, not local.is_authenticated, "getLocalNodeId: is_authenticated after a failed join")
            time.sleep(0.3)  # a wrong CONNECTED would show up in the states by now
            check(summary, "CONNECTED" not in watcher.states, "connection state CONNECTED after a failed join")
            return

        check(summary, watcher.wait_for("CONNECTED", timeout), "connection state never reached CONNECTED")
        say("Authenticated with the Hub Server")
        say()
        local = client.getLocalNodeId(pb["hub_client_pb2"].GetLocalNodeIdRequest(), timeout=timeout)
        summary["authenticated_after"] = local.is_authenticated
        check(summary, local.is_authenticated, "getLocalNodeId: not is_authenticated after the join was accepted")

        # The guide joins on every run and tolerates ALREADY_EXISTS with exactly this text.
        code, text, _ = authenticate(client, pb, args.hub_http, timeout)
        summary["already"] = {"code": code, "details": text}
        check(
            summary,
            code == "ALREADY_EXISTS" and text == ALREADY_TEXT,
            "second authenticateByRequest: %s %r, expected ALREADY_EXISTS %r" % (code, text, ALREADY_TEXT),
        )
        say("Already part of the hub")
        say()

        # 6. Nodes, through the client node's API.
        print_nodes_step(client_channel, pb, summary, args.controller_name, timeout)

        # Not in the guide: every LOGGING node's own log, through the hub (the controller's bridge).
        logging_step(controller_channel, pb, summary, timeout)
    finally:
        if answerer is not None:
            answerer.close()
            summary["requests"] = answerer.requests
            summary["answers_sent"] = answerer.answers_sent
            if answerer.error:
                summary["answer_stream_error"] = answerer.error
        if watcher is not None:
            watcher.close()
            summary["states"] = watcher.states
            if watcher.error:
                summary["state_stream_error"] = watcher.error
        client_channel.close()
        controller_channel.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, help="host:port of the client node's local API (np up --grpc)")
    parser.add_argument("--controller", required=True, help="host:port of the controller's gRPC bridge")
    parser.add_argument("--hub-http", required=True, help="the hub's HTTP address, e.g. http://127.0.0.1:8769")
    parser.add_argument("--mode", choices=["accept", "reject", "no-answer"], default="accept")
    parser.add_argument("--controller-name", default="My Controller", help="node.name of the controller")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds, per call and per wait (default 20)")
    parser.add_argument(
        "--auth-timeout", type=float, default=60.0, help="seconds the client waits on authenticateByRequest (default 60)"
    )
    args = parser.parse_args()

    summary = {"mode": args.mode, "ok": False, "failures": [], "nodes": {}}
    out_dir = tempfile.mkdtemp(prefix="nanoping-guide-stubs-")
    status = 1
    try:
        pb = generate_stubs(out_dir)
        summary["generated_from"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PROTO_DIR, "*.proto")))
        run(args, pb, summary)
        status = 0 if not summary["failures"] else 1
    except SetupError as error:
        summary["failures"].append("setup: %s" % error)
        note("SETUP: %s" % error)
        status = 2
    except Failure as error:
        summary["failures"].append(str(error))
        note("FAIL: %s" % error)
    except grpc.RpcError as error:
        summary["failures"].append("unexpected %s: %s" % (code_name(error), details(error)))
        note("FAIL: unexpected %s: %s" % (code_name(error), details(error)))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    summary["ok"] = status == 0
    with _print_lock:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
