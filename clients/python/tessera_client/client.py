"""A small synchronous client for tessera.v1.Inference."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import grpc

_PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protos")
if _PROTO_ROOT not in sys.path:
    sys.path.append(_PROTO_ROOT)  # grpc.protos_and_services resolves .proto files on sys.path
pb, services = grpc.protos_and_services("tessera/v1/inference.proto")


class TesseraError(Exception):
    """A call failed: `code` is the grpc.StatusCode, `message` names the offending field."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass
class Completion:
    text: str
    token_ids: list = field(default_factory=list)
    finish_reason: str = ""
    score: Optional[float] = None


def _settings(**decoding) -> "pb.DecodingSettings":
    settings = pb.DecodingSettings()
    for name, value in decoding.items():
        if value is None:
            continue
        if name == "logit_bias":
            for token, bias in value.items():
                settings.logit_bias[int(token)] = float(bias)
        elif isinstance(value, (list, tuple)):
            getattr(settings, name).extend(value)
        else:
            setattr(settings, name, value)
    return settings


class Client:
    """Connects to a Tessera server. `token` is sent as 'authorization: Bearer <token>';
    `root_certificates` (PEM bytes) turns on TLS."""

    def __init__(self, target: str, token: Optional[str] = None,
                 root_certificates: Optional[bytes] = None, timeout: Optional[float] = None):
        if root_certificates is not None:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates))
        else:
            channel = grpc.insecure_channel(target)
        self._channel = channel
        self._stub = services.InferenceStub(channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:  # a status from the server, or the connection
            raise TesseraError(e.code(), e.details() or "") from None

    @staticmethod
    def request(prompt: Optional[str] = None, messages: Optional[Sequence[dict]] = None,
                model: str = "", request_id: str = "", priority: int = 0,
                **decoding) -> "pb.GenerateRequest":
        """A GenerateRequest: `prompt` text or chat `messages` ([{"role", "content"}]),
        plus decoding settings under their GenerationConfig names (max_new_tokens, do_sample,
        temperature, top_p, seed, stop_strings, num_beams, ...)."""
        r = pb.GenerateRequest(model=model, request_id=request_id, priority=priority,
                               decoding=_settings(**decoding))
        if prompt is not None:
            r.prompt = prompt
        if messages is not None:
            r.messages.CopyFrom(pb.ChatMessages(
                messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in messages]))
        return r

    def complete(self, prompt: Optional[str] = None, **kwargs) -> list:
        """Every completion of one request, once it has finished."""
        response = self._call(self._stub.Complete, self.request(prompt, **kwargs))
        return [Completion(text=c.text, token_ids=[t.token_id for t in c.tokens],
                           finish_reason=pb.FinishReason.Name(c.finish_reason),
                           score=c.score if c.HasField("score") else None)
                for c in response.completions]

    def stream(self, prompt: Optional[str] = None, **kwargs) -> Iterator["pb.GenerateResponse"]:
        """The responses of Generate as they arrive (each with text deltas per completion)."""
        call = self._stub.Generate(self.request(prompt, **kwargs), metadata=self._metadata,
                                   timeout=self._timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            raise TesseraError(e.code(), e.details() or "") from None

    def stream_text(self, prompt: Optional[str] = None, **kwargs) -> Iterator[str]:
        """The text of completion 0 as it is generated."""
        for response in self.stream(prompt, **kwargs):
            for delta in response.deltas:
                if delta.index == 0 and delta.text:
                    yield delta.text

    def tokenize(self, text: str, model: str = "", add_special_tokens: bool = False) -> list:
        r = pb.TokenizeRequest(model=model, text=text, add_special_tokens=add_special_tokens)
        return list(self._call(self._stub.Tokenize, r).token_ids)

    def detokenize(self, token_ids: Sequence[int], model: str = "") -> str:
        r = pb.DetokenizeRequest(model=model, token_ids=list(token_ids))
        return self._call(self._stub.Detokenize, r).text

    def models(self) -> list:
        return list(self._call(self._stub.ListModels, pb.ListModelsRequest()).models)
