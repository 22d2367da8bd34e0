"""`zss serve`: the generator behind HTTPS with tokens, model names and limits (docs/server.md).

The job and its events are the worker's protocol (docs/protocol.md); the server only adds who may
ask (tokens), what may be asked (model names, limits) and where the files live (its job store).
Only `app`, `backend` and `run` need FastAPI/uvicorn (the `serve` extra); `config` and `tokens` are
stdlib so `zss token new` and the option checks work without it.
"""
