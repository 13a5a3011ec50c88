"""``donjon run`` end to end: through ``donjon.cli.main``, and in a real process for exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import wasmtime

from donjon.cli import main

TRAP_WAT = """
(module
  (memory (export "memory") 1)
  (func $deepest unreachable)
  (func $middle call $deepest)
  (func (export "_start") call $middle))
"""

EXIT_WAT = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") i32.const CODE call $exit))
"""


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon", "run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


# -- quick runs (no config) -----------------------------------------------------------


def test_hello_runs_with_args_and_env(examples: Path, capfd: pytest.CaptureFixture[str]) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--env", "GREETING_NAME=keep", hello, "--", "one", "two words"]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        "hello from donjon, keep!",
        "argc=3",
        "argv[0]=main.wasm",
        "argv[1]=one",
        "argv[2]=two words",
        # Quick-run mode is wasmtime's: exactly --env, no FD_COUNT/FD_NAMES (only a config has them).
        "FD_COUNT=(unset)",
        "FD_NAMES=(unset)",
    ]
    # One line warning that nil is not attested, and nothing else.
    assert err.count("\n") == 1 and "NOT attested" in err


def test_a_quick_run_passes_fd_variables_given_with_env_like_any_other(
    examples: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--env", "FD_COUNT=7", hello]) == 0
    out = capfd.readouterr().out
    assert "FD_COUNT=7\nFD_NAMES=(unset)\n" in out


def test_args_without_double_dash_and_exit_code_passthrough(
    examples: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--env", "EXIT_CODE=42", hello, "--flag-for-guest"]) == 42
    assert "argv[1]=--flag-for-guest" in capfd.readouterr().out


def test_host_environment_is_not_inherited(
    examples: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETING_NAME", "leaked")
    assert main(["run", str(examples / "hello" / "hello.wasm")]) == 0
    assert "hello from donjon, world!" in capfd.readouterr().out
    # --env KEY copies the host's value, on request only.
    assert main(["run", "--env", "GREETING_NAME", str(examples / "hello" / "hello.wasm")]) == 0
    assert "hello from donjon, leaked!" in capfd.readouterr().out


def test_dir_flags_preopen_in_order(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    payload = bytes(range(256)) * 300
    (data / "blob.bin").write_bytes(payload)
    reader = str(examples / "filereader" / "filereader.wasm")
    assert (
        main(["run", "--dir", f"{tmp_path}::/other", "--dir", f"{data}::/data", reader, "/data/blob.bin"])
        == 0
    )
    assert capfd.readouterr().out == f"size={len(payload)} fnv1a64={fnv1a64(payload)}\n"


def test_read_only_dir_refuses_writes(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    writes = str(examples / "writes" / "writes.wasm")
    assert main(["run", "--dir", f"{tmp_path}::/w", writes, "/w/out.txt", "10"]) == 1
    assert not (tmp_path / "out.txt").exists()
    assert main(["run", "--dir-rw", f"{tmp_path}::/w", writes, "/w/out.txt", "10"]) == 0
    assert (tmp_path / "out.txt").read_text().splitlines()[-1] == "record 00000009"
    capfd.readouterr()


# -- configs --------------------------------------------------------------------------


def test_enarx_toml_runs_unchanged(examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path / "Enarx.toml",
        """\
        args = ["--greet", "enarx"]

        [env]
        GREETING_NAME = "enarx"

        [[files]]
        kind = "null"

        [[files]]
        kind = "stdout"

        [[files]]
        kind = "stderr"
        name = "LOG"
        """,
    )
    assert main(["run", "--config", str(config), str(examples / "hello" / "hello.wasm")]) == 0
    out, _ = capfd.readouterr()
    assert "hello from donjon, enarx!" in out
    assert "argv[1]=--greet\nargv[2]=enarx\n" in out
    assert "FD_COUNT=3\nFD_NAMES=null:stdout:LOG\n" in out


def test_config_dir_entry_is_relative_to_the_config(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "assets").mkdir(parents=True)
    (project / "assets" / "input.txt").write_bytes(b"hello, keep\n")
    config = write(
        project / "Donjon.toml",
        """\
        args = ["/assets/input.txt"]

        [[files]]
        kind = "stdin"
        [[files]]
        kind = "stdout"
        [[files]]
        kind = "stderr"
        [[files]]
        kind = "dir"
        path = "assets"
        guest_path = "/assets"
        """,
    )
    reader = str(examples / "filereader" / "filereader.wasm")
    # Run from elsewhere: the host path resolves against the config's directory, not the cwd.
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(config), reader]) == 0
    assert capfd.readouterr().out == f"size=12 fnv1a64={fnv1a64(b'hello, keep' + bytes([10]))}\n"


def test_a_socket_that_cannot_be_opened_stops_the_run_before_the_guest(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as busy:  # the port is taken: the Keep cannot listen there
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write(
            tmp_path / "Enarx.toml",
            f"""\
            [[files]]
            kind = "stdin"
            [[files]]
            kind = "stdout"
            [[files]]
            kind = "stderr"
            [[files]]
            name = "LISTEN"
            kind = "listen"
            addr = "127.0.0.1"
            prot = "tls"
            port = {port}
            """,
        )
        assert main(["run", "--config", str(config), str(examples / "hello" / "hello.wasm")]) == 3
    out, err = capfd.readouterr()
    assert 'files[3] ("LISTEN")' in err and "in use" in err
    assert "hello from donjon" not in out  # the guest never ran


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[files]]\nkind = "stdin"\nmode = "r"\n', "Enarx.toml:3: files[0].mode: unknown key"),
        (
            '[[files]]\nkind = "listen"\nname = "L"\nport = 99999\n',
            "Enarx.toml:4: files[0].port: must be between",
        ),
        (
            '[[files]]\nkind = "listen"\nname = "L"\nport = "http"\n',
            "Enarx.toml:4: files[0].port: must be an integer",
        ),
        (
            '[[files]]\nkind = "null"\nname = "x"\n\n[[files]]\nkind = "null"\nname = "x"\n',
            "Enarx.toml:7: files[1].name: 'x' is already the name of files[0]",
        ),
        ("args = [\n", "Enarx.toml:2: not valid TOML"),
    ],
)
def test_config_errors_exit_2_with_key_and_line(
    examples: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    expected: str,
) -> None:
    config = tmp_path / "Enarx.toml"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", "Enarx.toml", str(examples / "hello" / "hello.wasm")]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.startswith(f"donjon: {expected}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('backend = ["snp"]\n', 'Donjon.toml:1: backend: unknown top-level key; did you mean "backends"?'),
        (
            'args = ["x"]\n[[file]]\nkind = "stdin"\n',
            'Donjon.toml:2: file: unknown top-level key; did you mean "files"?',
        ),
    ],
)
def test_unknown_top_level_key_is_an_error_and_nothing_runs(
    examples: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    expected: str,
) -> None:
    (tmp_path / "Donjon.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--backend", "nil", "--config", "Donjon.toml", hello]) == 2
    out, err = capfd.readouterr()
    assert out == ""  # the guest never ran
    assert err.startswith(f"donjon: {expected}") and err.count("\n") == 1


