import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _servers import artifacts, goaway_server, pki, server, tcp_only_server  # noqa: F401
