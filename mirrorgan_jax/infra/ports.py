"""Free TCP ports for local servers (the web demo, a local multi-process job's coordinator)."""

import socket


def free_port(host: str = '127.0.0.1') -> int:
  """A TCP port that is free on `host` now."""
  with socket.socket() as s:
    s.bind((host, 0))
    return s.getsockname()[1]
