r"""Web app: paint a hole on a photo in the browser and inpaint it (HTTP API + page).

  python serve.py [--checkpoint_dir DIR] [--host 127.0.0.1] [--port 8000]
                  [--max_upload_mb 50] [--max_megapixels 40] [--max_memory_gb 1] [--queue 8]

Loads the model once, warms it up, then prints the URL to open. The API and its errors are
described in README.md ("Web app"). There is no authentication: the default host only
accepts connections from this machine. A command-line mistake prints one line ``error: ...``
and exits with status 2, a bad checkpoint or a busy port with status 1; Ctrl+C (or SIGTERM)
stops the server with status 0.
"""
import ipaddress
import os
import signal
import socket
import sys

from absl import app
from absl import flags

import cli
from model import limits as limits_lib

FLAGS = flags.FLAGS
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "demo")

flags.DEFINE_string("checkpoint_dir", DEFAULT_CHECKPOINT,
                    "Our checkpoint directory (model.json + weights) or an official TF1 "
                    "DeepFill v1 checkpoint directory.")
flags.DEFINE_string("host", "127.0.0.1",
                    "Address to listen on. Anything but a loopback address exposes the app, "
                    "which has no authentication, to the network.")
flags.DEFINE_integer("port", 8000, "Port to listen on (0 = any free port).", lower_bound=0,
                     upper_bound=65535)
cli.define_max_upload_mb("Refuse request bodies larger than this (MB = 2**20 bytes) with 413.",
                         default=50)
cli.define_max_megapixels("Refuse images with more pixels than this (read from the file header, "
                          "before decoding) with 413.", default=40)
cli.define_max_memory_gb()
cli.define_seam_blend()
flags.DEFINE_integer("queue", 8, "Requests that may wait while one is inpainted; more get 503 "
                     "with Retry-After.", lower_bound=0)
cli.define_verbose()

_fail = cli.CONSOLE.fail
_warn = cli.CONSOLE.warn


def _is_loopback(host):
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _bind(host, port):
  """A listening socket, so a busy port is one clear error before the server starts."""
  from model.errors import UserError
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
  except socket.gaierror as e:
    raise UserError(f"--host {host}: cannot resolve the address ({e.strerror})") from None
  family, kind, proto, _, address = infos[0]
  sock = socket.socket(family, kind, proto)
  try:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
  except OSError as e:
    sock.close()
    raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
  sock.setblocking(False)
  return sock


def _url(sock):
  host, port = sock.getsockname()[:2]
  if ":" in host:
    host = f"[{host}]"
  return f"http://{host}:{port}/"


def _main():
  if not _is_loopback(FLAGS.host):
    _warn(f"--host {FLAGS.host}: the app has no authentication; anyone who can reach this "
          "address can use it")
  sock = _bind(FLAGS.host, FLAGS.port)  # a busy port fails before the slow imports and loading
  cli.import_tensorflow(FLAGS.verbose)
  import uvicorn

  from model.inference import inpainter as inpainter_lib
  from model.web import app as web_app
  checkpoint = os.path.abspath(FLAGS.checkpoint_dir)
  cli.CONSOLE.progress(f"loading {checkpoint}")
  inpainter = inpainter_lib.Inpainter.from_checkpoint(checkpoint,
                                                     max_memory_gb=FLAGS.max_memory_gb,
                                                     seam_blend=FLAGS.seam_blend)
  cli.CONSOLE.progress("warming up the model")
  seconds = web_app.warm_up(inpainter)
  cli.CONSOLE.progress(f"model ready (warm-up {seconds:.1f} s)")
  cli.CONSOLE.end_progress()
  limits = web_app.Limits(max_upload_bytes=limits_lib.upload_bytes(FLAGS.max_upload_mb),
                          max_pixels=limits_lib.max_pixels(FLAGS.max_megapixels), queue=FLAGS.queue)
  cfg = inpainter.config
  info = web_app.ModelInfo(name=os.path.basename(checkpoint.rstrip(os.sep)), preset=cfg.arch,
                           cnum=cfg.cnum, checkpoint=checkpoint)
  web = web_app.create_app(inpainter, info, limits)
  worker = web.state.worker

  class Server(uvicorn.Server):
    def handle_exit(self, sig, frame):
      worker.shut_down()  # requests waiting for the model get their 503 now, not after minutes
      super().handle_exit(sig, frame)

  server = Server(uvicorn.Config(web, log_level="warning", access_log=False,
                                 server_header=False, timeout_graceful_shutdown=5))
  print(f"DeepFill web app: {_url(sock)}  (Ctrl+C to stop)", flush=True)
  # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: both end here.
  signal.signal(signal.SIGTERM, _interrupt)
  try:
    server.run(sockets=[sock])
  except KeyboardInterrupt:
    pass
  cli.CONSOLE.end_progress()
  print("stopped", flush=True)
  if worker.computing:
    # The model thread is inside TensorFlow: leave without tearing the interpreter down under it.
    sys.stderr.flush()
    os._exit(0)
  return 0


def _interrupt(signum, frame):
  raise KeyboardInterrupt


def main(argv):
  return cli.guarded(_main, argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
