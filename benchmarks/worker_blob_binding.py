"""The blob trigger under the real Python worker runtime: index ``function_app``, check that
``landing_blob`` is an SDK-type (deferred) binding, invoke it through the runtime's own decode
path on Azurite, and print what the host sends the worker per event, before and after.

The runtime is not a project dependency (the host ships its own worker): unpack the wheel and
the generated gRPC messages (the ``tests/protos`` package of ``azure-functions-runtime-v1``)
into a folder, with the protobuf and grpcio they were generated for, then point ``--worker`` at it:

    d=$(mktemp -d) && pip download --no-deps --python-version 3.13 --only-binary=:all: -d $d \
        azure-functions-runtime azure-functions-runtime-v1 && \
      unzip -q $d/azure_functions_runtime-*.whl -d $d/w && \
      unzip -q $d/azure_functions_runtime_v1-*.whl 'tests/protos/*' -d $d/p && \
      mv $d/p/tests/protos $d/w/ && pip install -q --target $d/w "protobuf~=5.29.0" "grpcio~=1.70.0"
    .venv/bin/python benchmarks/worker_blob_binding.py --worker $d/w

The runtime declares Python 3.13; its indexing and decode paths used here run on 3.11.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES_GZ = 26_421_880  # bytes of Fashion-MNIST's train-images-idx3-ubyte.gz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True, type=Path, help="the unpacked runtime")
    args = parser.parse_args()
    sys.path[:0] = [str(args.worker), str(ROOT)]
    os.chdir(ROOT)
    import protos  # the worker's generated gRPC messages
    from azure.storage.blob import BlobServiceClient
    from azure_functions_runtime import functions, loader
    from azure_functions_runtime.bindings.meta import from_incoming_proto, load_binding_registry
    from protos import FunctionRpc_pb2 as rpc

    from retrain.emulators.azurite import running
    from retrain.emulators.functions_host import blob_binding_data

    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp) / "azurite") as azurite:
        os.environ.update(
            DataStorage=azurite.connection_string,
            LANDING_CONTAINER="landing",
            RETRAIN_BACKEND="local",
            LOCAL_RUNS_DIR=str(Path(tmp) / "runs"),
        )
        blob = "b1/train-images-idx3-ubyte.gz"
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("landing").upload_blob(blob, b"\x1f\x8b" + bytes(100))

        load_binding_registry()  # as the runtime's worker_init_request does
        indexed = loader.index_function_app(str(ROOT / "function_app.py"))
        registry = functions.Registry()
        results, _ = loader.process_indexed_function(protos, registry, indexed, str(ROOT))
        [meta] = [m for m in results if m.name == "landing_blob"]
        [raw] = [json.loads(b) for b in meta.raw_bindings if "blobTrigger" in b]
        info = registry.get_function(meta.function_id)
        arg = info.input_types["blob"]
        print(f"indexed: {len(results)} functions; landing_blob {raw['type']} "
              f"properties={raw.get('properties')}; parameter type {arg.pytype.__name__}, "
              f"deferred={arg.deferred_bindings_enabled}")  # fmt: skip

        after = rpc.ParameterBinding(
            name="blob",
            data=rpc.TypedData(
                model_binding_data=rpc.ModelBindingData(
                    version="1.0",
                    source="AzureStorageBlobs",
                    content_type="application/json",
                    content=blob_binding_data("landing", blob),
                )
            ),
        )
        client = from_incoming_proto(
            arg.binding_name, after, pytype=arg.pytype, trigger_metadata={},
            function_name=info.name, is_deferred_binding=arg.deferred_bindings_enabled,
        )  # fmt: skip
        info.func(blob=client)
        print(f"invoked: landing_blob got {type(client).__name__} "
              f"{client.container_name}/{client.blob_name}")  # fmt: skip

        before = rpc.ParameterBinding(name="blob", data=rpc.TypedData(bytes=bytes(TRAIN_IMAGES_GZ)))
        print(f"per event, the blob parameter over gRPC: func.InputStream "
              f"{before.ByteSize():,} bytes (train-images-idx3-ubyte.gz); "
              f"BlobClient {after.ByteSize():,} bytes")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
