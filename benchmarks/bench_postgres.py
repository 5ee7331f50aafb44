"""The send benchmark with the ledger on PostgreSQL: SQLite against PostgreSQL, one sender
and two, against Postfix's smtp-source into the same smtp-sink.

    make bench                        # run.py, then this
    .venv/bin/python benchmarks/bench_postgres.py [--n 50000] [--rounds 5] [--senders 1|2]

Issue 18 moves the ledger into PostgreSQL so that several hosts can share one campaign.
Every message costs ledger statements (a claim marks rows ``sending``, the answers are
written back), and on PostgreSQL each statement is a round trip to a server that shares
this machine's two cores, where SQLite is a library call. This bench says what that
costs, in the same run as the reference, because the machine is shared and its speed
swings by a factor of two within minutes (compare ratios, not msg/s across runs).

Each round, against one ``smtp-sink`` on 127.0.0.1 (sink A):

(a) ``smtp-source -s 16 -d`` with a message of the same size (the reference);
(b) ``digest-mail send`` with the ledger on SQLite (``var/ledger.sqlite3``, WAL);
(p) the same send with the ledger on PostgreSQL (``DIGEST_MAIL_LEDGER_URL`` and
    ``DIGEST_MAIL_LEDGER_PASSWORD``: the password never on a command line), a new empty
    database each round, so the first open sets the schema up, as on a new deployment;
(q) two ``digest-mail send`` processes on one campaign, as two hosts would run them: each
    in its own copy of the workspace, the same PostgreSQL database, each with its own
    relay (sink A and a second smtp-sink, B, via ``DIGEST_MAIL_SMTP_URL``), started
    together. Their combined rate is the messages the ledger holds as sent over the wall
    time from the first start to the last exit.

(b) and (p) swap places every round, so a burst of someone else's load hits both alike.
Printed per round and as the median (and the spread) of the rounds: msg/s, the ratios
PostgreSQL / SQLite and each / smtp-source, the send's own CPU per message and the
PostgreSQL server's CPU per message (the postmaster's and its reaped backends' time from
``/proc``). Never fails on a time.

The server is the test suite's own (``tests/pgserver.py``: Debian's binaries, ``initdb``
into a temporary folder, loopback only, as an unprivileged user when root); the bench
imports it from ``tests/`` rather than keeping a second copy. Like the suite's, it runs
with ``fsync`` and ``synchronous_commit`` off, which is close to the SQLite ledger's
``synchronous=NORMAL`` in WAL mode (neither waits for the disk at commit);
``--durable`` turns both back on (a commit then waits for its WAL flush).
Without PostgreSQL installed the bench says why and exits 0 (``make system-deps``
installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import run as base  # benchmarks/run.py: the sink, the workspace, the reference

sys.path.insert(0, str(base.REPO / "tests"))  # tests/pgserver.py, the suite's own server

import pgserver

TICKS = os.sysconf("SC_CLK_TCK")


# --- PostgreSQL --------------------------------------------------------------------------


class BenchServer(pgserver.PostgresServer):
    """The suite's server; with ``durable``, commits wait for their WAL flush again."""

    def __init__(self, *, durable: bool) -> None:
        super().__init__()
        self.durable = durable

    def _configure(self) -> None:
        super()._configure()
        if self.durable:
            with (self.data / "suite.conf").open("a", encoding="utf-8") as conf:
                conf.write("fsync = 'on'\nsynchronous_commit = 'on'\nfull_page_writes = 'on'\n")

    def cpu_seconds(self) -> float:
        """CPU time of the server: the postmaster, its exited (reaped) backends and the
        background processes still running."""
        pid = self.postmaster_pid()
        total = _proc_cpu(pid, children=True)
        for child in _children(pid):
            total += _proc_cpu(child, children=False)
        return total / TICKS


def _proc_cpu(pid: int, *, children: bool) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[11..14]: utime, stime, cutime, cstime (proc(5), counted from field 3)
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(p) for p in text.split()]


