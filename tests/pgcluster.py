"""Throwaway PostgreSQL 15 cluster with pg_cron for tests.

The cluster listens on 127.0.0.1 only, on a free port, and keeps its data directory, Unix socket
and server log in one temporary directory that `PgCronCluster.stop` removes. initdb and pg_ctl
refuse to run as root, so when the tests run as root every server command runs as the `postgres`
OS user through `runuser`, and the temporary directory is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
SERVER_OS_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "postgres"
LOG_TAIL_LINES = 30
PG_CTL_TIMEOUT_SECONDS = 60

# pg_cron runs in libpq mode (cron.use_background_workers=off): its scheduler opens a normal
# client connection for every run. Its default cron.host is 'localhost', whose address depends on
# /etc/hosts and may be ::1, where this server does not listen. So cron.host is set to the
# address the server listens on.
# initdb -A trust lets that connection in without a password.
CONFIG_TEMPLATE = """
# Added by tests/pgcluster.py
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 50
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_cron'
cron.database_name = '{database}'
cron.use_background_workers = off
cron.host = '127.0.0.1'
"""


class PgClusterError(RuntimeError):
    """A server command for the test cluster failed."""


def free_tcp_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    NOTE: another process can take the port between this call and the server's bind. The server
    then fails to start, and the error shows the server log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCronCluster:
    """PostgreSQL cluster with the pg_cron extension created in database `postgres`.

    Call `start` and `stop`, or use the object as a context manager. `bindir` defaults to the
    PG_BINDIR environment variable, then to the Debian location of PostgreSQL 15.
    """

    def __init__(self, bindir: str | None = None) -> None:
        self.bindir = Path(bindir or os.environ.get("PG_BINDIR") or DEFAULT_BINDIR)
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._as_server_user = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        return self._require_base_dir() / "data"

    @property
    def log_file(self) -> Path:
        return self._require_base_dir() / "server.log"

    @property
    def dsn(self) -> str:
        """Connection URI for the superuser `postgres` over TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self._require_port()}/{DATABASE}"

    def start(self) -> PgCronCluster:
        """Create the cluster, start the server and create the pg_cron extension.

        Raises PgClusterError with the command output and the end of the server log when a step
        fails. The temporary directory is removed in that case.
        """
        if self.base_dir is not None:
            raise PgClusterError(f"cluster already started in {self.base_dir}")

        self.base_dir = Path(tempfile.mkdtemp(prefix="pgcron-test-"))
        self.port = free_tcp_port()
        try:
            if self._as_server_user:
                server_user = pwd.getpwnam(SERVER_OS_USER)
                os.chown(self.base_dir, server_user.pw_uid, server_user.pw_gid)

            self._run(
                "initdb",
                f"--pgdata={self.data_dir}",
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
                # Skips fsync of the new files: the cluster is thrown away after the tests.
                "--no-sync",
            )
            self._append_config()
            self._pg_ctl("start")

            self._create_extension()
        except BaseException:
            self.stop()
            raise

        return self

    def stop(self) -> None:
        """Stop the server without a checkpoint and remove the temporary directory.

        Safe to call more than once and after a failed `start`.
        """
        if self.base_dir is None:
            return

        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    "pg_ctl", "stop", f"--pgdata={self.data_dir}", "--mode=immediate", "--wait"
                )
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
            self.port = None

    def restart(self) -> None:
        """Restart the server, for tests of what pg_cron does after a restart.

        The fast shutdown terminates open connections, so callers must reconnect.
        """
        self._pg_ctl("restart", "--mode=fast")

    def stop_server(self) -> None:
        """Stop the server but keep the cluster, for tests of a database that is down."""
        self._pg_ctl("stop", "--mode=fast")

    def start_server(self) -> None:
        """Start the server again after `stop_server`, on the same port and data."""
        self._pg_ctl("start")

    def connect(self) -> psycopg.Connection[TupleRow]:
        """Open an autocommit connection as the superuser."""
        return psycopg.connect(self.dsn, autocommit=True)

    def create_role(self, name: str, password: str) -> str:
        """Create a LOGIN role and return a connection URI for it.

        NOTE: the cluster uses trust authentication, so the server accepts any password. The
        password is stored on the role so that code which sends it has a real value to send.
        """
        statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
        with self.connect() as conn:
            conn.execute(statement)

        credentials = f"{quote(name, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{credentials}@127.0.0.1:{self._require_port()}/{DATABASE}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last `lines` lines of the server log, or a note when there is no log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except (FileNotFoundError, PgClusterError):
            return "(no server log written)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PgCronCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _append_config(self) -> None:
        settings = CONFIG_TEMPLATE.format(
            port=self._require_port(), socket_dir=self._require_base_dir(), database=DATABASE
        )
        # The file belongs to the server user, and root may append to it without changing that.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def _create_extension(self) -> None:
        try:
            with self.connect() as conn:
                conn.execute("CREATE EXTENSION pg_cron")
        except psycopg.Error as exc:
            raise PgClusterError(
                f"CREATE EXTENSION pg_cron failed: {exc}\n"
                f"--- last {LOG_TAIL_LINES} lines of {self.log_file} ---\n{self.log_tail()}"
            ) from exc

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            "pg_ctl",
            action,
            f"--pgdata={self.data_dir}",
            f"--log={self.log_file}",
            "--wait",
            f"--timeout={PG_CTL_TIMEOUT_SECONDS}",
            *options,
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]

        # The working directory must be readable by the server user, and the caller's may not be.
        result = subprocess.run(
            command,
            cwd=self._require_base_dir(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"{' '.join(command)} failed with exit code {result.returncode}\n"
                f"--- output ---\n{result.stdout}{result.stderr}"
                f"--- last {LOG_TAIL_LINES} lines of {self.log_file} ---\n{self.log_tail()}"
            )

    def _require_base_dir(self) -> Path:
        if self.base_dir is None:
            raise PgClusterError("cluster is not started: call start() first")
        return self.base_dir

    def _require_port(self) -> int:
        if self.port is None:
            raise PgClusterError("cluster is not started: call start() first")
        return self.port
