r"""Web app: paint a hole on a photo in the browser and inpaint it (HTTP API + page).

  python serve.py [--checkpoint_dir DIR ...] [--host 127.0.0.1] [--port 8000]
                  [--max_upload_mb 50] [--max_megapixels 40] [--max_memory_gb 1] [--queue 8]
                  [--body_timeout 60] [--idle_timeout 10] [--strategy S] [--[no]seam_blend]
                  [--web_export DIR] [--precision float32|mixed_bfloat16|mixed_float16|auto]

Loads every model given (``--checkpoint_dir`` repeated; default: the bundled
checkpoints/demo), warms each up, then prints the URL to
open; the page offers the models by folder name, the first is the default. Each model runs the
pipeline its ``model.json`` declares (scale strategy, seam blending, precision) unless
``--strategy`` / ``--seam_blend`` / ``--precision`` override it for all of them. With ``--web_export`` (a folder of
``export.py --format web``) the page also offers "Run in this browser": that model then runs in
the visitor's browser and the photo is not uploaded. The API and its errors are
described in docs/WEB.md. There is no authentication: the default host only
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

flags.DEFINE_multi_string("checkpoint_dir", None,
                          "Our checkpoint directory (model.json + weights) or an official TF1 "
                          "DeepFill v1 checkpoint directory; repeat it to offer several models "
                          "(the first is the default; each is named by its folder name, which "
                          "must differ). Default: checkpoints/demo.")
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
cli.define_precision()
flags.DEFINE_float("body_timeout", 60, "Seconds a request body may take to arrive after its "
                   "headers; a slower one gets 408 and its connection is closed. No queue slot "
                   "is held meanwhile.", lower_bound=0.001)
flags.DEFINE_float("idle_timeout", 10, "A connection is closed when a complete request head "
                   "(headers) has not arrived this many seconds after it opened or after its "
                   "previous response.", lower_bound=0.001)
flags.DEFINE_integer("queue", 8, "Requests that may wait while one is inpainted; more get 503 "
                     "with Retry-After.", lower_bound=0)
flags.DEFINE_string("web_export", None, "A folder written by export.py --format web: the page "
                    "then offers 'Run in this browser', which runs that model (model.onnx, "
                    "strategy original, no seam blending) in the visitor's browser instead of "
                    "on this server.")
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


def _checkpoints(given):
  """(name, absolute path) of each model to serve: ``given`` or the bundled demo."""
  chosen = {}
  for path in given or [cli.DEFAULT_CHECKPOINT]:
    path = os.path.abspath(path).rstrip(os.sep) or os.sep
    name = os.path.basename(path)
    if name in chosen:
      raise app.UsageError(f"--checkpoint_dir: two models are named {name!r} (a model is "
                           "named by its folder name; rename or copy one)", cli.USAGE_STATUS)
    chosen[name] = path
  return list(chosen.items())


def _load_model(name, checkpoint):
  """The `ServedModel` of one checkpoint folder: its Inpainter, built as test.py does (the
  pipeline the checkpoint declares, unless ``--strategy`` / ``--seam_blend`` / ``--precision``
  override it)."""
  from model.inference import inpainter as inpainter_lib
  from model.web import app as web_app
  inpainter = inpainter_lib.Inpainter.from_checkpoint(checkpoint,
                                                     max_memory_gb=FLAGS.max_memory_gb,
                                                     seam_blend=FLAGS.seam_blend,
                                                     strategy=FLAGS.strategy,
                                                     precision=FLAGS.precision)
  cfg = inpainter.config
  return web_app.ServedModel(web_app.ModelInfo(name=name, preset=cfg.arch, cnum=cfg.cnum,
                                               precision=inpainter.precision,
                                               **inpainter.pipeline()),
                             inpainter)


def _main():
  checkpoints = _checkpoints(FLAGS.checkpoint_dir)
  if not _is_loopback(FLAGS.host):
    _warn(f"--host {FLAGS.host}: the app has no authentication; anyone who can reach this "
          "address can use it")
  if FLAGS.web_export:
    from model.web import site
    site.check_site(FLAGS.web_export)
  sock = _bind(FLAGS.host, FLAGS.port)  # a busy port fails before the slow imports and loading
  cli.import_tensorflow(FLAGS.verbose)
  import uvicorn

  from model.web import app as web_app
  from model.web import hosts
  from model.web import transport
  from model.web import uploads
  models = []
  for name, checkpoint in checkpoints:  # all up front: memory is known once the URL prints
    cli.CONSOLE.progress(f"loading {checkpoint}")
    served = _load_model(name, checkpoint)
    cli.CONSOLE.progress(f"warming up {name}")
    seconds = web_app.warm_up(served.inpainter)
    cli.CONSOLE.progress(f"model {name} ready (warm-up {seconds:.1f} s)")
    cli.CONSOLE.end_progress()
    models.append(served)
  limits = uploads.Limits(max_upload_bytes=limits_lib.upload_bytes(FLAGS.max_upload_mb),
                          max_pixels=limits_lib.max_pixels(FLAGS.max_megapixels), queue=FLAGS.queue,
                          body_timeout=FLAGS.body_timeout)
  web = web_app.create_app(models, limits, hosts.allowed_hosts(FLAGS.host, sock.getsockname()[1]),
                           browser_site=FLAGS.web_export)
  worker = web.state.worker

  class Server(uvicorn.Server):
    def handle_exit(self, sig, frame):
      worker.shut_down()  # requests waiting for the model get their 503 now, not after minutes
      super().handle_exit(sig, frame)

  server = Server(transport.server_config(web, idle_timeout=FLAGS.idle_timeout))
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