def ledger_env(sink: base.Sink, db: pgserver.Database) -> dict[str, str]:
    env = base.send_env(sink)
    env["DIGEST_MAIL_LEDGER_URL"] = db.url
    env["DIGEST_MAIL_LEDGER_PASSWORD"] = db.password  # the environment, never argv
    return env


def pg_query(db: pgserver.Database, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(db.url, password=db.password, sslmode="disable") as conn:
        return list(conn.execute(sql).fetchall())


def phase_seconds(started: str | None, finished: str | None) -> float | None:
    from datetime import datetime

    if not started or not finished:
        return None
    span = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    return max(1.0, span.total_seconds())


# --- one measured run -----------------------------------------------------------------


@dataclass
class Run:
    """One send (or a pair of them): what went out, how long it took, the CPU it used."""

    sent: int
    seconds: float
    cpu: float  # the send processes' own user + system seconds
    server_cpu: float | None = None  # PostgreSQL's, when on PostgreSQL
    phase: float | None = None  # the campaign's started_at → finished_at
    per_sender: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    def describe(self) -> str:
        text = f"{self.rate:8.0f} msg/s  ({self.sent} sent in {self.seconds:.1f} s"
        if self.phase is not None:
            text += f"; after start-up ~{self.sent / self.phase:.0f} msg/s"
        text += f"; send CPU {self.cpu / max(1, self.sent) * 1e6:.0f} µs/msg"
        if self.server_cpu is not None:
            text += f", server CPU {self.server_cpu / max(1, self.sent) * 1e6:.0f} µs/msg"
        return text + ")"


def _send_command(concurrency: int) -> list[str]:
    return [
        base.PY,
        *("-m", "digest_mail", "send", "--list", "bench", "--yes", "--json"),
        *("--concurrency", str(concurrency)),
    ]


def _start(
    command: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen[bytes], Any, Any]:
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err), out, err


def _finish(
    started: list[tuple[subprocess.Popen[bytes], Any, Any]],
) -> tuple[float, list[tuple[int, str, str]]]:
    """Wait for every process; (their user + system CPU, [(exit code, stdout, stderr)])."""
    cpu = 0.0
    outcomes = []
    for process, out, err in started:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        with out, err:
            out.seek(0)
            err.seek(0)
            outcomes.append(
                (
                    process.returncode,
                    out.read().decode("utf-8", "replace"),
                    err.read().decode("utf-8", "replace"),
                )
            )
    return cpu, outcomes


def _failure(outcomes: list[tuple[int, str, str]]) -> str:
    for code, _, stderr in outcomes:
        if code != 0:
            # The error's one line, not the hint under it.
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            said = [line for line in lines if not line.startswith("Hint:")] or lines
            return f"exit {code}: {said[-1] if said else 'no message'}"
    return ""


def send_sqlite(sink: base.Sink, root: Path, concurrency: int) -> Run:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'var' / 'ledger.sqlite3'}{suffix}").unlink(missing_ok=True)
    start = time.perf_counter()
    started = [_start(_send_command(concurrency), base.send_env(sink), root)]
    cpu, outcomes = _finish(started)
    seconds = time.perf_counter() - start
    error = _failure(outcomes)
    if error:
        raise SystemExit(f"digest-mail send (SQLite ledger) failed: {error}")
    report = json.loads(outcomes[0][1])
    return Run(int(report["sent"]), seconds, cpu, phase=base.send_phase_seconds(root))


