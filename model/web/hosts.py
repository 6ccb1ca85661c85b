"""Which ``Host`` and ``Origin`` values the web app answers (DNS-rebinding and cross-site
protection, ARCHITECTURE.md §9.6), and the ASGI middleware that enforces it."""
import dataclasses
import ipaddress
import socket

from starlette.datastructures import Headers

from model.web.errors import error_response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = ("", "0.0.0.0", "::")


def _port_number(text):
  """The port written as ``text`` (ASCII digits only), or None. A number of more than five
  significant digits is no port (and is not handed to ``int``, which refuses thousands of
  digits)."""
  if not (text.isascii() and text.isdigit()):
    return None  # str.isdigit() alone also accepts digits such as '²' that int() refuses
  significant = text.lstrip("0") or "0"
  return int(significant) if len(significant) <= 5 else None


def _split_authority(authority):
  """``name[:port]`` (``[v6]:port`` for IPv6) -> (lower-case name, port or None); None if
  it is not of that form."""
  authority = authority.strip().lower()
  name, port = authority, None
  if authority.startswith("["):
    end = authority.find("]")
    if end < 0:
      return None
    name, rest = authority[:end + 1], authority[end + 1:]
    if rest:
      if not rest.startswith(":"):
        return None
      port = rest[1:]
  elif ":" in authority:
    name, port = authority.rsplit(":", 1)
  if port is not None:
    port = _port_number(port)
    if port is None:
      return None
  return (name, port) if name else None


def _is_ip_literal(name):
  try:
    ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    return True
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class HostPolicy:
  """The ``Host`` header values (and so the ``Origin`` values) the server answers to.

  Attributes:
    names: lower-case host names and IP literals (IPv6 in brackets).
    port: the port the server listens on; a Host without a port means 80.
    any_ip: also any IP literal (a server on a wildcard address: DNS rebinding always
      sends a domain name, never an IP address).
  """
  names: frozenset
  port: int
  any_ip: bool = False

  def allows(self, authority):
    parts = _split_authority(authority or "")
    if parts is None:
      return False
    name, port = parts
    return ((port or 80) == self.port
            and (name in self.names or (self.any_ip and _is_ip_literal(name))))

  def allows_origin(self, origin):
    scheme, sep, authority = origin.partition("://")
    return sep == "://" and scheme.lower() == "http" and "/" not in authority and (
        self.allows(authority))


def allowed_hosts(host, port):
  """The `HostPolicy` of a server listening on ``host`` (as ``--host`` spells it) and
  ``port``: the loopback names, ``host`` itself, and for a wildcard address (0.0.0.0, ::)
  also this machine's host names and any IP literal."""
  name = host.strip().lower()
  if ":" in name and not name.startswith("["):
    name = f"[{name}]"
  names = set(LOOPBACK_NAMES) | {name}
  wildcard = host.strip() in _WILDCARDS
  if wildcard:
    names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
  return HostPolicy(frozenset(names - {"", "[]"}), int(port), any_ip=wildcard)


class RequestGuard:
  """ASGI middleware: a request whose ``Host`` is not one of the server's (`HostPolicy`) gets
  400 (no DNS-rebound page can reach the app); an ``/api/`` request from another site gets
  403: an ``Origin`` that is not ``http://`` + an allowed host, or a ``Sec-Fetch-Site`` other
  than ``same-origin`` or ``none``. Requests without these headers (curl, scripts) pass."""

  def __init__(self, app, policy):
    self.app = app
    self.policy = policy

  async def __call__(self, scope, receive, send):
    if scope["type"] == "http":
      headers = Headers(scope=scope)
      refusal = None
      host = headers.get("host")
      if not self.policy.allows(host):
        refusal = error_response(400, f"Host {host!r} is not an address of this server; open "
                                 f"it as http://127.0.0.1:{self.policy.port}/ or the --host "
                                 "address it listens on")
      elif scope["path"].startswith("/api/"):
        site, origin = headers.get("sec-fetch-site"), headers.get("origin")
        if (site is not None and site.lower() not in ("same-origin", "none")) or (
            origin is not None and not self.policy.allows_origin(origin)):
          refusal = error_response(403, "cross-site request refused: the API answers only "
                                   "its own page and clients that send no Origin")
      if refusal is not None:
        await refusal(scope, receive, send)
        return
    await self.app(scope, receive, send)