def test_backend_allow_list_refuses_nil(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "Donjon.toml", 'backends = ["snp", "tdx"]\n')
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--backend", "nil", "--config", str(config), hello]) == 1
    out, err = capfd.readouterr()
    assert out == "" and "backend 'nil' refused" in err


def test_backend_selection(examples: Path, capfd: pytest.CaptureFixture[str]) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--backend", "snp", hello]) == 3
    assert "not available" in capfd.readouterr().err
    assert main(["run", "--backend", "qemu", hello]) == 2
    assert "unknown backend" in capfd.readouterr().err
    assert main(["run", "--backend", "nil", hello]) == 0
    capfd.readouterr()


def test_config_excludes_flags(examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "Donjon.toml", "")
    assert main(["run", "--config", str(config), "--env", "A=1", str(examples / "hello" / "hello.wasm")]) == 2
    assert "with --config" in capfd.readouterr().err


# -- failures -------------------------------------------------------------------------


def test_missing_module_exits_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.wasm")]) == 3
    assert capfd.readouterr().err.startswith(f"donjon: {tmp_path / 'nope.wasm'}: no such file")


def test_missing_config_and_missing_dir_exit_3(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--config", str(tmp_path / "Donjon.toml"), hello]) == 3
    assert "no such config file" in capfd.readouterr().err
    assert main(["run", "--dir", str(tmp_path / "absent"), hello]) == 3
    assert "no such directory" in capfd.readouterr().err


def test_invalid_wasm_exits_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\x00asm\x01\x00\x00\x00\xff\xff")
    assert main(["run", str(bad)]) == 2
    err = capfd.readouterr().err
    assert "not a valid WebAssembly module" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("data", "starts", "kind"),
    [
        (b"\x7fELF\x02\x01\x01\x00" + bytes(56), "\\x7fELF\\x02\\x01\\x01\\x00", "an ELF executable"),
        (b"# My app\n\nRun it with donjon.\n", "# My app\\n\\nRun it", "text"),
        (b"#!/bin/sh\necho hi\n", "#!/bin/sh\\necho h", "a script"),
        (bytes(range(256)), "\\x00\\x01\\x02", ""),
        (b"", "", "the file is empty"),
    ],
)
def test_a_file_that_is_not_webassembly_is_named_so(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], data: bytes, starts: str, kind: str
) -> None:
    junk = tmp_path / "app.wasm"
    junk.write_bytes(data)
    assert main(["run", "--no-cache", str(junk)]) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"donjon: {junk}: not a WebAssembly module (") and err.count("\n") == 1
    assert (f'starts with "{starts}' in err if data else True) and kind in err
    assert "expected" not in err.lower()  # none of the text parser's words ("expected '('")


def test_webassembly_text_still_runs_and_bad_text_gets_the_parser_message(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "exit.wat"
    good.write_text(";; the text format\n" + EXIT_WAT.replace("CODE", "7"))
    assert main(["run", "--no-cache", str(good)]) == 7
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func $f (i32.bogus)))")
    assert main(["run", "--no-cache", str(bad)]) == 2
    assert "not valid WebAssembly text" in capfd.readouterr().err


