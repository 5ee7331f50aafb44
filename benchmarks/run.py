"""The send-path benchmark: digest-mail against Postfix's own load generator, same sink.

    make bench                        # installs postfix (smtp-sink, smtp-source), then this
    .venv/bin/python benchmarks/run.py [--n 50000] [--quick] [--prefix-seconds 60]

In one run, against one ``smtp-sink`` on 127.0.0.1:

(a) ``smtp-source -s 16 -d`` sending N copies of an equal-size message (the reference);
(b) ``digest-mail send`` end to end, as a real CLI process (ledger on, ``--yes``) to a
    generated list of N recipients, in a temporary copy of the sample workspace;
(c) their ratio;
(d) the per-recipient message build rate in-process (splicing builder vs the stdlib one);
(e) compose time of a 10-article edition (``benchmarks/bench_compose.py``);
(f) peak RSS of ``digest-mail send`` at 1,000 and 1,000,000 recipients.

The processes run with bytecode, as an installed package does: the editable install of a
checkout has none, and with PYTHONDONTWRITEBYTECODE set (as on this machine) every start
would compile the sources again (~0.1 s). The bench compiles them once into a cache in
its temporary folder (PYTHONPYCACHEPREFIX), never into the checkout.

Every figure is measured in this run: the machine is shared and noisy, so compare the
ratio, not absolute numbers with another day's. Prints a table; never fails on a time.

The 1,000,000-recipient run sends the whole list (about four minutes here);
``--prefix-seconds N`` stops it N seconds after the snapshot with SIGTERM, the clean stop
a scheduler would use, for a shorter run (``--quick`` does that with 5 s and 50,000).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
SENDER = "digest@example.jp"
BENCH_ARTICLE = "diet-election-reform.md"  # one article: a ~20 KB Japanese multipart message
FAMILY = ["山田", "鈴木", "佐藤", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "一郎", "美咲", "健太", "陽子", "翔", "愛", "大輔", "由美"]


# --- helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sink:
    """Postfix smtp-sink on 127.0.0.1, throwing every message away."""

    def __init__(self) -> None:
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [SINK, *user, f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit(f"smtp-sink did not start on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class ProcessResult:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stop_after: float | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> ProcessResult:
    """Run ``command``; wall time and the peak RSS of that process alone (wait4).

    With ``stop_after``, SIGTERM it that many seconds after ``stop_when()`` turns true.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        return _run_measured(command, env, cwd, stop_after, stop_when, out, err)


def _run_measured(
    command: list[str],
    env: dict[str, str] | None,
    cwd: Path | None,
    stop_after: float | None,
    stop_when: Callable[[], bool] | None,
    out: IO[bytes],
    err: IO[bytes],
) -> ProcessResult:
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
    # wait4, never poll(): poll() would reap the child and lose its rusage (peak RSS).
    armed_at: float | None = None
    stopped = stop_after is None
    while True:
        pid, status, usage = os.wait4(process.pid, 0 if stopped else os.WNOHANG)
        if pid:
            break
        if armed_at is None and (stop_when is None or stop_when()):
            armed_at = time.monotonic()
        if armed_at is not None and time.monotonic() - armed_at >= (stop_after or 0.0):
            process.send_signal(signal.SIGTERM)
            stopped = True
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return ProcessResult(
        seconds=seconds,
        max_rss_kb=usage.ru_maxrss,
        returncode=process.returncode,
        stdout=out.read().decode("utf-8", "replace"),
        stderr=err.read().decode("utf-8", "replace"),
    )


def use_bytecode(cache: Path) -> None:
    """Compiled sources for every process this bench starts, as after an install."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(REPO / "src" / "digest_mail")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def make_workspace(root: Path) -> None:
    """A copy of the repository's sample workspace with a one-article draft composed."""
    for item in ("digest-mail.toml", "articles", "templates", "subscribers"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, root / item)
        else:
            shutil.copy2(source, root / item)
    subprocess.run(
        [PY, "-m", "digest_mail", "compose", f"articles/{BENCH_ARTICLE}"],
        cwd=root,
        check=True,
        capture_output=True,
    )


