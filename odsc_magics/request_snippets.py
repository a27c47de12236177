"""The request a prompt would send, written out for the platform's own tools: the oci CLI, requests, openai."""

# Each snippet is built from the request the client builds (Endpoint.build_request: URL, route, headers,
# body), so it sends what the magic would send. Values are quoted for the language they land in: the shell
# gets shlex.quote'd arguments (a prompt's quotes, `$(...)` and backticks stay text), Python gets repr()
# literals. Non-printable characters are escaped, so what is shown is what runs. A snippet names the OCI
# config file and profile it signs with, never a key, pass phrase or token.

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass
from typing import Any

from odsc_magics.errors import ValidationError

__all__ = ["FORMATS", "SnippetAuth", "endpoint_snippet", "request_snippet", "snippet"]

FORMATS = ("oci-cli", "python", "openai")
LANGUAGES = {"oci-cli": "bash", "python": "python", "openai": "python"}
# What each tool is, as the dry run names it.
TOOLS = {
    "oci-cli": "the oci CLI (`oci raw-request`)",
    "python": "Python: requests and the oci signer",
    "openai": "Python: the openai client",
}

NO_STREAM_NOTE = "oci raw-request cannot stream: this asks /predict for the whole answer."
_CHAT = "/v1/chat/completions"
_COMPLETIONS = "/v1/completions"
_FILE_MODES = ("api_key", "security_token")
_LINE = 88  # the longest one-line dict or list a Python snippet writes
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "opc-obo-token"})
# The request fields the openai client takes as keyword arguments (openai 1.x-3.x); others go in extra_body.
_OPENAI_COMPLETIONS_ARGS = frozenset(
    {
        "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n", "presence_penalty",
        "seed", "stop", "stream_options", "suffix", "temperature", "top_p", "user",
    }
)  # fmt: skip
_OPENAI_CHAT_ARGS = frozenset(
    {
        "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "n",
        "parallel_tool_calls", "presence_penalty", "response_format", "seed", "stop", "stream_options",
        "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SnippetAuth:
    """How a snippet signs its request: the auth mode and, for the file-based modes, the config file and profile."""

    mode: str = "api_key"
    config_file: str = os.path.join("~", ".oci", "config")
    profile: str = "DEFAULT"

    @classmethod
    def of(cls, credentials: Any) -> SnippetAuth:
        """The auth of the client's credentials (``odsc_magics.auth.Credentials``); the home directory as ``~``."""
        config_file = getattr(credentials, "config_file", None) or cls.config_file
        home = os.path.expanduser("~")
        if home not in ("", "~", os.sep) and config_file.startswith(home.rstrip(os.sep) + os.sep):
            config_file = "~" + config_file[len(home.rstrip(os.sep)) :]
        return cls(
            mode=getattr(credentials, "mode", None) or cls.mode,
            config_file=config_file,
            profile=getattr(credentials, "profile", None) or cls.profile,
        )


def can_stream(as_: str) -> bool:
    """Whether the tool can read a streamed answer (``oci raw-request`` cannot: it waits for the whole one)."""
    return _check_format(as_) != "oci-cli"


def snippet(request: dict, as_: str, auth: SnippetAuth | None = None) -> str:
    """``request`` (as ``Endpoint.build_request`` returns it) as a program for ``as_``: oci-cli, python or openai."""
    as_ = _check_format(as_)
    auth = auth or SnippetAuth()
    if as_ == "oci-cli":
        return _oci_cli(request, auth)
    if as_ == "python":
        return _python_requests(request, auth)
    return _python_openai(request, auth)


def endpoint_snippet(
    endpoint: Any,
    as_: str,
    *,
    prompt: str | None = None,
    messages: list | None = None,
    stream: bool = False,
    **params: Any,
) -> str:
    """The snippet of the request ``endpoint`` would send for this prompt or these messages.

    The oci CLI cannot stream, so its snippet asks /predict for the whole answer.
    """
    streamed = stream and can_stream(as_)
    request = endpoint.build_request(prompt=prompt, messages=messages, stream=streamed, **params)
    text = snippet(request, as_, SnippetAuth.of(endpoint.context.credentials))
    if stream and not streamed:
        text = f"# {NO_STREAM_NOTE}\n{text}"
    return text


def request_snippet(
    deployment: str | None = None,
    prompt: str | None = None,
    *,
    as_: str = "python",
    messages: list | None = None,
    stream: bool = False,
    **params: Any,
) -> str:
    """The program that sends this prompt (or these chat ``messages``) to ``deployment`` with another tool.

    ``as_``: "oci-cli" (``oci raw-request``), "python" (requests + ``oci.signer.Signer``) or "openai" (the
    openai client on the deployment's ``/predict/v1`` URL). Parameters are those of ``Endpoint.complete``;
    nothing is sent.
    """
    from odsc_magics.client import connect

    _check_format(as_)
    if (prompt is None) == (messages is None):
        raise ValidationError(
            "Give either prompt or messages.",
            hint='e.g. request_snippet("my-llm", "Hello", as_="python")',
            target="prompt",
        )
    endpoint = connect(deployment)
    return endpoint_snippet(endpoint, as_, prompt=prompt, messages=messages, stream=stream, **params)


def _check_format(as_: Any) -> str:
    if as_ not in FORMATS:
        raise ValidationError(
            f"as_ must be one of {', '.join(FORMATS)}, not {as_!r}.",
            hint="oci-cli: `oci raw-request`; python: requests + oci.signer.Signer; openai: the openai client.",
            target="as_",
        )
    return as_


def _headers(request: dict) -> dict:
    return {k: v for k, v in (request.get("headers") or {}).items() if k.lower() not in _SECRET_HEADERS}


def _split_url(request: dict) -> tuple[str, str]:
    """(the deployment's URL, its predict action: predict or predictWithResponseStream)."""
    base, _, action = request["url"].rstrip("/").rpartition("/")
    return base, action


# -- the oci CLI --


def _json_text(value: Any, indent: int | None = None) -> str:
    """JSON of ``value`` that shows every character: non-printable ones as ``\\u`` escapes (inside strings only)."""
    try:
        text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValidationError("A request field is NaN or infinite, which JSON cannot carry.", target="body") from None
    out = []
    for char in text:
        if char.isprintable() or char in "\n ":
            out.append(char)
        else:
            data = char.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))
    return "".join(out)


