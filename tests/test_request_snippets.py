"""Request snippets: the oci CLI, requests and openai programs carry the request exactly, quote it safely, hold no
secret, and run as printed against the local backend."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odsc_magics.errors import ValidationError
from odsc_magics.request_snippets import FORMATS, SnippetAuth, request_snippet, snippet

VENV_BIN = Path(sys.executable).parent
# Shell and Python syntax that must stay text: quotes, command substitution, backticks, escapes, triple quotes,
# a line break, a terminal escape, a right-to-left override, a separator and an emoji.
HOSTILE = (
    "It's \"quoted\" $(touch {canary}) `touch {canary}` ${{HOME}} \\n \\\\' ''' \"\"\" end\n"
    "second line\x1b[31m red \u202e evil \u2028 sep \U0001f600 done"
)
URL = "https://modeldeployment.us-ashburn-1.oci.customer-oci.com/ocid1.datasciencemodeldeployment.oc1.iad.x"


def completion_request(prompt: str, *, stream: bool = False, **extra) -> dict:
    body = {"model": "odsc-llm", "prompt": prompt, "max_tokens": 32, "temperature": 0.2, **extra}
    headers = {"content-type": "application/json", "route": "/v1/completions"}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
        headers.update({"accept": "text/event-stream", "enable-streaming": "true"})
        return {"url": URL + "/predictWithResponseStream", "route": "/v1/completions", "headers": headers, "body": body}
    headers["accept"] = "application/json"
    return {"url": URL + "/predict", "route": "/v1/completions", "headers": headers, "body": body}


def chat_request(messages: list[dict]) -> dict:
    return {
        "url": URL + "/predict",
        "route": "/v1/chat/completions",
        "headers": {"content-type": "application/json", "route": "/v1/chat/completions", "accept": "application/json"},
        "body": {"model": "odsc-llm", "messages": messages, "max_tokens": 16},
    }


def assignments(source: str) -> dict:
    """The literal value of every top-level ``name = <literal>`` in a Python snippet."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def create_call(source: str) -> tuple[str, dict]:
    """(the called method, its keyword arguments as literals) of the openai snippet's ``...create(...)`` call."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "create":
            return ast.unparse(node.func), {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    raise AssertionError("no create() call")


def openai_base_url(source: str) -> str:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "base_url":
            return ast.literal_eval(node.value)
    raise AssertionError("no base_url")


def cli_argv(text: str, tmp_path: Path) -> list[str]:
    """The arguments bash hands to ``oci`` when it runs the snippet (a stand-in ``oci`` records them)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "oci"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env, timeout=30, check=True)
    return json.loads(done.stdout)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# -- each snippet carries the request exactly --


