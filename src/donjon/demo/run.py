"""``donjon demo``: Donjon end to end on one machine, in a few seconds.

1. a local Steward (:class:`~donjon.demo.steward.LocalSteward`) on https://127.0.0.1:<free port>,
   trusting the SIMULATED vendors only, with a policy naming the demo workload's digest;
2. the demo workload (the ``examples/http`` server, shipped in the package) in a Keep on
   ``sim-snp`` (or ``sim-tdx``), started through the real ``donjon run`` command line as a
   separate process: it attests to the Steward (challenge, evidence bound to its key and the
   workload digest, CSR) and serves TLS 1.3 with the certificate it was issued;
3. a client that trusts only the Steward's CA: it verifies the Keep's chain, SPIFFE ID and the
   workload digest in the certificate's claims (``donjon.peer``, what ``donjon peer verify`` runs),
   then makes an HTTPS request checked against the same CA and prints the answer;
4. everything stops, the temporary directory is removed. Exit 0, or 1 with one clear line.

Every wait is bounded; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["EXAMPLE_PORT", "DemoFailed", "DemoOptions", "demo_module", "example_config", "run_demo"]

#: Bound on the HTTP answer the client reads.
_MAX_RESPONSE = 64 * 1024
SPIFFE_PATH = "/demo/http"


class DemoFailed(Exception):
    """A step of the demo failed; the message says which and why."""


@dataclass(frozen=True)
class DemoOptions:
    backend: str = "sim-snp"
    #: Seconds each step may take (the Keep's start, the client's requests).
    step_timeout: float = 30.0
    #: Print the Keep's own stderr lines (indented) as they come.
    show_keep_log: bool = True


def demo_module(name: str = "http") -> bytes:
    """The demo workload's bytes: shipped in the package as ``donjon/demo/<name>.wasm``; in a
    development (editable) install, the repository's ``examples/<name>/<name>.wasm``."""
    resource = importlib.resources.files("donjon.demo").joinpath(f"{name}.wasm")
    if resource.is_file():
        return resource.read_bytes()
    repo = Path(__file__).resolve().parents[3] / "examples" / name / f"{name}.wasm"
    try:
        return repo.read_bytes()
    except OSError as e:
        raise DemoFailed(
            f"the demo workload {name}.wasm is not in this installation (looked for donjon/demo/{name}.wasm "
            f"in the package and {repo})"
        ) from e


def _shorten(line: str, width: int = 150) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: The port ``donjon example http`` listens on unless told: beside the Steward's default 8443.
EXAMPLE_PORT = 8444


def _http_files(port: int) -> str:
    """The ``[[files]]`` of the http example: stdio, and one TLS socket listening on 127.0.0.1."""
    return f"""\
[[files]]
kind = "stdin"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

[[files]]
kind = "listen"
name = "web"
addr = "127.0.0.1"
port = {port}
prot = "tls"
"""


def example_config(name: str = "http", port: int = EXAMPLE_PORT) -> str:
    """The ``Donjon.toml`` that ``donjon example NAME`` writes beside the module: the workload
    runs as it is in any Keep (no Steward named: ``donjon run --steward`` gives one)."""
    if name != "http":
        raise DemoFailed(f"no example config for {name!r}")
    return (
        "# The http example (examples/http/http.c): one web page over HTTPS, TLS terminated by the\n"
        "# Keep. The workload digest covers this file: edit it and it is another workload\n"
        "# (donjon run --print-digest --config Donjon.toml http.wasm).\n"
        '# backends = ["sim-snp"]  # uncomment to accept only these Keeps (docs/run.md)\n'
        "\n" + _http_files(port)
    )


def _config_text(port: int, steward_url: str) -> str:
    return (
        "# The demo workload: examples/http behind TLS 1.3 terminated by the Keep, attested by a local\n"
        "# Steward.\n"
        f'steward = "{steward_url}"\n'
        'steward_ca = "steward/ca.pem"\n'
        'backends = ["sim-snp", "sim-tdx"]\n'
        "\n" + _http_files(port)
    )


