"""`avct serve`: a web page and a versioned HTTP API over one loaded model.

Modules: ``settings`` (the server's limits, one place), ``jobs`` (job store, bounded queue, worker threads,
expiry), ``uploads`` (size-limited multipart reading and the cheap input checks done before a job is
accepted), ``app`` (the FastAPI routes, thin over the store) and ``server`` (load the model once, run
uvicorn). Only ``settings`` is imported by the command line parser; FastAPI is imported by ``avct serve`` alone.
"""
