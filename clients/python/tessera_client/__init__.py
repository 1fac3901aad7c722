"""Python client for Tessera's gRPC API.

The message classes and stubs are built at import time from the package's copy of
proto/tessera/v1/inference.proto (grpc.protos_and_services, from grpcio-tools), so the
client always matches the .proto it ships with and no generated code is checked in.
"""

from tessera_client.client import Client, TesseraError, pb

__all__ = ["Client", "TesseraError", "pb"]
