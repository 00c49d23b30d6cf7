"""The browser client module (static/realtime.js), run under Node with a fake WebSocket."""

import shutil
import subprocess
from pathlib import Path

import kabar

CHECK = Path(__file__).with_name("realtime_client_check.mjs")
MODULE = Path(kabar.__file__).parent / "web" / "static" / "realtime.js"


def test_realtime_js_resumes_dedups_resyncs_and_types():
    node = shutil.which("node")
    assert node, "Node.js is needed to test the JavaScript client"
    result = subprocess.run([node, str(CHECK), MODULE.as_uri()], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "realtime.js ok" in result.stdout
