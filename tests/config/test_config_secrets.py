"""``[[secrets]]`` and ``secrets_dir`` in the workload config: validation, digest, where the fd goes."""

from __future__ import annotations

import pytest

from donjon.config import ConfigError, parse_config, workload_digest

STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
LISTEN = '[[files]]\nkind = "listen"\nname = "web"\nport = 8443\nprot = "tls"\n'


def _config(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text).config


def test_the_secrets_directory_comes_before_the_first_socket_and_fd_names_say_so() -> None:
    config = _config(STDIO + LISTEN + '[[secrets]]\nname = "db-password"\nenv = "DB_PASSWORD"\n')
    assert config.secrets_fd == 3
    assert config.fd_names == ("stdin", "stdout", "stderr", "/run/secrets", "web")
    assert dict(config.guest_env())["FD_NAMES"] == "stdin:stdout:stderr:/run/secrets:web"
    assert config.secrets[0].env == "DB_PASSWORD" and not config.secrets[0].optional


def test_secrets_are_part_of_the_digest_and_a_config_without_them_keeps_its_digest() -> None:
    module = b"\0asm\1\0\0\0"
    plain = workload_digest(module, _config(STDIO))
    assert plain == workload_digest(module, _config("# no secrets\n" + STDIO))
    one = workload_digest(module, _config(STDIO + '[[secrets]]\nname = "a"\n'))
    optional = workload_digest(module, _config(STDIO + '[[secrets]]\nname = "a"\noptional = true\n'))
    moved = workload_digest(module, _config('secrets_dir = "/s"\n' + STDIO + '[[secrets]]\nname = "a"\n'))
    assert len({plain, one, optional, moved}) == 4


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (STDIO + '[[secrets]]\nname = "../etc/passwd"\n', "A-Z a-z"),
        (STDIO + '[[secrets]]\nname = ".."\n', "only dots"),
        (STDIO + '[[secrets]]\nname = "a"\n[[secrets]]\nname = "a"\n', "twice"),
        (STDIO + '[[secrets]]\nname = "a"\ncolour = 1\n', "unknown key"),
        (STDIO + '[[secrets]]\nname = "a"\nenv = "FD_COUNT"\n', "cannot be"),
        ('[env]\nX = "1"\n' + STDIO + '[[secrets]]\nname = "a"\nenv = "X"\n', "already set"),
        ('secrets_dir = "run/secrets"\n' + STDIO + '[[secrets]]\nname = "a"\n', "absolute"),
        (LISTEN + '[[secrets]]\nname = "a"\n', "fd 3"),
    ],
)
def test_bad_secrets_entries_are_refused_with_their_line(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert words in str(e.value)
    assert e.value.line is not None
