"""The KServe SDK's clients against a server, run by tests/runtime/test_kserve_sdk.py.

Runs under ``.venv-peers/kserve/bin/python`` (KServe needs pandas<3 and psutil<6, so it
has a venv of its own; this file never imports edgeintel). Every call goes through the
SDK: ``InferenceRESTClient`` (v2 protocol) and ``InferenceGRPCClient``, both over mutual
TLS. kserve 0.21's ``RESTConfig(cert=...)`` is dropped (it builds a transport and
discards it), so the REST client's certificate goes in through ``verify=``, which takes
an ``ssl.SSLContext``. Metadata has no client method in the SDK: REST metadata is read
with the client's own HTTP connection and parsed by the SDK's pydantic models, gRPC
metadata through the client's stub with the SDK's protobuf messages.

Usage: python kserve_sdk_client.py CONFIG.json  (host, port, grpc_port, model, cert, key,
ca, x.npy); prints one JSON object of what each call returned.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ServerMetadataResponse


def _request(model: str, x: np.ndarray, binary: bool) -> InferRequest:
    inp = InferInput(name="input", shape=list(x.shape), datatype="FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    params = {"binary_data_output": True} if binary else None
    return InferRequest(model_name=model, infer_inputs=[inp], parameters=params)


async def rest(cfg: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    ctx.load_cert_chain(cfg["cert"], cfg["key"])
    base = f"https://{cfg['host']}:{cfg['port']}"
    out: dict[str, Any] = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", verify=ctx, retries=0)) as c:
        out["live"] = await c.is_server_live(base)
        out["ready"] = await c.is_server_ready(base)
        out["model_ready"] = await c.is_model_ready(base, cfg["model"])
        out["unknown_model_ready"] = await c.is_model_ready(base, "no_such_model")
        server = ServerMetadataResponse.model_validate_json(
            (await c._client.get(f"{base}/v2")).content
        )
        out["server_metadata"] = server.model_dump()
        meta = (await c._client.get(f"{base}/v2/models/{cfg['model']}")).content
        out["model_metadata"] = ModelMetadataResponse.model_validate_json(meta).model_dump()
        for binary in (False, True):
            res = await c.infer(base, _request(cfg["model"], x, binary), model_name=cfg["model"])
            y = res.outputs[0].as_numpy()
            out[f"infer_{'binary' if binary else 'json'}"] = {
                "name": res.outputs[0].name,
                "shape": list(y.shape),
                "values": y.tolist(),
            }
        try:
            await c.infer(base, _request("no_such_model", x, False), model_name="no_such_model")
            out["unknown_model_infer"] = "answered"
        except httpx.HTTPStatusError as exc:
            out["unknown_model_infer"] = exc.response.status_code
    return out


async def grpc_calls(cfg: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    client = InferenceGRPCClient(
        f"{cfg['host']}:{cfg['grpc_port']}",
        use_ssl=True,
        root_certificates=cfg["ca"],
        private_key=cfg["key"],
        certificate_chain=cfg["cert"],
        retries=0,
        timeout=30,
    )
    async with client as c:
        out["live"] = await c.is_server_live()
        out["ready"] = await c.is_server_ready()
        out["model_ready"] = await c.is_model_ready(cfg["model"])
        server = await c._client_stub.ServerMetadata(pb.ServerMetadataRequest())
        out["server_metadata"] = {"name": server.name, "extensions": list(server.extensions)}
        meta = await c._client_stub.ModelMetadata(pb.ModelMetadataRequest(name=cfg["model"]))
        out["model_metadata"] = {
            "name": meta.name,
            "inputs": [{"name": t.name, "datatype": t.datatype} for t in meta.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype} for t in meta.outputs],
        }
        res = await c.infer(_request(cfg["model"], x, True))
        y = res.outputs[0].as_numpy()
        out["infer"] = {"name": res.outputs[0].name, "shape": list(y.shape), "values": y.tolist()}
        try:
            await c.infer(_request("no_such_model", x, True))
            out["unknown_model_infer"] = "answered"
        except grpc.aio.AioRpcError as exc:
            out["unknown_model_infer"] = exc.code().name
    return out


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    x = np.load(cfg["x"]).astype(np.float32)
    return {"rest": await rest(cfg, x), "grpc": await grpc_calls(cfg, x)}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        config = json.load(f)
    print(json.dumps(asyncio.run(main(config))))
