"""The magics against `odsc-magics local --fault ...`: retries, cut streams, a wrong key; no secret shown."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from kernel_helpers import failed, llm_outputs, texts

pytestmark = pytest.mark.slow

SETUP = "%load_ext odsc_magics"


def test_429_and_503_are_retried_and_succeed(backend_factory, run_cells) -> None:
    flaky = backend_factory("--fault", "429:0.3", "--fault", "503:0.3", "--seed", "3")
    deployment = flaky.create_deployment("flaky")
    cells = [SETUP] + [
        f"%%llm_predict -d flaky --max-tokens 5 {flag}\nHello {n}"
        for n, flag in enumerate(["", "--no-stream", "", "--no-stream", ""])
    ]
    nb, _ = run_cells(flaky, cells)
    for cell in nb.cells[1:]:
        assert not failed(cell), texts(cell)
        assert len(llm_outputs(cell)) == 1
    stats = flaky.deployment_stats(deployment["id"])
    assert stats["faults"].get("429", 0) + stats["faults"].get("503", 0) > 0, stats
    assert stats["succeeded"] == 5


def test_a_cut_stream_keeps_the_partial_text_and_says_so(backend_factory, run_cells) -> None:
    cutting = backend_factory("--fault", "cut:1.0", "--tokens-per-s", "500")
    cutting.create_deployment("cutting")
    nb, _ = run_cells(
        cutting,
        [
            SETUP,
            "%%llm_predict -d cutting --max-tokens 40 -o partial\nTell me a story.",
            "print(_llm_last.interrupted, len(partial) > 0)",
        ],
    )
    cell = nb.cells[1]
    shown = texts(cell)
    assert "UsageError: The stream was cut after" in shown
    assert "partial text is kept above and in `partial`" in shown
    assert "Traceback" not in shown
    (answer,) = llm_outputs(cell)
    assert answer.data["text/plain"].strip() and "interrupted" in answer.data["text/markdown"]
    assert answer.metadata["odsc_magics"]["interrupted"] is True
    assert texts(nb.cells[2]).split() == ["True", "True"]


def test_a_wrong_key_gets_the_401_message_naming_the_auth_mode(backend, run_cells, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "other_key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    parser = configparser.ConfigParser()
    parser.read(backend.config_file)
    parser[backend.profile]["key_file"] = str(key_file)
    config_file = tmp_path / "wrong_config"
    with config_file.open("w") as handle:
        parser.write(handle)
    url = backend.deployment["url"]
    nb, _ = run_cells(
        backend,
        [
            SETUP,
            f'%config LLMMagics.config_file = "{config_file}"',
            f"%%llm_predict -d {url} --max-tokens 5\nhi",
        ],
    )
    shown = texts(nb.cells[2])
    assert "UsageError: 401" in shown, shown
    assert "auth mode api_key" in shown
    assert "Traceback" not in shown
    everything = "\n".join(texts(c) for c in nb.cells)
    assert "PRIVATE KEY" not in everything and key_file.read_text()[40:80] not in everything
    assert "keyId=" not in everything and 'Signature version="1"' not in everything
