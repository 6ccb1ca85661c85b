"""The web app: a page to paint a hole on a photo and an HTTP API that fills it (`serve.py`)."""