def write_list(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("email,name,status\n")
        chunk = []
        for i in range(count):
            name = f"{FAMILY[i % 10]} {GIVEN[(i // 10) % 10]}"
            chunk.append(f"reader{i:07d}@example.jp,{name},subscribed\n")
            if len(chunk) == 10000:
                handle.write("".join(chunk))
                chunk.clear()
        handle.write("".join(chunk))


def sample_message(root: Path) -> bytes:
    """One recipient's message exactly as the send path builds it."""
    from digest_mail.config import find_workspace
    from digest_mail.mail.message import MessageTemplate
    from digest_mail.render.draft import latest_draft

    workspace = find_workspace(root)
    template = MessageTemplate(
        latest_draft(workspace), settings=workspace.settings, list_name="bench"
    )
    return template.render(
        to_address="reader0000001@example.jp",
        to_name="山田 太郎",
        unsubscribe_url="https://chrysanthemum-digest.example.jp/unsubscribe/" + "x" * 80,
        unsubscribe_mailto="mailto:unsubscribe@example.jp?subject=" + "x" * 80,
        message_id="<bench.0000001@example.jp>",
    )


# --- the measurements ------------------------------------------------------------------


def bench_smtp_source(sink: Sink, message_file: Path, n: int, sessions: int) -> float:
    result = run_measured(
        [
            SOURCE,
            "-s",
            str(sessions),
            "-d",
            "-m",
            str(n),
            "-F",
            str(message_file),
            "-f",
            SENDER,
            "-t",
            "reader@example.jp",
            f"127.0.0.1:{sink.port}",
        ]
    )
    if result.returncode != 0:
        raise SystemExit(f"smtp-source failed: {result.stderr.strip()}")
    return n / result.seconds


def send_env(sink: Sink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
    env["DIGEST_MAIL_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
    env["DIGEST_MAIL_SECRET"] = "bench-only-unsubscribe-signing-key-0123456789"
    return env


def bench_send(
    sink: Sink,
    root: Path,
    list_name: str,
    *,
    concurrency: int,
    extra: list[str] | None = None,
    stop_after: float | None = None,
) -> tuple[ProcessResult, dict[str, object]]:
    ledger = root / "var" / "ledger.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)

    def snapshot_done() -> bool:
        # The send phase has begun once the campaign row says 'sending'.
        if not ledger.exists():
            return False
        try:
            out = subprocess.run(
                [
                    PY,
                    "-c",
                    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=1);"
                    'print(c.execute("select state from campaigns").fetchone()[0])',
                    str(ledger),
                ],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except subprocess.TimeoutExpired:
            return False
        return out.stdout.strip() == "sending"

    command = [
        PY,
        "-m",
        "digest_mail",
        "send",
        "--list",
        list_name,
        "--yes",
        "--json",
        "--concurrency",
        str(concurrency),
        *(extra or []),
    ]
    result = run_measured(
        command,
        env=send_env(sink),
        cwd=root,
        stop_after=stop_after,
        stop_when=snapshot_done if stop_after is not None else None,
    )
    try:
        report = json.loads(result.stdout[result.stdout.index("{") :])
    except ValueError:
        report = {}
    if stop_after is None and result.returncode != 0:
        raise SystemExit(f"digest-mail send failed ({result.returncode}): {result.stderr[-2000:]}")
    return result, report


def send_phase_seconds(root: Path) -> float:
    """From the campaign's started_at to finished_at in the ledger (whole seconds): the
    run without starting Python and reading the configuration and draft. The snapshot
    is written while the first messages go out, so it is inside this span."""
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(root / "var" / "ledger.sqlite3") as db:
        started, finished = db.execute(
            "SELECT started_at, finished_at FROM campaigns WHERE list_name = 'bench'"
        ).fetchone()
    span = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    return max(1.0, span.total_seconds())


def bench_build(root: Path, count: int) -> dict[str, float]:
    """Per-recipient build cost in-process: what the send loop does before the socket."""
    from digest_mail.audience.unsubscribe import make_token, unsubscribe_mailto, unsubscribe_url
    from digest_mail.config import find_workspace
    from digest_mail.mail.message import MessageTemplate, build_message
    from digest_mail.render.draft import latest_draft
    from digest_mail.transport.wire import prepare_data

    os.environ["DIGEST_MAIL_SECRET"] = "bench-only-unsubscribe-signing-key-0123456789"
    workspace = find_workspace(root)
    settings = workspace.settings
    draft = latest_draft(workspace)
    from digest_mail.audience.unsubscribe import signing_key

    key = signing_key(workspace)
    template = MessageTemplate(draft, settings=settings, list_name="bench")
    addresses = [
        (f"reader{i:07d}@example.jp", f"{FAMILY[i % 10]} {GIVEN[i // 10 % 10]}")
        for i in range(count)
    ]

    def splice(prepare: bool, stuffed: bool = False) -> float:
        template.dot_stuffed = stuffed
        start = time.perf_counter()
        for address, name in addresses:
            token = make_token(key, "bench", address)
            data = template.render(
                to_address=address,
                to_name=name,
                unsubscribe_url=unsubscribe_url(settings, token),
                unsubscribe_mailto=unsubscribe_mailto(settings, token),
                message_id=f"<{address}.bench@example.jp>",
                date="Wed, 25 Nov 2026 22:00:00 +0000",
            )
            if prepare:
                prepare_data(data)
        return count / (time.perf_counter() - start)

    splice(False)  # warm-up
    spliced = statistics.median(splice(False) for _ in range(3))
    spliced_prepared = statistics.median(splice(True) for _ in range(3))
    # What the campaign does with the pipelining client: DATA form straight from the builder.
    spliced_stuffed = statistics.median(splice(True, stuffed=True) for _ in range(3))
    template.dot_stuffed = False
    data = template.render(
        to_address=addresses[0][0],
        to_name=addresses[0][1],
        unsubscribe_url="https://x.example.jp/u",
        unsubscribe_mailto="mailto:u@example.jp",
    )
    start = time.perf_counter()
    rounds = 2000
    for _ in range(rounds):
        prepare_data(data)
    prepare_us = (time.perf_counter() - start) / rounds * 1e6
    slow_count = max(50, count // 50)
    start = time.perf_counter()
    for address, name in addresses[:slow_count]:
        token = make_token(key, "bench", address)
        build_message(
            draft,
            settings=settings,
            to_address=address,
            to_name=name,
            list_name="bench",
            unsubscribe_url=unsubscribe_url(settings, token),
            unsubscribe_mailto=unsubscribe_mailto(settings, token),
        ).as_bytes()
    reference = slow_count / (time.perf_counter() - start)
    return {
        "spliced": spliced,
        "spliced_prepared": spliced_prepared,
        "spliced_stuffed": spliced_stuffed,
        "prepare_us": prepare_us,
        "reference": reference,
        "size": len(data),
    }


def bench_compose() -> str:
    script = REPO / "benchmarks" / "bench_compose.py"
    if not script.exists():
        return "benchmarks/bench_compose.py not present"
    result = subprocess.run([PY, str(script), "--runs", "5"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"bench_compose.py failed: {result.stderr.strip()[-300:]}"
    lines = result.stdout.splitlines()
    picked = [line.strip() for line in lines if re.search(r"compose \(all|CLI process", line)]
    return "; ".join(" ".join(p.split()) for p in picked) or result.stdout.strip()


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages for (a) and (b)")
    parser.add_argument("--sessions", type=int, default=16, help="smtp-source -s (sessions)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="send --concurrency (default: --sessions, as many connections as smtp-source)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating (a)/(b) rounds")
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--big", type=int, default=1_000_000, help="the large list for (f)")
    parser.add_argument(
        "--prefix-seconds",
        type=float,
        default=None,
        help="(f) large list: stop this many seconds after the snapshot (default: send all)",
    )
    parser.add_argument("--skip-compose", action="store_true")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        # The same number of SMTP sessions as the reference: a like-for-like ratio.
        args.concurrency = args.sessions
    if args.quick:
        args.rounds = 1
        args.n = min(args.n, 5_000)
        args.big = min(args.big, 50_000)
        args.prefix_seconds = min(args.prefix_seconds or 5.0, 5.0)
    for tool in (SINK, SOURCE):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: run 'make system-deps' (Debian package postfix)")
            return 1

    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))
        print(f"  {label:<58} {value}", flush=True)

    with tempfile.TemporaryDirectory(prefix="digest-mail-bench-") as tmp:
        use_bytecode(Path(tmp) / "pycache")
        root = Path(tmp) / "ws"
        root.mkdir()
        print(f"workspace {root}; composing the benchmark edition …", flush=True)
        make_workspace(root)
        message = sample_message(root)
        message_file = Path(tmp) / "message.eml"
        message_file.write_bytes(message.replace(b"\r\n", b"\n"))  # smtp-source adds the CRs
        write_list(root / "subscribers" / "bench.csv", args.n)
        write_list(root / "subscribers" / "small.csv", 1_000)
        print(f"message {len(message)} bytes; lists written; starting smtp-sink", flush=True)

        sink = Sink()
        try:
            # The machine is shared: alternate the two senders and take the median of
            # each round's ratio, so a burst of someone else's load hits both alike.
            ratios = []
            for round_number in range(1, args.rounds + 1):
                source_rate = bench_smtp_source(sink, message_file, args.n, args.sessions)
                row(
                    f"(a) round {round_number}: smtp-source -s {args.sessions} -d, {args.n} msgs",
                    f"{source_rate:8.0f} msg/s",
                )
                result, report = bench_send(sink, root, "bench", concurrency=args.concurrency)
                sent = int(report.get("sent", 0))  # type: ignore[call-overload]
                send_rate = sent / result.seconds
                phase = send_phase_seconds(root)
                row(
                    f"(b) round {round_number}: digest-mail send, {sent} recipients, "
                    f"concurrency {args.concurrency}",
                    f"{send_rate:8.0f} msg/s  ({result.seconds:.1f} s end to end, ledger on; "
                    f"after start-up ~{sent / phase:.0f} msg/s)",
                )
                ratios.append(send_rate / source_rate)
                row(f"(c) round {round_number}: ratio send / smtp-source", f"{ratios[-1]:8.2f}")
            row(
                f"(c) ratio, median of {args.rounds} rounds",
                f"{statistics.median(ratios):8.2f}  (rounds: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + ")",
            )

            small, small_report = bench_send(sink, root, "small", concurrency=args.concurrency)
            row(
                f"(f) peak RSS, send to 1,000 ({small_report.get('sent')} sent)",
                f"{small.max_rss_kb / 1024:8.1f} MB",
            )
            write_list(root / "subscribers" / "big.csv", args.big)
            stop = args.prefix_seconds
            big, big_report = bench_send(
                sink, root, "big", concurrency=args.concurrency, stop_after=stop
            )
            big_sent = int(big_report.get("sent", 0))  # type: ignore[call-overload]
            how = (
                f"all {big_sent:,} sent in {big.seconds:.0f} s end to end, "
                f"{big_sent / big.seconds:.0f} msg/s"
                if stop is None
                else (
                    f"snapshot of all, then {big_sent:,} sent in {stop:.0f} s, stopped by SIGTERM"
                )
            )
            row(f"(f) peak RSS, send to {args.big:,} ({how})", f"{big.max_rss_kb / 1024:8.1f} MB")
            row("(f) RSS ratio large / 1,000", f"{big.max_rss_kb / small.max_rss_kb:8.2f}")
        finally:
            sink.stop()

        build = bench_build(root, 2_000 if args.quick else 20_000)
        row(
            f"(d) build per recipient, splicing ({build['size']:.0f} B msg)",
            f"{build['spliced']:8.0f} msg/s  ({1e6 / build['spliced']:.1f} µs)",
        )
        row(
            "(d) … plus prepare_data on plain builder bytes",
            f"{build['spliced_prepared']:8.0f} msg/s  (prepare {build['prepare_us']:.1f} µs)",
        )
        row(
            "(d) … builder emitting DATA form (dot_stuffed, as send does)",
            f"{build['spliced_stuffed']:8.0f} msg/s  ({1e6 / build['spliced_stuffed']:.1f} µs)",
        )
        row("(d) reference build_message (stdlib EmailMessage)", f"{build['reference']:8.0f} msg/s")
        if not args.skip_compose:
            row("(e) compose, 10 articles (bench_compose.py, median)", bench_compose())

    print("\nsummary")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