def test_oci_cli_snippet_passes_the_request_through_bash_unchanged(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    request = completion_request(HOSTILE.format(canary=canary))
    text = snippet(request, "oci-cli", SnippetAuth("api_key", "~/.oci/config", "MY PROFILE"))
    argv = cli_argv(text, tmp_path)
    assert argv[0] == "raw-request"
    assert option(argv, "--http-method") == "POST"
    assert option(argv, "--target-uri") == request["url"]
    assert json.loads(option(argv, "--request-body")) == request["body"]
    assert json.loads(option(argv, "--request-headers")) == request["headers"]
    assert option(argv, "--auth") == "api_key"
    assert option(argv, "--config-file") == "~/.oci/config"  # the CLI expands ~ itself, as from_file does
    assert option(argv, "--profile") == "MY PROFILE"
    assert not canary.exists()


def test_python_snippet_literals_are_the_request(tmp_path: Path) -> None:
    request = completion_request(HOSTILE.format(canary=tmp_path / "ran"))
    text = snippet(request, "python")
    values = assignments(text)
    assert values["endpoint"] == request["url"]
    assert values["headers"] == request["headers"]
    assert values["body"] == request["body"]
    assert "requests.post(endpoint, json=body, auth=signer, headers=headers)" in text
    assert 'print(answer["choices"][0]["text"])' in text


def test_python_snippet_streams_when_the_request_does() -> None:
    request = completion_request("hi", stream=True)
    text = snippet(request, "python")
    assert assignments(text)["body"]["stream"] is True
    assert "stream=True" in text and "iter_lines()" in text and "import json" in text
    compile(text, "<snippet>", "exec")


def test_openai_snippet_calls_completions_through_predict_v1(tmp_path: Path) -> None:
    prompt = HOSTILE.format(canary=tmp_path / "ran")
    text = snippet(completion_request(prompt, top_k=5, seed=7), "openai")
    method, kwargs = create_call(text)
    assert method == "client.completions.create"
    assert openai_base_url(text) == URL + "/predict/v1"
    assert kwargs == {
        "model": "odsc-llm",
        "prompt": prompt,
        "max_tokens": 32,
        "temperature": 0.2,
        "seed": 7,
        "extra_body": {"top_k": 5},  # not an openai argument: sent as it is in the body
    }
    assert "print(completion.choices[0].text)" in text


def test_openai_snippet_streams_through_predict_with_response_stream() -> None:
    text = snippet(completion_request("hi", stream=True), "openai")
    _, kwargs = create_call(text)
    assert kwargs["stream"] is True and kwargs["stream_options"] == {"include_usage": True}
    assert openai_base_url(text) == URL + "/predictWithResponseStream/v1"
    assert "for chunk in stream:" in text


def test_chat_snippets_send_the_messages() -> None:
    messages = [{"role": "system", "content": "Be 'brief'."}, {"role": "user", "content": 'Say "hi"\nnow'}]
    request = chat_request(messages)
    method, kwargs = create_call(snippet(request, "openai"))
    assert method == "client.chat.completions.create"
    assert kwargs["messages"] == messages
    python = snippet(request, "python")
    assert assignments(python)["body"]["messages"] == messages
    assert 'answer["choices"][0]["message"]["content"]' in python


@pytest.mark.parametrize("as_", FORMATS)
def test_snippets_show_every_character(as_: str) -> None:
    text = snippet(completion_request("a\x1b[31mb\u202ec\u2028d\x00e\x7ff"), as_)
    hidden = [c for c in text if not c.isprintable() and c != "\n"]
    assert hidden == []


def test_openai_snippet_refuses_other_routes() -> None:
    request = completion_request("hi")
    request["route"] = "/v1/embeddings"
    with pytest.raises(ValidationError, match="covers /v1/completions"):
        snippet(request, "openai")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValidationError, match="oci-cli, python, openai"):
        snippet(completion_request("hi"), "curl")


# -- auth: named, never included --


@pytest.mark.parametrize("mode", ["security_token", "instance_principal", "resource_principal"])
def test_other_auth_modes(mode: str, tmp_path: Path) -> None:
    auth = SnippetAuth(mode, "~/.oci/config", "SESSION")
    argv = cli_argv(snippet(completion_request("hi"), "oci-cli", auth), tmp_path)
    assert option(argv, "--auth") == mode
    assert ("--profile" in argv) == (mode == "security_token")
    for as_ in ("python", "openai"):
        text = snippet(completion_request("hi"), as_, auth)
        compile(text, "<snippet>", "exec")
        assert {"security_token": "SecurityTokenSigner(token, private_key)",
                "instance_principal": "InstancePrincipalsSecurityTokenSigner()",
                "resource_principal": "get_resource_principals_signer()"}[mode] in text  # fmt: skip


