"""Input that production and SREs produce by accident: odd DSNs, absurd values, odd rows."""

from __future__ import annotations

import pytest
from pgcluster import free_tcp_port

from watchdog.config import mask_dsn
from watchdog.errors import SourceError
from watchdog.source import PgSource

# Each DSN makes libpq fail with a message that quotes the text around the
# password, or puts part of the password where the host or port goes.
_BROKEN_DSNS = {
    "percent escape": ("postgresql://u:Pw%zzSecret1@127.0.0.1:{port}/db", ["Pw%zzSecret1"]),
    "unencoded at": ("postgresql://u:Pw@localhost:HiddenPart2@127.0.0.1:{port}/db",
                     ["HiddenPart2"]),
    "space in keyword value": ("host=127.0.0.1 port={port} password=First3 Second3 user=u",
                               ["First3", "Second3"]),
    "escaped space": ("host=127.0.0.1 port={port} password=Esc4\\ aped4 user=u",
                      ["Esc4", "aped4"]),
    "slash in url password": ("postgresql://u:Sla5/shed5@127.0.0.1:{port}/db",
                              ["Sla5", "shed5"]),
}


@pytest.mark.parametrize("case", sorted(_BROKEN_DSNS))
def test_broken_dsn_error_hides_password(case: str) -> None:
    template, secrets = _BROKEN_DSNS[case]
    dsn = template.format(port=free_tcp_port())

    with pytest.raises(SourceError) as raised:
        source = PgSource(dsn, connect_timeout=1)
        with source.read_transaction():
            pass

    message = str(raised.value)
    for secret in secrets:
        assert secret not in message
    for secret in secrets:
        assert secret not in mask_dsn(dsn)
