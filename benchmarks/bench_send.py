"""Send throughput: ``digest-mail send`` as a real CLI process, ledger on, into a local sink.

    .venv/bin/python benchmarks/bench_send.py [--n 20000] [--concurrency 16] [--sink auto]

The sink is Postfix's ``smtp-sink`` when installed (it accepts and discards, at several
thousand messages a second), else an aiosmtpd server in a child process (which tops out
near 1,400 msg/s and is then the bottleneck: the output says which sink was used). The
edition is the sample workspace composed for real; the list has N generated Japanese
recipients.

Prints msg/s of the whole command (start-up, snapshot of the list, sending, ledger
updates) and the command's peak RSS. Never fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMTP_SINK = "/usr/sbin/smtp-sink"
FAMILY = ["山田", "鈴木", "佐藤", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "一郎", "美咲", "健太", "陽子", "翔", "愛", "大輔", "由美"]

AIOSMTPD_SINK = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 discarded"

async def serve():
    loop = asyncio.get_running_loop()
    port = int(sys.argv[1])
    await loop.create_server(lambda: SMTP(Discard(), hostname="sink"), "127.0.0.1", port)
    await asyncio.Event().wait()

asyncio.run(serve())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the sink did not start on port {port}")


def start_sink(kind: str, port: int) -> tuple[subprocess.Popen[bytes], str]:
    if kind == "auto":
        kind = "smtp-sink" if os.access(SMTP_SINK, os.X_OK) else "aiosmtpd"
    if kind == "smtp-sink":
        command = [SMTP_SINK]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        # It advertises 8BITMIME and PIPELINING by default; 1024 is the listen backlog.
        process = subprocess.Popen([*command, f"127.0.0.1:{port}", "1024"])
    else:
        process = subprocess.Popen([sys.executable, "-c", AIOSMTPD_SINK, str(port)])
    wait_for_port(port)
    return process, kind


def make_workspace(root: Path, n: int) -> None:
    for item in ("digest-mail.toml", "articles", "templates", "subscribers"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, root / item)
        else:
            shutil.copy2(source, root / item)
    rows = ["email,name,status,subscribed_at"]
    for i in range(n):
        name = f"{FAMILY[i % 10]} {GIVEN[(i // 10) % 10]}" if i % 9 else ""
        domain = ("jp", "com", "net")[i % 3]
        rows.append(f"bench{i:07d}@example.{domain},{name},subscribed,2026-01-01")
    (root / "subscribers" / "bench.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, int, bytes, bytes]:
    """(seconds, peak RSS in KiB, stdout, stderr) of one digest-mail process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "digest_mail", *args], cwd=cwd, env=env, stdout=out, stderr=err
        )
        # wait4: this process's own rusage (its peak RSS), not the sink's or compose's.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        process.returncode = code
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code not in (0, 1):
        sys.stderr.write(stderr.decode())
        raise SystemExit(f"digest-mail {' '.join(args)} exited {code}")
    return seconds, usage.ru_maxrss, stdout, stderr


def bench(options: argparse.Namespace) -> None:
    port = free_port()
    sink, kind = start_sink(options.sink, port)
    workdir = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        make_workspace(workdir, options.n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
        env.update(
            DIGEST_MAIL_SMTP_URL=f"smtp://127.0.0.1:{port}",
            DIGEST_MAIL_SECRET="bench-secret-0123456789abcdef",
        )
        if options.client:
            env["DIGEST_MAIL_SMTP_CLIENT"] = options.client
        compose_s, _, _, _ = run_cli(["compose", "--edition", "2026-W48"], cwd=workdir, env=env)
        size = (workdir / "drafts" / "2026-W48" / "preview.eml").stat().st_size
        send = ["send", "2026-W48", "--list", "bench", "--yes", "--json"]
        seconds, peak_kib, out, err = run_cli(
            [*send, "--concurrency", str(options.concurrency)], cwd=workdir, env=env
        )
        report = json.loads(out)
        print(f"sink          {kind} on 127.0.0.1:{port}")
        print(f"recipients    {options.n:,} (message ~{size / 1024:.1f} KB)")
        print(f"compose       {compose_s:.1f} s")
        client = options.client or "default"
        print(f"concurrency   {options.concurrency} connections ({client} client)")
        print(
            f"result        {report['sent']:,} sent, {report['deferred']} deferred, "
            f"{report['failed']} failed, {report['uncertain']} uncertain"
        )
        print(f"wall time     {seconds:.2f} s (start-up, snapshot, send, ledger)")
        print(f"throughput    {report['sent'] / seconds:,.0f} msg/s end to end")
        print(f"peak RSS      {peak_kib / 1024:.1f} MiB")
        if report["sent"] != options.n:
            sys.stderr.write(err.decode()[-2000:])
    finally:
        sink.terminate()
        sink.wait(10)
        if options.keep:
            print(f"workspace     {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="digest-mail send throughput into a local sink")
    parser.add_argument("--n", type=int, default=20000, help="recipients (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="SMTP connections (default 16)")
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    parser.add_argument(
        "--client", help="[smtp] client: pipelining or aiosmtplib (default: the setting)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    bench(parser.parse_args())