class _SigintHeld:
    """Holds Ctrl-C back from now until :meth:`release` (in the main thread; elsewhere Python delivers
    no signal anyway). A KeyboardInterrupt after a child process started but before the ``try``
    whose ``finally`` stops it would leave the child running, alone in its session."""

    def __init__(self) -> None:
        self.caught = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        self.caught = True

    def release(self, *, raise_caught: bool = True) -> None:
        """Ctrl-C acts again; one that came while held is raised now (unless ``raise_caught`` is false)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if self.caught and raise_caught:
            self.caught = False
            raise KeyboardInterrupt


class _KeepProcess:
    """``donjon run`` in a child process; its stderr lines are collected by a reader thread.

    Ctrl-C is held back from the start of the child until :meth:`started` (call it first thing in
    the ``try`` whose ``finally`` calls :meth:`stop`) or :meth:`stop`."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._sigint = _SigintHeld()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except BaseException:
            self._sigint.release(raise_caught=False)
            raise
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True),
        ]
        try:
            for reader in self._readers:
                reader.start()
        except BaseException:
            self.stop()
            raise

    def started(self) -> None:
        """Ctrl-C acts again; one that came while the child started is raised here."""
        self._sigint.release()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for raw in stream:
            line = raw.rstrip("\n")[:2000]
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float) -> str:
        """The first line containing ``marker``; :class:`DemoFailed` if the Keep exits or time runs out."""
        deadline = time.monotonic() + timeout
        ended = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoFailed(f"the Keep did not report {marker!r} within {timeout:g} s")
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if line is None:
                ended += 1
                if ended == len(self._readers):
                    code = self.proc.wait(timeout=5)
                    last = next((x for x in reversed(self.log) if x.startswith("donjon: ")), None)
                    raise DemoFailed(f"the Keep exited with code {code}" + (f": {last}" if last else ""))
                continue
            if marker in line:
                return line

    def stop(self, timeout: float = 5.0) -> int:
        self._sigint.release(raise_caught=False)  # stopping is what a held Ctrl-C asked for
        if self.proc.poll() is None:
            # The guest runs compiled wasm with SIGINT's default action (docs/run.md): it stops at once.
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        for reader in self._readers:
            if reader.is_alive():  # (one that never started is not)
                reader.join(1.0)
        return self.proc.returncode