def send_postgres(
    server: BenchServer, pairs: list[tuple[base.Sink, Path]], concurrency: int
) -> Run:
    """One send process per (sink, workspace), all at once, on one new database."""
    db = server.create_database()
    try:
        server_before = server.cpu_seconds()
        start = time.perf_counter()
        started = [
            _start(_send_command(concurrency), ledger_env(sink, db), root) for sink, root in pairs
        ]
        cpu, outcomes = _finish(started)
        seconds = time.perf_counter() - start
        server_cpu = server.cpu_seconds() - server_before
        error = _failure(outcomes)
        if error and len(pairs) == 1:
            raise SystemExit(f"digest-mail send (PostgreSQL ledger) failed: {error}")
        # What the ledger holds, not what each process says: the combined figure counts
        # every address once, whoever sent it.
        rows = pg_query(
            db,
            "SELECT COALESCE(NULLIF(sender, ''), '-'), COUNT(*) FROM deliveries "
            "WHERE state = 'sent' GROUP BY 1 ORDER BY 1",
        )
        times = pg_query(db, "SELECT MIN(started_at), MAX(finished_at) FROM campaigns")
    finally:
        server.drop_database(db.name)
    per_sender = {str(name): int(count) for name, count in rows}
    return Run(
        sum(per_sender.values()),
        seconds,
        cpu,
        server_cpu=server_cpu,
        phase=phase_seconds(*times[0]) if times else None,
        per_sender=per_sender,
        error=error,
    )


# --- the rounds --------------------------------------------------------------------------


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    median = statistics.median(values)
    return (
        f"{fmt.format(median)} (min {fmt.format(min(values))}, max {fmt.format(max(values))}; "
        + ", ".join(fmt.format(v) for v in values)
        + ")"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per send")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--sessions", type=int, default=16, help="smtp-source -s (sessions)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="send --concurrency (default: --sessions)"
    )
    parser.add_argument(
        "--senders",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 (default) adds two senders on one campaign; 1 measures one sender only",
    )
    parser.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
    parser.add_argument("--quick", action="store_true", help="one short round")
    args = parser.parse_args(argv)
    concurrency = args.concurrency or args.sessions
    if args.quick:
        args.rounds, args.n = 1, min(args.n, 5_000)
    why = pgserver.unavailable()
    if why is not None:
        print(f"PostgreSQL ledger bench skipped: {why}")
        return 0
    for tool in (base.SINK, base.SOURCE):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: run 'make system-deps' (Debian package postfix)")
            return 1

    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))
        print(f"  {label:<52} {value}", flush=True)

    with tempfile.TemporaryDirectory(prefix="digest-mail-bench-pg-") as tmp:
        base.use_bytecode(Path(tmp) / "pycache")
        root = Path(tmp) / "ws"
        root.mkdir()
        print(f"workspace {root}; composing the benchmark edition …", flush=True)
        base.make_workspace(root)
        message_file = Path(tmp) / "message.eml"
        message_file.write_bytes(base.sample_message(root).replace(b"\r\n", b"\n"))
        base.write_list(root / "subscribers" / "bench.csv", args.n)
        # The second host: a copy of the workspace, the same draft and list.
        second = Path(tmp) / "ws2"
        shutil.copytree(root, second, ignore=shutil.ignore_patterns("var"))
        kind = "durable (fsync on)" if args.durable else "fsync off, as the test suite's"
        print(f"starting PostgreSQL ({kind}) and two smtp-sinks", flush=True)
        with BenchServer(durable=args.durable) as server:
            sinks = [base.Sink(), base.Sink()]
            try:
                results = rounds(args, concurrency, server, sinks, [root, second], row)
            finally:
                for sink in sinks:
                    sink.stop()
        summarise(args, concurrency, results, row)

    print("\nsummary")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return 0


Results = dict[str, list[Any]]


