"""The console beside other processes: a run holding the store, a nightly run started while pages are
read, ``recon serve`` itself as a process, ``--hash-password`` and the ``[web]`` config errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from argon2 import PasswordHasher
from typer.testing import CliRunner

from recon.config import load_config
from recon.errors import ConfigError
from recon.lock import store_lock
from recon.store import publish_snapshot, snapshot_path
from recon.web.store_access import choose_source
from recon_cli import app
from tests.processes import ROOT, Recon
from tests.scenario import Scenario
from tests.web_world import Console, console, exception_id, logged_in
from tests.web_world import shop, web  # noqa: F401 (module-scoped fixtures)

# A stand-in for a long nightly run: takes the store lock and the store, says so, waits for a line.
HOLDER = """
import sys
from pathlib import Path
from recon.config import load_config
from recon.lock import store_lock
from recon.store import open_store
config = load_config(Path(sys.argv[1]))
with store_lock(config.store_path, "recon run --date 2026-11-21"), open_store(config, write=True):
    print("held", flush=True)
    sys.stdin.readline()
"""


runner = CliRunner()


def _status(shop: Scenario, exc_id: int) -> str:
    return str(shop.query("SELECT status FROM exceptions WHERE id = ?", [exc_id])[0]["status"])


def test_while_a_run_holds_the_store_pages_show_its_snapshot_and_writes_answer_503(web: Console,
                                                                                   shop: Scenario) -> None:
    target = exception_id(shop, "shop_only")
    finance = logged_in(web.url, "fiona")
    assert finance.post(f"/exceptions/{target}/resolve", {"note": "checked before the run"}).status_code == 303
    other = exception_id(shop, "amount_mismatch")
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(shop.folder / "recon.toml")], cwd=ROOT,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "held"
            started = time.monotonic()
            listed = finance.get("/exceptions?status=resolved")
            assert listed.status_code == 200 and time.monotonic() - started < 5
            # the snapshot of the last finished run: the resolve made since is not in it yet
            assert 'id="snapshot-banner"' in listed.text and 'id="none-found"' in listed.text
            started = time.monotonic()
            busy = finance.post(f"/exceptions/{other}/resolve", {"note": "during the run"})
            assert time.monotonic() - started < 5
            assert busy.status_code == 503 and busy.headers["retry-after"] == "60"
            assert "正在对账，请一分钟后再试" in busy.text
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(30)
    assert _status(shop, other) == "open"
    page = finance.get("/exceptions?status=resolved").text
    assert 'id="snapshot-banner"' not in page and f'<tr data-id="{target}" data-code="shop_only"' in page
    assert finance.post(f"/exceptions/{other}/resolve", {"note": "after the run"}).status_code == 303
    assert _status(shop, other) == "resolved"


def test_pages_read_during_a_nightly_run_never_keep_it_waiting(web: Console, shop: Scenario) -> None:
    with store_lock(shop.config.store_path, "test: publish"):
        publish_snapshot(shop.config)  # as every run does when it ends
    # nothing changed since: pages read the snapshot and leave the store itself to the run
    assert choose_source(shop.config).path == snapshot_path(shop.config.store_path)
    finance = logged_in(web.url, "fiona")
    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def read_pages() -> None:
        while not stop.is_set():
            for path in ("/runs", "/exceptions?status=", "/jobs"):
                started = time.monotonic()
                answers.append((finance.get(path).status_code, time.monotonic() - started))

    reader = threading.Thread(target=read_pages)
    reader.start()
    try:
        run = Recon(shop.folder / "recon.toml", "run", "--date", "2026-11-20", "--no-fetch")
        code, _ = run.finish(timeout=120)
        assert code in (0, 3), run.stderr
    finally:
        stop.set()
        reader.join(30)
    assert len(answers) >= 3 and all(status == 200 for status, _ in answers), answers
    assert max(seconds for _, seconds in answers) < 10
    runs_page = finance.get("/runs").text
    assert 'data-run="2"' in runs_page
    assert choose_source(shop.config).path == snapshot_path(shop.config.store_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_recon_serve_runs_as_a_process_answers_and_stops_on_sigterm(shop: Scenario) -> None:
    port = _free_port()
    serve = Recon(shop.folder / "recon.toml", "serve", "--port", str(port))
    try:
        serve.wait_for(rf"recon console on http://127\.0\.0\.1:{port}", timeout=60)
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok":
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, serve.stderr
                time.sleep(0.1)
        finance = logged_in(f"http://127.0.0.1:{port}", "fiona")
        runs = finance.get("/runs")
        assert runs.status_code == 200 and 'id="latest-run"' in runs.text
        assert runs.headers.get("server") is None
    finally:
        serve.signal(signal.SIGTERM)
    code, _ = serve.finish(timeout=30)
    # uvicorn stops gracefully, then ends by the signal it caught (systemd counts that as a clean stop)
    assert code in (0, -signal.SIGTERM) and "Finished server process" in serve.stderr, serve.stderr
    assert "fiona-password-1" not in serve.stderr and "session-key-for-tests" not in serve.stderr


def test_hash_password_reads_stdin_and_prints_an_argon2_hash() -> None:
    made = runner.invoke(app, ["serve", "--hash-password"], input="a long passphrase\n")
    assert made.exit_code == 0, made.output
    hashed = made.stdout.strip()
    assert hashed.startswith("$argon2id$") and "a long passphrase" not in made.stdout
    assert PasswordHasher().verify(hashed, "a long passphrase")
    short = runner.invoke(app, ["serve", "--hash-password"], input="short\n")
    assert short.exit_code == 2 and "at least 8 characters" in short.stderr


def test_web_config_errors_name_the_key_and_never_echo_a_password(tmp_path: Path) -> None:
    base = Scenario(tmp_path).folder / "recon.toml"
    plain = base.read_text(encoding="utf-8")
    user = '\n[[web.users]]\nname = "ana"\nrole = "finance"\n'
    base.write_text(plain + f'\n[web]{user}password_hash = "hunter2hunter2"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as bad_hash:
        load_config(base)
    assert "web.users[0].password_hash" in str(bad_hash.value) and "hunter2" not in str(bad_hash.value)
    base.write_text(plain + '\n[web]\nport = 80\nbind = "0.0.0.0"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web\.bind: unknown key"):
        load_config(base)
    base.write_text(plain, encoding="utf-8")
    no_users = runner.invoke(app, ["--config", str(base), "serve"])
    assert no_users.exit_code == 2 and "web.users" in no_users.stderr
    hashed = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("a long passphrase")
    base.write_text(plain + f'\n[web]{user}password_hash = "{hashed}"\n', encoding="utf-8")
    no_secret = runner.invoke(app, ["--config", str(base), "serve"])
    assert no_secret.exit_code == 2 and "web.session_secret" in no_secret.stderr
    (tmp_path / "short.key").write_text("tiny-key-value", encoding="utf-8")
    base.write_text(base.read_text(encoding="utf-8").replace(
        "[web]\n", f'[web]\nsession_secret = "file:{tmp_path / "short.key"}"\n'), encoding="utf-8")
    weak = runner.invoke(app, ["--config", str(base), "serve"])
    assert weak.exit_code == 2 and "at least 32 characters" in weak.stderr and "tiny-key-value" not in weak.stderr
