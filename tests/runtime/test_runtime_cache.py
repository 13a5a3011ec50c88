"""The compiled-module cache: hits are fast, and wasmtime never deserialises bytes we did not write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import wasmtime

from donjon.runtime import CacheOutcome, CacheUnavailable, EngineSettings, ModuleCache, cache_key
from donjon.runtime.cache import ENTRY_MAGIC

WAT = """
(module
  (memory (export "memory") 1)
  (func (export "answer") (result i32) i32.const 42))
"""


@pytest.fixture
def wasm() -> bytes:
    return wasmtime.wat2wasm(WAT)


@pytest.fixture
def engine() -> wasmtime.Engine:
    return EngineSettings().make_engine()


def answer(engine: wasmtime.Engine, module: wasmtime.Module) -> int:
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, module, [])
    func = instance.exports(store)["answer"]
    assert isinstance(func, wasmtime.Func)
    result = func(store)
    assert isinstance(result, int)
    return result


def load(cache: ModuleCache, engine: wasmtime.Engine, wasm: bytes, fingerprint: str = "fp") -> CacheOutcome:
    import hashlib

    module, outcome = cache.load_or_compile(engine, wasm, hashlib.sha256(wasm).digest(), fingerprint)
    assert answer(engine, module) == 42
    return outcome


def entry_path(cache: ModuleCache, wasm: bytes, fingerprint: str = "fp") -> Path:
    import hashlib

    return cache.path / (cache_key(hashlib.sha256(wasm).digest(), fingerprint) + ".cwasm")


def test_miss_then_hit(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    with ModuleCache.open(tmp_path / "c") as cache:
        assert load(cache, engine, wasm) is CacheOutcome.MISS
        assert load(cache, engine, wasm) is CacheOutcome.HIT
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "c" / "hmac-key").stat().st_mode & 0o777 == 0o600
    assert entry_path(cache, wasm).stat().st_mode & 0o777 == 0o600


def test_engine_fingerprint_is_part_of_the_key(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    with ModuleCache.open(tmp_path) as cache:
        assert load(cache, engine, wasm, "wasmtime-A") is CacheOutcome.MISS
        assert load(cache, engine, wasm, "wasmtime-B") is CacheOutcome.MISS
        assert load(cache, engine, wasm, "wasmtime-A") is CacheOutcome.HIT


def test_real_fingerprint_names_the_wasmtime_build() -> None:
    fingerprint = EngineSettings().fingerprint()
    assert "wasmtime-" in fingerprint and "cranelift_opt_level=speed" in fingerprint
    assert EngineSettings(cranelift_opt_level="none").fingerprint() != fingerprint


@pytest.mark.parametrize("where", ["payload", "tag", "magic"])
def test_corrupted_entry_is_recompiled_not_loaded(
    tmp_path: Path, engine: wasmtime.Engine, wasm: bytes, where: str
) -> None:
    with ModuleCache.open(tmp_path) as cache:
        load(cache, engine, wasm)
        path = entry_path(cache, wasm)
        data = bytearray(path.read_bytes())
        offset = {"magic": 0, "tag": len(ENTRY_MAGIC) + 3, "payload": len(data) - 100}[where]
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
        assert load(cache, engine, wasm) is CacheOutcome.REJECTED
        # The rejected entry was replaced by a fresh, authentic one.
        assert load(cache, engine, wasm) is CacheOutcome.HIT


def test_truncated_entry_is_recompiled(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    with ModuleCache.open(tmp_path) as cache:
        load(cache, engine, wasm)
        path = entry_path(cache, wasm)
        path.write_bytes(path.read_bytes()[:10])
        assert load(cache, engine, wasm) is CacheOutcome.REJECTED


def test_foreign_entry_is_never_loaded(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    # An entry written by another cache (another user's key) is a perfectly valid wasmtime
    # artifact: only the HMAC tells it apart, and it must be rejected.
    with ModuleCache.open(tmp_path / "other") as other:
        load(other, engine, wasm)
        foreign = entry_path(other, wasm).read_bytes()
    with ModuleCache.open(tmp_path / "mine") as cache:
        entry_path(cache, wasm).write_bytes(foreign)
        assert load(cache, engine, wasm) is CacheOutcome.REJECTED
        assert entry_path(cache, wasm).read_bytes() != foreign


def test_entry_moved_to_another_key_is_rejected(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    other = wasmtime.wat2wasm(WAT.replace("42", '42) (func (export "x")'))
    with ModuleCache.open(tmp_path) as cache:
        load(cache, engine, wasm)
        # Same cache, same key: but the tag binds the entry's name, so a copy under another
        # module's name is not that module.
        entry_path(cache, other).write_bytes(entry_path(cache, wasm).read_bytes())
        import hashlib

        module, outcome = cache.load_or_compile(engine, other, hashlib.sha256(other).digest(), "fp")
        assert outcome is CacheOutcome.REJECTED
        assert {e.name for e in module.exports} == {"memory", "answer", "x"}


def test_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.mkdir(mode=0o700)
    path.chmod(0o777)
    with pytest.raises(CacheUnavailable, match="others may write"):
        ModuleCache.open(path)
    path.chmod(0o720)
    with pytest.raises(CacheUnavailable, match="others may write"):
        ModuleCache.open(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_directory_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.mkdir(mode=0o700)
    os.chown(path, 12345, -1)
    with pytest.raises(CacheUnavailable, match="owned by uid 12345"):
        ModuleCache.open(path)


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(CacheUnavailable):
        ModuleCache.open(tmp_path / "link")


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ModuleCache.open(tmp_path).close()
    (tmp_path / "hmac-key").chmod(0o644)
    with pytest.raises(CacheUnavailable, match="cache key"):
        ModuleCache.open(tmp_path)


def test_key_of_wrong_size_is_refused(tmp_path: Path) -> None:
    ModuleCache.open(tmp_path).close()
    (tmp_path / "hmac-key").write_bytes(b"short")
    with pytest.raises(CacheUnavailable, match="32-byte"):
        ModuleCache.open(tmp_path)


def test_key_is_stable_across_opens(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    with ModuleCache.open(tmp_path) as cache:
        assert load(cache, engine, wasm) is CacheOutcome.MISS
    with ModuleCache.open(tmp_path) as cache:
        assert load(cache, engine, wasm) is CacheOutcome.HIT


def test_size_is_bounded(tmp_path: Path, engine: wasmtime.Engine) -> None:
    modules = [wasmtime.wat2wasm(WAT.replace("42", f'42) (func (export "f{i}")')) for i in range(4)]
    with ModuleCache.open(tmp_path) as cache:
        load(cache, engine, modules[0])
        one = entry_path(cache, modules[0]).stat().st_size
        cache.max_bytes = 2 * one + one // 2
        for module in modules[1:]:
            load(cache, engine, module)
        entries = sorted(p.name for p in tmp_path.glob("*.cwasm"))
        assert len(entries) == 2
        assert entry_path(cache, modules[-1]).exists()
        assert not entry_path(cache, modules[0]).exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_closed_cache_is_a_clear_error(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    cache = ModuleCache.open(tmp_path)
    cache.close()
    cache.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        load(cache, engine, wasm)


def test_symlinked_entry_is_not_followed(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    # Even an authentic entry is not read through a symlink: only files in the directory count.
    with ModuleCache.open(tmp_path / "a") as cache:
        load(cache, engine, wasm)
        real = entry_path(cache, wasm)
        moved = tmp_path / "elsewhere.cwasm"
        real.rename(moved)
        real.symlink_to(moved)
        assert load(cache, engine, wasm) is CacheOutcome.REJECTED
        assert not real.is_symlink()


def test_fifo_entry_does_not_hang(tmp_path: Path, engine: wasmtime.Engine, wasm: bytes) -> None:
    with ModuleCache.open(tmp_path) as cache:
        os.mkfifo(entry_path(cache, wasm))
        assert load(cache, engine, wasm) is CacheOutcome.REJECTED
        assert load(cache, engine, wasm) is CacheOutcome.HIT
