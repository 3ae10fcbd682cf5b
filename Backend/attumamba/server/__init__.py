"""The HTTP service: FastAPI app, bearer-token auth, uploaded studies and the job queue."""

from .app import ServerState, create_app
from .jobs import JobQueue, SegmenterCache
from .studies import Limits, StudyStore
from .uploads import image_bytes, read_image_bytes

__all__ = ["JobQueue", "Limits", "SegmenterCache", "ServerState", "StudyStore", "create_app", "image_bytes",
           "read_image_bytes"]