def _https_get(port: int, ca_path: Path, timeout: float) -> tuple[bytes, bytes]:
    """GET / over TLS 1.3, the server certificate checked against the Steward CA and 'localhost'
    (the policy's DNS name), as ``curl --cacert`` would. Returns the answer and the leaf (DER)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_path))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        leaf = tls.getpeercert(binary_form=True) or b""
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_RESPONSE:
            try:
                data = tls.recv(4096)
            except ssl.SSLZeroReturnError:
                break
            if not data:
                break
            chunks.append(data)
            size += len(data)
    return b"".join(chunks)[:_MAX_RESPONSE], leaf


@contextlib.contextmanager
def _temporary_directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="donjon-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_demo(options: DemoOptions | None = None, *, out: IO[str] | None = None) -> int:
    """Run the demo, printing each step on ``out`` (default stdout). 0 on success; raises
    :class:`DemoFailed` with the failed step's reason."""
    options = options or DemoOptions()
    stream = out or sys.stdout
    started = time.monotonic()

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    if options.backend not in ("sim-snp", "sim-tdx"):
        raise DemoFailed(
            f"the demo runs on a simulated backend (sim-snp or sim-tdx), not {options.backend!r}"
        )
    module = demo_module("http")

    from cryptography import x509

    from donjon.config import parse_config, workload_digest
    from donjon.demo.steward import DEMO_CLAIMS_OID, LocalSteward, WorkloadRule, demo_policy
    from donjon.peer import PeerExpectation, PeerRefused, PeerUnreachable, fetch_peer_chain, verify_peer
    from donjon.peer.verify import check_identity

    vendor = "SNP (AMD)" if options.backend == "sim-snp" else "TDX (Intel)"
    say(f"Donjon demo: a local Steward, the http example in an attested {options.backend} Keep, a client")
    say("that verifies it. Everything on 127.0.0.1, in a temporary directory removed at the end.")
    say()
    with _temporary_directory() as tmp:
        vendor_dir = tmp / "sim-vendor"
        keep_dir = tmp / "keep"
        keep_dir.mkdir()
        (keep_dir / "http.wasm").write_bytes(module)
        port = _free_port()

        # The policy names the workload digest, which covers the config, which names the
        # Steward's URL: so the Steward's port is chosen first, then the policy written.
        steward = LocalSteward(keep_dir / "steward", sim_vendor_dir=vendor_dir, policy=demo_policy([]))
        with steward:
            config_path = keep_dir / "Donjon.toml"
            config_path.write_text(_config_text(port, steward.url))
            config = parse_config(config_path.read_bytes(), origin=str(config_path)).config
            digest = workload_digest(module, config)
            steward.set_policy(demo_policy([WorkloadRule(digest, SPIFFE_PATH)]))
            expected_id = f"spiffe://{steward.trust_domain}/sim{SPIFFE_PATH}"
            say("[1/5] Steward started")
            say(f"      url              {steward.url}")
            say(f"      CA (SHA-256)     {steward.ca_fingerprint}")
            say(f"      trusts           the SIMULATED {vendor} vendor - demo only, never in production")
            say("                       (root in the Steward's [roots] simulated; allow_simulated)")
            say(f"      policy           workload {digest.hex()[:16]}... -> {expected_id}")
            say()

            argv = [
                sys.executable,
                "-m",
                "donjon",
                "run",
                "--backend",
                options.backend,
                "--sim-vendor",
                str(vendor_dir),
                "--no-cache",
                "--verbose",
                "--config",
                str(config_path),
                str(keep_dir / "http.wasm"),
            ]
            say(
                f"[2/5] Keep starting on {options.backend}: donjon run --backend {options.backend} "
                f"--config Donjon.toml http.wasm"
            )
            say(f"      workload digest  {digest.hex()}")
            shown = 0

            def show_keep_log() -> None:
                nonlocal shown
                if options.show_keep_log:
                    for line in keep.log[shown:]:
                        say(f"      keep | {_shorten(line)}")
                shown = len(keep.log)

            keep = _KeepProcess(argv)
            try:
                keep.started()
                try:
                    keep.wait_for("listening", options.step_timeout)
                finally:
                    show_keep_log()
                entries = [e for e in steward.log_entries() if e.get("decision") == "issued"]
                if not entries:
                    raise DemoFailed("the Keep listens but the Steward's log records no certificate")
                issued = entries[-1]
                say()
                say("[3/5] Certificate issued by the Steward (from its decision log)")
                say(f"      SPIFFE ID        {issued.get('spiffe_id')}")
                say(f"      serial           {issued.get('serial')}")
                say(f"      expires          {issued.get('not_after')}")
                say(
                    f"      evidence         {issued.get('evidence_kind')} (simulated), nonce-fresh, bound "
                    "to the Keep's key and the workload digest"
                )
                say()

                ca = tuple(x509.load_pem_x509_certificates(steward.ca_pem))
                expectation = PeerExpectation.of(
                    [expected_id], workload_digest=digest, claims_oid=DEMO_CLAIMS_OID
                )
                try:
                    session = fetch_peer_chain("127.0.0.1", port, timeout=options.step_timeout)
                    identity = verify_peer(session.chain, ca, expectation, at=datetime.now(UTC))
                except PeerUnreachable as e:
                    raise DemoFailed(f"the client cannot reach the Keep: {e}") from e
                except PeerRefused as e:
                    raise DemoFailed(f"the client REFUSED the Keep: {e}") from e
                claims = dict(identity.claims.values) if identity.claims is not None else {}
                say("[4/5] Client verified the Keep (trusting only the Steward CA; as 'donjon peer verify')")
                say(
                    f"      TLS              {session.version} {session.cipher}, group {session.group or '?'}"
                )
                say(f"      chain            {len(session.chain)} certificate(s) -> Steward CA: OK")
                say(f"      SPIFFE ID        {identity.spiffe_id}: OK (expected)")
                say(
                    f"      workload digest  {claims.get('workload_digest')}: OK (= the digest computed here)"
                )
                say(
                    f"      TEE              {claims.get('tee')} SIMULATED, measurement "
                    f"{str(claims.get('measurement'))[:16]}..., TCB {claims.get('tcb_status')}"
                )
                say()

                try:
                    answer, leaf_der = _https_get(port, steward.ca_path, options.step_timeout)
                except (OSError, ssl.SSLError) as e:
                    raise DemoFailed(f"the HTTPS request to the Keep failed: {e}") from e
                try:
                    check_identity(x509.load_der_x509_certificate(leaf_der), expectation)
                except (PeerRefused, ValueError) as e:
                    raise DemoFailed(f"the HTTPS connection's certificate is not the Keep's: {e}") from e
                head, _, body = answer.partition(b"\r\n\r\n")
                status = head.split(b"\r\n", 1)[0].decode("ascii", "replace")
                if not status.startswith("HTTP/1.1 200"):
                    raise DemoFailed(f"the Keep answered {status!r}")
                say("[5/5] HTTPS GET / (certificate checked against the Steward CA and its SPIFFE ID)")
                say(f"      {status}")
                for line in body.decode("utf-8", "replace").strip().splitlines():
                    say(f"      | {line}")
                say()
                if options.show_keep_log and len(keep.log) > shown:
                    say("      The Keep's log of those connections:")
                    show_keep_log()
                    say()
            finally:
                keep.stop()
        say(f"Shut down: Keep stopped (signal), Steward stopped, {tmp} removed.")
    say(
        f"Demo OK in {time.monotonic() - started:.1f} s: the client verified that the Keep runs the workload "
        "it expected,"
    )
    say("on a TEE the Steward's policy accepts - here a SIMULATED one. Try a real one: donjon platform info")
    return 0