def _oci_cli(request: dict, auth: SnippetAuth) -> str:
    body = request["body"]
    args = [
        ("--http-method", "POST"),
        ("--target-uri", request["url"]),
        ("--request-headers", _json_text(_headers(request))),
        ("--request-body", _json_text(body, indent=2)),
        ("--auth", auth.mode),
    ]
    if auth.mode in _FILE_MODES:
        args += [("--config-file", auth.config_file), ("--profile", auth.profile)]
    parts = [f"{option} {shlex.quote(value)}" for option, value in args]
    return " \\\n  ".join(["oci raw-request", *parts]) + "\n"


# -- Python --


def _py_str(text: str) -> str:
    """A double-quoted Python string literal of ``text``: JSON's escapes (the same in Python), and every
    character that would not show (controls, DEL, separators, lone surrogates) as a Python escape."""
    out = []
    for char in json.dumps(text, ensure_ascii=False):
        if char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def _py(value: Any, level: int = 0) -> str:
    """``value`` (JSON data) as a Python literal in which nothing is code: strings are escaped literals.

    A dict or list that fits on a line of ``_LINE`` characters is written on one line, others one item a line.
    """
    if isinstance(value, (dict, list, tuple)):
        flat = _py_flat(value)
        if len(flat) + 4 * level <= _LINE or not value:
            return flat
        pad, inner = "    " * level, "    " * (level + 1)
        if isinstance(value, dict):
            items = [f"{inner}{_py(str(k))}: {_py(v, level + 1)}," for k, v in value.items()]
            return "{\n" + "\n".join(items) + f"\n{pad}}}"
        items = [f"{inner}{_py(v, level + 1)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{pad}]"
    if isinstance(value, str):
        return _py_str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise ValidationError(f"A request field of type {type(value).__name__} cannot be written out.", target="body")


def _py_flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(str(k))}: {_py_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py_flat(v) for v in value) + "]"
    return _py(value)


def _signer_code(auth: SnippetAuth) -> tuple[list[str], list[str]]:
    """(imports, statements) that leave an oci signer in ``signer``; the key stays in the files it is in."""
    config = f"config = from_file({_py_str(auth.config_file)}, {_py_str(auth.profile)})"
    if auth.mode == "api_key":
        return ["from oci.config import from_file", "from oci.signer import Signer"], [
            config,
            "signer = Signer(",
            '    tenancy=config["tenancy"],',
            '    user=config["user"],',
            '    fingerprint=config["fingerprint"],',
            '    private_key_file_location=config["key_file"],',
            '    pass_phrase=config.get("pass_phrase"),',
            ")",
        ]
    if auth.mode == "security_token":
        imports = [
            "import os",
            "from oci.auth.signers import SecurityTokenSigner",
            "from oci.config import from_file",
            "from oci.signer import load_private_key_from_file",
        ]
        return imports, [
            config,
            'with open(os.path.expanduser(config["security_token_file"])) as token_file:',
            "    token = token_file.read().strip()",
            'private_key = load_private_key_from_file(config["key_file"], config.get("pass_phrase"))',
            "signer = SecurityTokenSigner(token, private_key)",
        ]
    if auth.mode == "instance_principal":
        return ["from oci.auth.signers import InstancePrincipalsSecurityTokenSigner"], [
            "signer = InstancePrincipalsSecurityTokenSigner()"
        ]
    if auth.mode == "resource_principal":
        return ["from oci.auth.signers import get_resource_principals_signer"], [
            "signer = get_resource_principals_signer()"
        ]
    raise ValidationError(f"Unknown auth mode {auth.mode!r}.", target="auth")


