"""The API's error answers: JSON ``{"error": "one line"}`` with an HTTP status."""
from fastapi.responses import JSONResponse


class ApiError(Exception):
  """A client error with its HTTP status; the message is one line."""

  def __init__(self, status, message, headers=None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


def error_response(status, message, headers=None):
  """``{"error": message}`` with ``status``; the message is flattened to one line."""
  text = " ".join(str(message).split()) or "error"
  return JSONResponse({"error": text}, status_code=status, headers=headers)