def rounds(
    args: argparse.Namespace,
    concurrency: int,
    server: BenchServer,
    sinks: list[base.Sink],
    roots: list[Path],
    row: Any,
) -> Results:
    results: Results = {"source": [], "sqlite": [], "pg": [], "two": [], "two_vs_one": []}
    results["two_error"] = []
    two = args.senders == 2
    for number in range(1, args.rounds + 1):
        source = base.bench_smtp_source(
            sinks[0], Path(roots[0]).parent / "message.eml", args.n, args.sessions
        )
        results["source"].append(source)
        row(f"(a) round {number}: smtp-source -s {args.sessions} -d", f"{source:8.0f} msg/s")
        order = ["sqlite", "pg"] if number % 2 else ["pg", "sqlite"]
        for which in order:
            if which == "sqlite":
                run = send_sqlite(sinks[0], roots[0], concurrency)
                row(f"(b) round {number}: send, SQLite ledger", run.describe())
            else:
                run = send_postgres(server, [(sinks[0], roots[0])], concurrency)
                row(f"(p) round {number}: send, PostgreSQL ledger, one sender", run.describe())
            results[which].append(run)
        sqlite, pg = results["sqlite"][-1], results["pg"][-1]
        row(
            f"    round {number}: ratios",
            f"PG/SQLite {pg.rate / sqlite.rate:.2f}; SQLite/source {sqlite.rate / source:.2f}; "
            f"PG/source {pg.rate / source:.2f}",
        )
        if two:
            pair = send_postgres(server, list(zip(sinks, roots, strict=True)), concurrency)
            if pair.error:
                # What the ledger holds all the same: whether the other sender finished.
                row(
                    f"(q) round {number}: two senders, one campaign",
                    f"failed: {pair.error}; the ledger holds {pair.sent} of {args.n} sent "
                    f"after {pair.seconds:.1f} s",
                )
                results["two_error"].append(pair.error)
                if "another process" in pair.error:
                    row(
                        "(q) two senders", "refused: this version sends a campaign from one process"
                    )
                    two = False
                continue
            split = ", ".join(f"{name} {count}" for name, count in pair.per_sender.items())
            row(
                f"(q) round {number}: two senders, one campaign, combined",
                pair.describe() + f"  [{split}]",
            )
            row(
                f"    round {number}: ratios",
                f"two/one PG {pair.rate / pg.rate:.2f}; two/source {pair.rate / source:.2f}",
            )
            results["two"].append(pair)
            results["two_vs_one"].append(pair.rate / pg.rate)
    return results


def summarise(args: argparse.Namespace, concurrency: int, results: Results, row: Any) -> None:
    source, sqlite, pg, two = (results[k] for k in ("source", "sqlite", "pg", "two"))
    n = len(source)
    print()
    row(f"smtp-source -s {args.sessions}, {args.n} msgs, median of {n}", spread(source, "{:.0f}"))
    row(
        f"send, SQLite ledger, concurrency {concurrency}",
        spread([r.rate for r in sqlite], "{:.0f}") + " msg/s",
    )
    row("send, PostgreSQL ledger, one sender", spread([r.rate for r in pg], "{:.0f}") + " msg/s")
    row(
        "ratio PG / SQLite (per round)",
        spread([p.rate / s.rate for p, s in zip(pg, sqlite, strict=True)]),
    )
    row(
        "ratio SQLite / smtp-source",
        spread([s.rate / a for s, a in zip(sqlite, source, strict=True)]),
    )
    row("ratio PG / smtp-source", spread([p.rate / a for p, a in zip(pg, source, strict=True)]))
    row("send CPU µs/msg, SQLite", spread([r.cpu / r.sent * 1e6 for r in sqlite], "{:.0f}"))
    row("send CPU µs/msg, PostgreSQL", spread([r.cpu / r.sent * 1e6 for r in pg], "{:.0f}"))
    row(
        "PostgreSQL server CPU µs/msg",
        spread([(r.server_cpu or 0) / r.sent * 1e6 for r in pg], "{:.0f}"),
    )
    if two:
        row(
            f"two senders, combined ({len(two)} rounds)",
            spread([r.rate for r in two], "{:.0f}") + " msg/s",
        )
        row("ratio two senders / one (PG, same round)", spread(results["two_vs_one"]))
    elif args.senders == 2:
        why = results["two_error"][0] if results["two_error"] else "not run"
        row("two senders, combined", f"no figure: {why}")


if __name__ == "__main__":
    raise SystemExit(main())
