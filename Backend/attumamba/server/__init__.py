"""The HTTP service: FastAPI app, bearer-token auth, uploaded studies and the job queue."""

from .app import ServerState, create_app, image_bytes, read_image_bytes
from .jobs import JobQueue, SegmenterCache
from .studies import Limits, StudyStore

__all__ = ["JobQueue", "Limits", "SegmenterCache", "ServerState", "StudyStore", "create_app", "image_bytes",
           "read_image_bytes"]
