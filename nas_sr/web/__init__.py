"""The local web page of ``nas-sr serve``: a FastAPI app, its job queue and its static page."""
