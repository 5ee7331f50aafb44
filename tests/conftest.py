"""Shared fixtures: a copy of the sample workspace, a CLI runner."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from digest_mail.cli import cli
from digest_mail.config import Workspace, find_workspace

if TYPE_CHECKING:
    from pgserver import Database, PostgresServer
    from postfix import PostfixInstance

# The aiosmtpd test server (fixture smtp_server) of the delivery tests.
pytest_plugins = ["smtpserver"]

REPO = Path(__file__).resolve().parent.parent
WORKSPACE_ITEMS = ("digest-mail.toml", "articles", "templates", "subscribers")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's DIGEST_MAIL_* settings or secrets."""
    import os

    for name in list(os.environ):
        if name.startswith("DIGEST_MAIL_"):
            monkeypatch.delenv(name)


def copy_workspace(root: Path) -> Path:
    """Copy the repository's sample workspace into the new folder ``root``."""
    root.mkdir()
    for item in WORKSPACE_ITEMS:
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, root / item, symlinks=False)
        elif source.is_file():
            shutil.copy2(source, root / item)
    return root


# A domain that is not reserved for examples, for tests that need an identity of one's own.
OWN_DOMAIN = "chrysanthemum-digest.jp"


def use_own_identity(root: Path) -> None:
    """Move the sender, List-Id and unsubscribe links off the reserved example.jp."""
    path = root / "digest-mail.toml"
    text = path.read_text(encoding="utf-8")
    for old, new in (
        ("<digest@example.jp>", f"<digest@{OWN_DOMAIN}>"),
        ('"weekly.chrysanthemum-digest.example.jp"', f'"weekly.{OWN_DOMAIN}"'),
        ('"https://chrysanthemum-digest.example.jp/unsubscribe"', f'"https://{OWN_DOMAIN}/u"'),
        ('"unsubscribe@example.jp"', f'"unsubscribe@{OWN_DOMAIN}"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh copy of the repository's sample workspace; the current directory is it."""
    root = copy_workspace(tmp_path / "ws")
    monkeypatch.chdir(root)
    yield root


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixInstance]:
    """The suite's own Postfix (tests/postfix.py), one per session; skipped with the
    reason where it cannot run (not root, no postfix)."""
    import tempfile

    from postfix import PostfixInstance, unavailable

    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    # Not under pytest's owner-only temporary folder: Postfix's daemons run as the
    # postfix user and must reach the queue and the Maildirs.
    root = Path(tempfile.mkdtemp(prefix="digest-mail-postfix-"))
    root.chmod(0o755)
    instance = PostfixInstance(root / "instance")
    try:
        yield instance.start()
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The suite's own PostgreSQL (tests/pgserver.py), one per session, as an unprivileged
    user; skipped with the reason where it cannot run (no Debian postgresql, no psycopg)."""
    from pgserver import PostgresServer, unavailable

    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[Database]:
    """A new, empty database of the suite's PostgreSQL, dropped after the test: its
    ``url`` (no password), ``password`` and ``env()``."""
    database = postgres_server.create_database()
    yield database
    postgres_server.drop_database(database.name)


# The stages whose every test runs against both ledgers (issue 18): what is sent, resumed,
# killed and scheduled must keep its promises on SQLite and on PostgreSQL alike. Elsewhere
# a test asks for both by naming ``ledger_kind`` among its arguments.
BOTH_LEDGERS: tuple[str, ...] = ("delivery", "schedule")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    stage = Path(metafunc.definition.path).parent.name
    wanted = "ledger_kind" in metafunc.fixturenames
    if stage in BOTH_LEDGERS or wanted:
        if not wanted:
            metafunc.fixturenames.append("ledger_kind")
        metafunc.parametrize("ledger_kind", ["sqlite", "postgresql"])


@pytest.fixture(autouse=True)
def _ledger_environment(
    request: pytest.FixtureRequest, _clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test run with ``ledger_kind`` "postgresql" gets a fresh database of the suite's
    PostgreSQL as its workspace's ledger, through ``DIGEST_MAIL_LEDGER_URL`` and
    ``DIGEST_MAIL_LEDGER_PASSWORD`` (CLI subprocesses inherit them). A test about the
    SQLite file itself is marked ``sqlite_only``."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("ledger_kind") != "postgresql":
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about the SQLite ledger file itself")
    database = request.getfixturevalue("postgres_db")
    monkeypatch.setenv("DIGEST_MAIL_LEDGER_URL", database.url)
    monkeypatch.setenv("DIGEST_MAIL_LEDGER_PASSWORD", database.password)


@pytest.fixture
async def unsubscribe_endpoint(workspace: Path) -> AsyncIterator[tuple[str, Workspace]]:
    """The one-click endpoint served for real on 127.0.0.1: (its URL, the workspace)."""
    from aiohttp import web

    from digest_mail.audience.serve import make_app

    ws = find_workspace(workspace)
    runner = web.AppRunner(make_app(ws))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/unsubscribe", ws
    await runner.cleanup()


class FakeClock:
    """Monotonic time that jumps forward on sleep: backoff never waits on real time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Runner:
    """CliRunner bound to our command: ``run("compose", "--since", "7d")``."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return self.runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def run() -> Runner:
    return Runner()