def test_snippet_auth_names_the_home_directory_as_tilde(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from odsc_magics.auth import Credentials

    monkeypatch.setenv("HOME", str(tmp_path))
    credentials = Credentials(
        "api_key", None, region="r", description="d", oci_config={}, config_file=str(tmp_path / ".oci" / "config"),
        profile="P",
    )  # fmt: skip
    assert SnippetAuth.of(credentials) == SnippetAuth("api_key", "~/.oci/config", "P")
    elsewhere = Credentials(
        "api_key", None, region="r", description="d", oci_config={}, config_file="/etc/oci", profile="Q"
    )
    assert SnippetAuth.of(elsewhere) == SnippetAuth("api_key", "/etc/oci", "Q")


def test_snippets_hold_no_secret(backend, tmp_path: Path) -> None:
    """A profile with an encrypted key and its pass phrase: the snippets name the file and profile, nothing in them."""
    from test_auth import PASS_PHRASE, local_settings, write_key, write_profile

    from odsc_magics.auth import load_credentials
    from odsc_magics.client import connect

    pem = write_key(tmp_path / "key.pem", PASS_PHRASE)
    config = write_profile(backend, tmp_path, "LOCKED", key_file=str(tmp_path / "key.pem"), pass_phrase=PASS_PHRASE)
    credentials = load_credentials("api_key", config_file=str(config), profile="LOCKED")
    auth = SnippetAuth.of(credentials)
    request = completion_request("hi")
    request["headers"]["authorization"] = 'Signature keyId="t/u/f",signature="c2VjcmV0"'
    endpoint_request = connect("test-llm", settings=local_settings(backend)).build_request(prompt="hi", stream=True)
    for as_ in FORMATS:
        for built in (request, endpoint_request):
            text = snippet(built, as_, auth)
            assert str(config) in text and "LOCKED" in text
            for secret in (PASS_PHRASE, "BEGIN", "PRIVATE KEY", "c2VjcmV0", "keyId", *pem.splitlines()[1:3]):
                assert secret not in text, (as_, secret)


# -- they run as printed --


def run_snippet(as_: str, text: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **extra_env}
    env.update(OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING="True", SUPPRESS_LABEL_WARNING="True")
    command = ["bash", "-c", text] if as_ == "oci-cli" else [sys.executable, "-c", text]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def answer_of(as_: str, done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-2000:]
    if as_ == "oci-cli":
        reply = json.loads(done.stdout)
        assert reply["status"] == "200 OK", reply
        choice = reply["data"]["choices"][0]
        return choice["message"]["content"] if "message" in choice else choice["text"]
    assert done.stdout.endswith("\n")
    return done.stdout[:-1]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_request_snippet_runs_against_the_local_backend(backend, monkeypatch, tmp_path: Path, stream: bool) -> None:
    from odsc_magics import connect

    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    canary = tmp_path / "ran"
    prompt = HOSTILE.format(canary=canary)
    params = {"temperature": 0, "max_tokens": 12}
    expected = connect("test-llm").complete(prompt, **params).text
    assert expected.strip()
    for as_ in FORMATS:
        text = request_snippet("test-llm", prompt, as_=as_, stream=stream, **params)
        assert answer_of(as_, run_snippet(as_, text, tmp_path)) == expected, as_
    assert not canary.exists()


def test_request_snippet_needs_prompt_or_messages() -> None:
    with pytest.raises(ValidationError, match="either prompt or messages"):
        request_snippet("my-llm", as_="python")


def test_request_snippet_is_part_of_the_package_api() -> None:
    import odsc_magics

    assert odsc_magics.request_snippet is request_snippet
    assert "request_snippet" in dir(odsc_magics)


def test_short_dicts_stay_on_one_line_long_ones_break() -> None:
    messages = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "x" * 120}]
    text = snippet(chat_request(messages), "python")
    assert '        {"role": "system", "content": "Be brief"},\n' in text
    assert '            "content": "' + "x" * 120 + '",\n' in text
    assert assignments(text)["body"]["messages"] == messages


def test_snippets_on_the_default_config_path_run(backend, tmp_path: Path) -> None:
    """``~/.oci/config`` as the platform's examples write it: the CLI and the SDK expand ``~`` themselves."""
    from test_auth import local_settings

    from odsc_magics.client import connect

    home = tmp_path / "home"
    (home / ".oci").mkdir(parents=True)
    (home / ".oci" / "config").write_text(Path(backend.config_file).read_text())
    endpoint = connect("test-llm", settings=local_settings(backend))
    expected = endpoint.complete("tides and moons", temperature=0, max_tokens=8).text
    request = endpoint.build_request(prompt="tides and moons", temperature=0, max_tokens=8)
    for as_ in FORMATS:
        text = snippet(request, as_, SnippetAuth())
        assert "~/.oci/config" in text and "DEFAULT" in text
        done = run_snippet(as_, text, tmp_path, HOME=str(home))
        assert answer_of(as_, done) == expected, as_
