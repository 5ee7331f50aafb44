"""Entity tricks in a feed: billion laughs and external entities (XXE) are never expanded."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import Runner

LAUGHS = '<!ENTITY lol0 "lollollollollollollollollollol">' + "".join(
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
)
FEED = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE rss [{LAUGHS}<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>Chrysanthemum Digest</title>
<link>https://chrysanthemum-digest.example.jp/</link><description>今週</description>
<item><title>円安 &lol9; 家計</title>
<link>https://chrysanthemum-digest.example.jp/articles/weak-yen/</link>
<pubDate>Sat, 21 Nov 2026 07:15:00 +0900</pubDate>
<description>本文 &xxe; 終わり</description></item>
</channel></rss>
"""


def test_entities_in_a_feed_are_never_expanded(workspace: Path, run: Runner) -> None:
    (workspace / "feed.xml").write_text(FEED, encoding="utf-8")
    before = set((workspace / "articles").glob("*.md"))
    result = run("articles", "import", "feed.xml")
    assert result.exit_code == 0, result.output
    written = set((workspace / "articles").glob("*.md")) - before
    text = "".join(p.read_text(encoding="utf-8") for p in written)
    assert "lollol" not in text and "root:" not in text
    assert len(text) < 2000


PLAIN_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Chrysanthemum Digest</title>
<link>https://chrysanthemum-digest.example.jp/</link><description>今週</description>
<item><title>円安はどこまで続く?</title>
<link>https://chrysanthemum-digest.example.jp/articles/weak-yen/</link>
<pubDate>Sat, 21 Nov 2026 07:15:00 +0900</pubDate>
<description>円安の長期化で、家計はどう備えるべきか。</description></item>
</channel></rss>
"""


class _Site(http.server.BaseHTTPRequestHandler):
    """/feed.xml is the feed; /moved.xml redirects to ``target``."""

    target = ""

    def do_GET(self) -> None:
        if self.path == "/moved.xml":
            self.send_response(301)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = PLAIN_FEED.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler], context: ssl.SSLContext | None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_https_feed_redirecting_to_http_is_refused(
    workspace: Path, run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    class Plain(_Site):
        pass

    class Secure(_Site):
        pass

    with _serving(Plain, None) as plain_port, _serving(Secure, context) as secure_port:
        Secure.target = f"http://127.0.0.1:{plain_port}/feed.xml"
        fine = run("articles", "import", f"https://127.0.0.1:{secure_port}/feed.xml", "--dry-run")
        assert fine.exit_code == 0, fine.output
        assert fine.output.splitlines()[-1] == "1 new, 0 skipped, 0 invalid"
        moved = f"https://127.0.0.1:{secure_port}/moved.xml"
        refused = run("articles", "import", moved)
        assert (refused.exit_code, refused.output.splitlines()[0]) == (
            1,
            f"Error: {moved}: redirected to {Secure.target}, which is not https",
        )
