"""The uvicorn settings serve.py runs the app with: a deadline for every request head.

uvicorn's own ``timeout_keep_alive`` restarts with every byte received, so a client typing one
byte at a time would hold a connection forever; the protocol here closes a connection whose
complete request head has not arrived in time (ARCHITECTURE.md §9.6).
"""

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; more: 400 from the HTTP parser (h11)


def server_config(app, idle_timeout=10.0, **kwargs):
  """The ``uvicorn.Config`` serve.py runs ``app`` with.

  A connection must deliver a complete request head (at most `MAX_HEAD_BYTES`) within
  ``idle_timeout`` seconds of opening, and the next one within ``idle_timeout`` seconds of its
  previous response, or it is closed: neither a silent nor a slowly-typing client holds a
  connection. (uvicorn's own ``timeout_keep_alive``, set to the same, restarts with every byte
  received.) ``kwargs`` go to ``uvicorn.Config``.
  """
  import uvicorn
  settings = dict(log_level="warning", access_log=False, server_header=False,
                  timeout_graceful_shutdown=5)
  settings.update(kwargs)
  return uvicorn.Config(app, http=_head_deadline_protocol(idle_timeout),
                        timeout_keep_alive=idle_timeout,
                        h11_max_incomplete_event_size=MAX_HEAD_BYTES, **settings)


def _head_deadline_protocol(seconds):
  """uvicorn's h11 protocol with a deadline for each request head (see `server_config`)."""
  from uvicorn.protocols.http.h11_impl import H11Protocol

  class HeadDeadlineProtocol(H11Protocol):
    _deadline = None
    _waiting_after = None  # the request/response cycle before the awaited head

    def _arm(self):
      self._disarm()
      self._waiting_after = self.cycle
      self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self):
      if self._deadline is not None:
        self._deadline.cancel()
        self._deadline = None

    def _expire(self):
      self._deadline = None
      if not self.transport.is_closing():
        self.transport.close()

    def connection_made(self, transport):
      super().connection_made(transport)
      self._arm()

    def connection_lost(self, exc):
      self._disarm()
      super().connection_lost(exc)

    def handle_events(self):
      super().handle_events()
      if self._deadline is not None and self.cycle is not self._waiting_after:
        self._disarm()  # a new request's head has arrived

    def on_response_complete(self):
      self._arm()  # before: a pipelined request handled inside disarms it
      super().on_response_complete()

  return HeadDeadlineProtocol