def test_module_without_start_exits_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib.wasm"
    lib.write_bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    assert main(["run", str(lib)]) == 2
    assert "_start" in capfd.readouterr().err


def test_exit_codes_outside_a_byte_never_look_like_success(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for code, expected in ((0, 0), (3, 3), (255, 255), (256, 1), (512, 1)):
        module = tmp_path / f"exit{code}.wasm"
        module.write_bytes(wasmtime.wat2wasm(EXIT_WAT.replace("CODE", str(code))))
        assert main(["run", "--no-cache", str(module)]) == expected
    capfd.readouterr()


def test_usage_errors(examples: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "missing MODULE" in capfd.readouterr().err
    assert main(["run", "--frobnicate", "x.wasm"]) == 2
    assert "unknown option" in capfd.readouterr().err
    assert main(["run", "x.wasm", "\udcff"]) == 2  # an undecodable byte from the host's argv
    assert "not valid UTF-8" in capfd.readouterr().err
    assert (
        main(["run", "--no-cache", str(examples / "hello" / "hello.wasm"), "x" * (1 << 20)]) == 2
    )  # beyond the host's args limit
    assert "cannot give the guest" in capfd.readouterr().err
    assert main(["run", "--help"]) == 0
    assert "--dir HOST[::GUEST]" in capfd.readouterr().out


def test_trap_in_a_process_exits_134_with_backtrace_and_no_traceback(tmp_path: Path) -> None:
    module = tmp_path / "trap.wasm"
    module.write_bytes(wasmtime.wat2wasm(TRAP_WAT))
    result = run_process(str(module))
    assert result.returncode == 134
    assert "guest trapped" in result.stderr
    assert "deepest" in result.stderr and "middle" in result.stderr  # the wasm backtrace
    assert "Traceback" not in result.stderr


def test_failures_in_a_process_have_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm at all")
    config = tmp_path / "Enarx.toml"
    config.write_text('[[files]]\nkind = "stdin"\nport = 1\n')
    for args, code in (
        ([str(bad)], 2),
        ([str(tmp_path / "missing.wasm")], 3),
        (["--config", str(config), str(bad)], 2),
    ):
        result = run_process(*args)
        assert result.returncode == code, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.startswith("donjon: ")


# -- cache and digest -----------------------------------------------------------------


def test_cache_miss_then_hit_then_disabled(examples: Path, capfd: pytest.CaptureFixture[str]) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "-v", hello]) == 0
    assert "module cache: miss" in capfd.readouterr().err
    assert main(["run", "-v", hello]) == 0
    assert "module cache: hit" in capfd.readouterr().err
    assert main(["run", "-v", "--no-cache", hello]) == 0
    assert "module cache: disabled" in capfd.readouterr().err


def test_tampered_cache_entry_is_recompiled(
    examples: Path, isolated_cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", hello]) == 0
    (entry,) = isolated_cache.glob("*.cwasm")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    capfd.readouterr()
    assert main(["run", "-v", hello]) == 0
    out, err = capfd.readouterr()
    assert "module cache: rejected" in err and "hello from donjon" in out


def test_unsafe_cache_dir_disables_the_cache_with_a_warning(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert main(["run", "-v", "--cache-dir", str(shared), str(examples / "hello" / "hello.wasm")]) == 0
    err = capfd.readouterr().err
    assert "module cache disabled" in err and "module cache: disabled" in err
    assert not list(shared.iterdir())


def test_print_digest_is_stable_and_reflects_the_config(
    examples: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hello = str(examples / "hello" / "hello.wasm")
    assert main(["run", "--print-digest", hello, "a"]) == 0
    first = capfd.readouterr().out.strip()
    assert main(["run", "--print-digest", hello, "a"]) == 0
    assert capfd.readouterr().out.strip() == first
    assert main(["run", "--print-digest", hello, "b"]) == 0
    assert capfd.readouterr().out.strip() != first
    assert len(bytes.fromhex(first)) == 32


def test_ctrl_c_stops_a_guest_in_a_loop(examples: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon", "run", str(examples / "compute" / "compute.wasm"), "100000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "NOT attested" in proc.stderr.readline()  # printed right before the guest starts
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGINT
    assert "Traceback" not in err


def test_a_nil_run_without_a_config_loads_none_of_what_it_does_not_need(examples: Path) -> None:
    # Start-up is measured (benchmarks/bench_run.py --start); this keeps the imports that cost it
    # off the nil path: the attestation library and cryptography (backends.base), the config
    # parser, TLS and sockets, json (the digest), the other commands.
    probe = (
        "import os, sys\n"
        "from donjon.cli import main\n"
        "code = main(['run', '--backend', 'nil', sys.argv[1]])\n"
        "heavy = ('cryptography', 'donjon.attestation', 'donjon.config.parse', 'donjon.tls', 'donjon.keep',\n"
        "         'json', 'socket', 'tomllib', 'threading', 'logging', 'donjon.cli.steward', 'OpenSSL')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), code, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(examples / "hello" / "hello.wasm")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr.splitlines()[-1] == "[] 0", result.stderr
