"""The HTTP service: FastAPI app, bearer-token auth, uploaded studies and the job queue."""

from .app import ServerState, create_app
from .holdings import Holdings, Refusal
from .jobs import JobQueue
from .studies import Limits, StudyStore
from .uploads import image_bytes, read_image_bytes

__all__ = ["Holdings", "JobQueue", "Limits", "Refusal", "ServerState", "StudyStore", "create_app", "image_bytes",
           "read_image_bytes"]
