"""tessera-client: talk to a Tessera server from the shell.

  tessera-client --target localhost:50051 generate "The sky is" --max-new-tokens 16
  tessera-client --target localhost:50051 chat "Name three colours"
  tessera-client --target localhost:50051 models
  tessera-client --target localhost:50051 tokenize "Hello world"

Exit status: 0 on success, 1 when the server answers with an error (printed with its gRPC
code), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from tessera_client.client import Client, TesseraError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera-client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="localhost:50051", help="server host:port")
    p.add_argument("--token", help="bearer token, if the server asks for one")
    p.add_argument("--tls-root", help="PEM file of the CA that signed the server's certificate")
    p.add_argument("--model", default="", help="model name (default: the only one served)")
    p.add_argument("--timeout", type=float, help="seconds before the call is abandoned")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("generate", "chat"):
        g = sub.add_parser(name, help="generate from a prompt" if name == "generate"
                           else "generate a reply to one user message (chat template)")
        g.add_argument("text")
        g.add_argument("--max-new-tokens", type=int)
        g.add_argument("--do-sample", action="store_true")
        g.add_argument("--temperature", type=float)
        g.add_argument("--top-p", type=float)
        g.add_argument("--top-k", type=int)
        g.add_argument("--seed", type=int)
        g.add_argument("--stop", action="append", dest="stop_strings", help="a stop string")
        g.add_argument("--no-stream", action="store_true", help="print the text once at the end")
        g.add_argument("--json", action="store_true", help="print the Complete response as JSON")
    sub.add_parser("models", help="list the models served")
    t = sub.add_parser("tokenize", help="print the token ids of a text")
    t.add_argument("text")
    d = sub.add_parser("detokenize", help="print the text of token ids")
    d.add_argument("ids", nargs="+", type=int)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    root = None
    if args.tls_root:
        try:
            with open(args.tls_root, "rb") as f:
                root = f.read()
        except OSError as e:
            print(f"tessera-client: --tls-root: {e}", file=sys.stderr)
            return 2
    client = Client(args.target, token=args.token, root_certificates=root, timeout=args.timeout)
    try:
        if args.command in ("generate", "chat"):
            decoding = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample or None,
                            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            seed=args.seed, stop_strings=args.stop_strings)
            kwargs = dict(model=args.model, **decoding)
            if args.command == "chat":
                kwargs["messages"] = [{"role": "user", "content": args.text}]
            else:
                kwargs["prompt"] = args.text
            if args.json or args.no_stream:
                completions = client.complete(**kwargs)
                if args.json:
                    print(json.dumps([c.__dict__ for c in completions]))
                else:
                    print(completions[0].text)
            else:
                for piece in client.stream_text(**kwargs):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
        elif args.command == "models":
            for m in client.models():
                print(f"{m.name}\tcontext {m.context_length}\tready replicas {m.ready_replicas}")
        elif args.command == "tokenize":
            print(" ".join(str(i) for i in client.tokenize(args.text, model=args.model)))
        elif args.command == "detokenize":
            print(client.detokenize(args.ids, model=args.model))
    except TesseraError as e:
        print(f"tessera-client: {e.code.name}: {e.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
