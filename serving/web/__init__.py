"""The web pages: members' own ranking page and the fund's loan-officer console (mounted at /app).

`serving.web.app.web` is the FastAPI app; `serving.web.links` signs members' links. docs/web.md.
"""
