"""Access control on the real server: loopback by default, refusal without auth, login enforced."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.browser_support import ROOT, start_app, stop_app


def test_public_host_without_auth_is_refused(tmp_path, tiny_model_dir):
    proc = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--model", str(tiny_model_dir),
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without --auth" in proc.stderr


def test_auth_is_enforced_and_server_binds_loopback(tmp_path, tiny_model_dir):
    proc, url = start_app(str(tiny_model_dir), tmp_path, tmp_path / "app.log", extra=["--auth", "alice:s3cret"])
    try:
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "config", timeout=10)
        assert err.value.code == 401
        # The login endpoint accepts the right password and rejects a wrong one.
        good = _login(url, "alice", "s3cret")
        bad = _login(url, "alice", "wrong")
        assert good == 200 and bad in (400, 401)
    finally:
        stop_app(proc)


def _login(url: str, user: str, password: str) -> int:
    data = f"username={user}&password={password}".encode()
    req = urllib.request.Request(url + "login", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
