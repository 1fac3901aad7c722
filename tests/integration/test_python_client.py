"""tessera serve through the Python client (clients/python), through gRPC server
reflection alone (no .proto, no generated code), and through the standard health service."""

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tessera_client import Client, TesseraError
from tessera_client.cli import main as cli_main


def test_stream_and_complete_agree(server):
    with Client(server.target) as client:
        pieces = list(client.stream_text("The capital of France is", max_new_tokens=12))
        assert len(pieces) > 1  # streamed, not one message
        [completion] = client.complete("The capital of France is", max_new_tokens=12)
        assert "".join(pieces) == completion.text
        assert completion.finish_reason in ("FINISH_REASON_LENGTH", "FINISH_REASON_STOP")
        assert "Paris" in completion.text


def test_chat_and_sampling(server):
    with Client(server.target) as client:
        messages = [{"role": "user", "content": "Name three colours."}]
        first = client.complete(messages=messages, do_sample=True, seed=5, temperature=0.7,
                                num_return_sequences=2, max_new_tokens=10)
        again = client.complete(messages=messages, do_sample=True, seed=5, temperature=0.7,
                                num_return_sequences=2, max_new_tokens=10)
        assert [c.text for c in first] == [c.text for c in again]
        assert len(first) == 2


def test_errors_name_the_field(server):
    with Client(server.target) as client:
        cases = [
            (dict(prompt=""), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
            (dict(prompt="hi", top_k=-1), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
            (dict(prompt="hi", max_new_tokens=0), grpc.StatusCode.INVALID_ARGUMENT,
             "max_new_tokens"),
            (dict(prompt="hi", model="nope"), grpc.StatusCode.NOT_FOUND, "model"),
            (dict(prompt="hi", stop_strings=[f"s{i}" for i in range(17)]),
             grpc.StatusCode.INVALID_ARGUMENT, "stop_strings"),
        ]
        for kwargs, code, field in cases:
            with pytest.raises(TesseraError) as error:
                client.complete(**kwargs)
            assert error.value.code == code, kwargs
            assert field in error.value.message, kwargs


def test_tokenize_round_trip(server):
    with Client(server.target) as client:
        ids = client.tokenize("Hello world")
        assert ids and client.detokenize(ids) == "Hello world"
        [model] = client.models()
        assert model.name == "default" and model.ready_replicas == 1


def test_cli(server, capsys):
    assert cli_main(["--target", server.target, "generate", "The capital of France is",
                     "--max-new-tokens", "8", "--no-stream"]) == 0
    assert "Paris" in capsys.readouterr().out
    assert cli_main(["--target", server.target, "generate", "", "--no-stream"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_health(server):
    channel = grpc.insecure_channel(server.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "default", "tessera.v1.Inference"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as error:
        health.Check(health_pb2.HealthCheckRequest(service="no-such-model"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_alone_is_enough_to_call_the_api(server):
    # Everything below comes from the server: service list, descriptors, message classes.
    channel = grpc.insecure_channel(server.target)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert "tessera.v1.Inference" in services
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("tessera.v1.Inference")
    method = service.methods_by_name["Complete"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    complete = channel.unary_unary(
        "/tessera.v1.Inference/Complete",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString)
    request = request_class(prompt="The capital of France is")
    request.decoding.max_new_tokens = 8
    response = complete(request)
    assert "Paris" in response.completions[0].text
    assert response.usage.completion_tokens == 8 or response.completions[0].finish_reason != 0


def test_tls_and_bearer_token(tmp_path):
    # A server of its own: TLS from a self-signed pair and a bearer token.
    import subprocess
    from conftest import start_server, stop_server

    cert, key, token_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "token"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    token_file.write_text("s3cret\n")
    secure = start_server(["--tls-cert", str(cert), "--tls-key", str(key),
                           "--auth-token-file", str(token_file)])
    try:
        target = f"localhost:{secure.port}"
        root = cert.read_bytes()
        with Client(target, token="s3cret", root_certificates=root, timeout=60) as client:
            [completion] = client.complete("The capital of France is", max_new_tokens=8)
            assert "Paris" in completion.text
        with Client(target, token="wrong", root_certificates=root, timeout=60) as client:
            with pytest.raises(TesseraError) as error:
                client.complete("Hello", max_new_tokens=2)
            assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
        with Client(target, token="s3cret", timeout=10) as plaintext:
            with pytest.raises(TesseraError) as error:
                plaintext.complete("Hello", max_new_tokens=2)
            assert error.value.code == grpc.StatusCode.UNAVAILABLE
        # The CLI reads the CA file and the token.
        assert cli_main(["--target", target, "--tls-root", str(cert), "--token", "s3cret",
                         "generate", "The capital of France is", "--max-new-tokens", "8",
                         "--no-stream"]) == 0
    finally:
        code, log = stop_server(secure)
        assert code == 0, log
