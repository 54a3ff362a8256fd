from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.operations.urls_logging"
