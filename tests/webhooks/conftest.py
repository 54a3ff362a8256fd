import pytest
from celery import current_app

from .helpers import Server, Worker


@pytest.fixture
def queued_tasks():
    """This test process publishes tasks to the broker (as a deployment does) instead of running them."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = previous


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(**env):
        workers.append(Worker(tmp_path, **env).start())
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(**kw):
        servers.append(Server(tmp_path, **kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
