#!/usr/bin/env python3
"""The PIPELINES part of NanoPing's integration guide (steps 7-9), from Python stubs generated at run time.

For every node offering PIPELINES (getNodes with service_filters=[PIPELINES] on the API given):
open streamPipelines first (and wait for its response headers, as the Go guide does), create the guide's
pipeline with the guide's exact settings, update its name, get it by id, delete it; the stream must see
create, update, delete in that order. Prints one JSON summary as the last line of stdout.
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

import grpc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "nanoping")

GUIDE_CONFIG = """{
  "version": 13,
  "plumr_config": {
    "pipeline": {
      "traffic_sink-1": {
        "traffic_sink": {
          "input": "[traffic_sink-1|in:0]-[uniform_traffic_source-1|out:0]",
          "mtu": 1500
        }
      },
      "uniform_traffic_source-1": {
        "uniform_traffic_source": {
          "output": "[traffic_sink-1|in:0]-[uniform_traffic_source-1|out:0]",
          "total_packets": 5000,
          "interval": 25
        }
      }
    }
  }
}"""


def generate_stubs(out_dir):
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "*.proto")))
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I" + PROTO_DIR, "-I" + well_known,
               "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + protos
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError("protoc failed: %s" % (result.stderr or result.stdout))
    sys.path.insert(0, out_dir)
    names = ["hub_node_pb2", "hub_server_pb2", "hub_server_pb2_grpc", "pipelines_pb2", "pipelines_pb2_grpc",
             "logging_pb2"]
    return {name: importlib.import_module(name) for name in names}


def crud_on_node(channel, pb, node, timeout, summary):
    pp, pg, lg = pb["pipelines_pb2"], pb["pipelines_pb2_grpc"], pb["logging_pb2"]
    service = pg.PipelinesServiceStub(channel)
    record = {"node": node.name, "node_id": node.id, "events": [], "steps": {}}
    summary["nodes"].append(record)
    stream = service.streamPipelines(pp.StreamPipelinesRequest(node_id=node.id))
    # The Go guide calls stream.Header() right away: headers must come before any event.
    record["headers_received"] = stream.initial_metadata() is not None
    events = queue.Queue()

    def read():
        try:
            for event in stream:
                kind = event.WhichOneof("event")
                events.put((kind, getattr(event, kind).pipeline.name))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                events.put(("error", "%s: %s" % (error.code().name, error.details())))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        response = service.createPipeline(pp.CreatePipelineRequest(
            node_id=node.id,
            name="My First Pipeline",
            json_config=GUIDE_CONFIG,
            default_logging_level=lg.DEBUG,
            restart_policy=pp.RestartPolicy(on_failure=pp.RestartPolicyOnFailure(max_restarts=3)),
            instructions_timeout=15,
        ), timeout=timeout)
        p = response.pipeline
        record["steps"]["create"] = {
            "has_pipeline": response.HasField("pipeline"), "id": p.id, "name": p.name,
            "json_config_same": p.json_config == GUIDE_CONFIG,
            "restart_policy": p.restart_policy.WhichOneof("restart_policy"),
            "max_restarts": p.restart_policy.on_failure.max_restarts,
            "startup_policy": p.startup_policy.WhichOneof("startup_policy"),
            "default_logging_level": lg.Level.Name(p.default_logging_level),
            "instructions_timeout": p.instructions_timeout,
            "performance_mode": p.performance_mode, "started": p.started,
            "config_compatability": pp.ConfigCompatability.Name(p.config_compatability),
        }
        print("Doing CRUD pipeline operations on node %s" % node.name)
        print(" Created pipeline %s with id %s" % (p.name, p.id))
        updated = service.updatePipeline(pp.UpdatePipelineRequest(
            node_id=node.id, id=p.id, json_config=p.json_config, name="My Updated Pipeline",
            restart_policy=p.restart_policy, default_logging_level=p.default_logging_level,
            instructions_timeout=p.instructions_timeout,
        ), timeout=timeout)
        record["steps"]["update"] = {"name": updated.pipeline.name, "id": updated.pipeline.id}
        print(" Updated pipeline to name %s for id %s" % (updated.pipeline.name, updated.pipeline.id))
        got = service.getPipelineById(pp.GetPipelineByIdRequest(node_id=node.id, id=p.id), timeout=timeout)
        record["steps"]["get"] = {"name": got.pipeline.name}
        print(" Got pipeline %s" % got.pipeline.name)
        service.deletePipeline(pp.DeletePipelineRequest(node_id=node.id, id=p.id), timeout=timeout)
        record["steps"]["delete"] = "ok"
        try:
            service.getPipelineById(pp.GetPipelineByIdRequest(node_id=node.id, id=p.id), timeout=timeout)
            record["steps"]["get_after_delete"] = "OK"
        except grpc.RpcError as error:
            record["steps"]["get_after_delete"] = error.code().name
        for _ in range(3):
            try:
                record["events"].append(list(events.get(timeout=timeout)))
            except queue.Empty:
                break
    finally:
        stream.cancel()
        reader.join(timeout=5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True, help="host:port of a node's plaintext gRPC API")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    summary = {"nodes": [], "failures": []}
    out_dir = tempfile.mkdtemp(prefix="nanoping-pipelines-stubs-")
    status = 1
    try:
        pb = generate_stubs(out_dir)
        channel = grpc.insecure_channel(args.api)
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
        hub = pb["hub_server_pb2_grpc"].HubServerServiceStub(channel)
        nodes = hub.getNodes(pb["hub_server_pb2"].GetNodesRequest(
            service_filters=[pb["hub_node_pb2"].PIPELINES]), timeout=args.timeout).nodes
        print("Nodes with Pipelines service enabled:")
        for node in nodes:
            print(" Node: %s" % node.name)
        summary["pipeline_nodes"] = [n.name for n in nodes]
        for node in nodes:
            try:
                crud_on_node(channel, pb, node, args.timeout, summary)
            except grpc.RpcError as error:
                # corral lets a node's local API manage that node's pipelines only (a node certificate
                # acts only for itself): another node's answer is recorded, and the next node tried.
                if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                summary["nodes"][-1]["refused"] = error.code().name
        channel.close()
        status = 0
    except grpc.RpcError as error:
        summary["failures"].append("%s: %s" % (error.code().name, error.details()))
    except Exception as error:  # noqa: BLE001
        summary["failures"].append(repr(error))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
