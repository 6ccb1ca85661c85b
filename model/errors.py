"""User-facing error type: CLIs print its message as one line and exit non-zero."""


class UserError(Exception):
  """A problem with the user's input (file, flag, checkpoint); message is one line."""