def _imports(*groups: list[str]) -> list[str]:
    """Import lines, standard library first, each once, in the order given."""
    seen: list[str] = []
    for group in groups:
        for line in group:
            if line and line not in seen:
                seen.append(line)
    stdlib = [line for line in seen if line.split()[1].split(".")[0] in ("json", "os")]
    return stdlib + ([""] if stdlib else []) + [line for line in seen if line not in stdlib]


def _python_requests(request: dict, auth: SnippetAuth) -> str:
    body = request["body"]
    route = request.get("route")
    stream = bool(body.get("stream"))
    signer_imports, signer_lines = _signer_code(auth)
    imports = _imports(["import json"] if stream else [], ["import requests"], signer_imports)
    lines = [
        "# Needs the oci and requests packages: pip install oci requests",
        *imports,
        "",
        *signer_lines,
        "",
        f"endpoint = {_py_str(request['url'])}",
        f"headers = {_py(_headers(request))}",
        f"body = {_py(body)}",
        "",
    ]
    if stream:
        text = 'choices[0]["delta"].get("content")' if route == _CHAT else 'choices[0].get("text")'
        lines += [
            "with requests.post(endpoint, json=body, auth=signer, headers=headers, stream=True) as response:",
            "    response.raise_for_status()",
            "    for line in response.iter_lines():",
            '        line = line.decode("utf-8")',
            '        if not line.startswith("data:"):',
            "            continue",
            '        data = line[len("data:") :].strip()',
            '        if data == "[DONE]":',
            "            break",
            '        choices = json.loads(data).get("choices")',
            "        if choices:",
            f'            print({text} or "", end="", flush=True)',
            "print()",
        ]
    else:
        answer = {
            _CHAT: 'answer["choices"][0]["message"]["content"]',
            _COMPLETIONS: 'answer["choices"][0]["text"]',
        }.get(route, "answer")
        lines += [
            "response = requests.post(endpoint, json=body, auth=signer, headers=headers)",
            "response.raise_for_status()",
            "answer = response.json()",
            f"print({answer})",
        ]
    return "\n".join(lines) + "\n"


def _python_openai(request: dict, auth: SnippetAuth) -> str:
    body = dict(request["body"])
    route = request.get("route")
    if route not in (_CHAT, _COMPLETIONS):
        raise ValidationError(
            f"The openai snippet covers {_COMPLETIONS} and {_CHAT}, not {route}.",
            hint="Use --as python (requests) for other routes.",
            target="as_",
        )
    chat = route == _CHAT
    base, action = _split_url(request)
    stream = bool(body.pop("stream", False))
    known = _OPENAI_CHAT_ARGS if chat else _OPENAI_COMPLETIONS_ARGS
    first = "messages" if chat else "prompt"
    arguments = [("model", body.pop("model", None)), (first, body.pop(first, None))]
    extra = {}
    for key, value in body.items():
        if key in known:
            arguments.append((key, value))
        else:
            extra[key] = value
    if extra:
        arguments.append(("extra_body", extra))
    if stream:
        arguments.append(("stream", True))
    signer_imports, signer_lines = _signer_code(auth)
    imports = _imports(["import httpx", "import requests"], signer_imports, ["from openai import OpenAI"])
    method = "client.chat.completions.create" if chat else "client.completions.create"
    call = [f"{name}={_py(value, 1)}," for name, value in arguments]
    lines = [
        "# Needs the openai, httpx, requests and oci packages: pip install openai oci requests",
        "# (the oci-openai package's OciUserPrincipalAuth signs the same way)",
        *imports,
        "",
        *signer_lines,
        "",
        "",
        "class OCIRequestSigner(httpx.Auth):",
        '    """Signs each request the openai client sends with the OCI signer."""',
        "",
        "    requires_request_body = True",
        "",
        "    def auth_flow(self, request):",
        "        signed = requests.Request(",
        "            request.method, str(request.url), headers=dict(request.headers), data=request.content",
        "        ).prepare()",
        "        signer.do_request_sign(signed)",
        "        request.headers.update(signed.headers)",
        "        yield request",
        "",
        "",
        "client = OpenAI(",
        '    api_key="OCI",  # not used: the signer authenticates each request',
        f"    base_url={_py_str(base + '/' + action + '/v1')},",
        "    http_client=httpx.Client(auth=OCIRequestSigner()),",
        ")",
        f"{'stream' if stream else 'completion'} = {method}(",
        *("    " + line for line in call),
        ")",
    ]
    if stream:
        text = "chunk.choices[0].delta.content" if chat else "chunk.choices[0].text"
        lines += [
            "for chunk in stream:",
            "    if chunk.choices:",
            f'        print({text} or "", end="", flush=True)',
            "print()",
        ]
    else:
        text = "completion.choices[0].message.content" if chat else "completion.choices[0].text"
        lines.append(f"print({text})")
    return "\n".join(lines) + "\n"
