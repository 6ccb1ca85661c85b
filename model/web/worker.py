"""The model's one worker thread and the request slots in front of it (ARCHITECTURE.md §9.6)."""
import asyncio
import collections
import concurrent.futures
import math
import threading
import time


class ShuttingDown(Exception):
  """The server is stopping: the request will not be inpainted."""


class ClientGone(Exception):
  """The request's client disconnected before its turn: its job was dropped unrun."""


class ModelWorker:
  """The model's one thread (``ThreadPoolExecutor(max_workers=1)``: jobs run in arrival
  order) and the request slots in front of it.

  `admit`/`release` and `run` are called on the event loop only. A slot taken by `admit` is
  given back by `release` if the request ends before `run`, otherwise when its job is done
  (finished, failed or cancelled before it started), even if the request was abandoned
  meanwhile, so the slots always bound the work in the executor's queue. `shut_down` (safe
  from a signal handler) answers every waiting request at once.
  """

  def __init__(self, slots):
    self.slots = slots
    self.admitted = 0
    self.running = False        # as seen on the event loop (for health)
    self.computing = False      # as seen by the worker thread
    self._closing = threading.Event()
    self._loop = None
    self._pending = set()
    self._durations = collections.deque(maxlen=16)
    self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                           thread_name_prefix="model-worker")

  @property
  def closing(self):
    return self._closing.is_set()

  def admit(self):
    if self.closing or self.admitted >= self.slots:
      return False
    self.admitted += 1
    return True

  def has_room(self):
    """Whether `admit` would succeed now (takes nothing)."""
    return not self.closing and self.admitted < self.slots

  def release(self):
    self.admitted -= 1

  @property
  def waiting(self):
    return self.admitted - int(self.running)

  def retry_after(self):
    """Seconds until a slot is likely free: the mean duration of recent jobs (at least 1)."""
    if not self._durations:
      return 1
    return max(1, math.ceil(sum(self._durations) / len(self._durations)))

  async def run(self, fn, *args, is_gone=None):
    """Runs ``fn(*args)`` on the worker thread (the caller holds a slot, released here).

    ``is_gone``: a coroutine function (e.g. ``request.is_disconnected``) awaited on the event
    loop when the job's turn comes; if it returns True the job is dropped before ``fn`` runs
    and `ClientGone` is raised. Raises `ShuttingDown` if the server stops before the job is
    done.
    """
    loop = self._loop = asyncio.get_running_loop()
    try:
      job = self._executor.submit(self._job, loop, fn, args, is_gone)
    except RuntimeError:  # the executor was shut down
      self.release()
      raise ShuttingDown() from None
    job.add_done_callback(lambda _: _call_soon(loop, self._done))
    future = asyncio.wrap_future(job)
    self._pending.add(future)
    try:
      return await future
    except asyncio.CancelledError:
      if self.closing and future.cancelled() and not asyncio.current_task().cancelling():
        raise ShuttingDown() from None  # cancelled by shut_down, not the request's task
      raise
    finally:
      self._pending.discard(future)

  def shut_down(self):
    """New requests are refused and waiting ones fail with `ShuttingDown`; the job in the
    model is abandoned (serve.py leaves without waiting for it). Safe to call from a signal
    handler."""
    self._closing.set()
    if self._loop is not None:
      _call_soon(self._loop, self._cancel_pending)

  def _cancel_pending(self):
    self._executor.shutdown(wait=False, cancel_futures=True)
    for future in list(self._pending):
      future.cancel()

  def _job(self, loop, fn, args, is_gone):  # on the worker thread
    if self.closing:
      raise ShuttingDown()
    if is_gone is not None and _ask(loop, is_gone):
      raise ClientGone()
    _call_soon(loop, self._set_running, True)
    self.computing = True
    start = time.monotonic()
    try:
      return fn(*args)
    finally:
      self.computing = False
      self._durations.append(time.monotonic() - start)

  def _set_running(self, value):
    self.running = value

  def _done(self):
    self.running = False
    self.release()


def _ask(loop, coroutine_function, timeout=10):
  """From another thread: the result of ``coroutine_function()`` run on ``loop`` (False if the
  loop does not answer within ``timeout`` seconds, e.g. while it stops)."""
  try:
    return bool(asyncio.run_coroutine_threadsafe(coroutine_function(), loop).result(timeout))
  except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
    return False


def _call_soon(loop, fn, *args):
  """``loop.call_soon_threadsafe`` that does nothing once the loop is closed."""
  try:
    loop.call_soon_threadsafe(fn, *args)
  except RuntimeError:
    pass
