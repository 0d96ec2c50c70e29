"""Locust shoppers for benchmarks/serving_load.py: text searches or photo uploads at a fixed rate each.

Settings come from the environment that serving_load.py sets (VITRINA_LOAD_*); the index versions
seen in responses are written to VITRINA_LOAD_VERSIONS when the run stops.
"""

import json
import os
import random
from collections import Counter
from pathlib import Path

from locust import FastHttpUser, HttpUser, constant_throughput, events, task

MODE = os.environ.get("VITRINA_LOAD_MODE", "text")
RATE = float(os.environ.get("VITRINA_LOAD_RATE", "5"))
QUERIES = Path(os.environ["VITRINA_LOAD_QUERIES"]).read_text().splitlines() if MODE == "text" else []
IMAGES = [Path(p) for p in Path(os.environ["VITRINA_LOAD_IMAGES"]).read_text().splitlines()] if MODE == "image" else []
PHOTOS = [(p.name, p.read_bytes()) for p in IMAGES]
VERSIONS: Counter = Counter()


def check(response) -> None:
    if response.status_code != 200:
        response.failure(f"{response.status_code}: {response.text[:200]}")
        return
    body = response.json()
    if "index_version" not in body or "results" not in body:
        response.failure("no results or index_version in the response")
        return
    VERSIONS[body["index_version"]] += 1


class TextShopper(FastHttpUser):
    wait_time = constant_throughput(RATE)
    abstract = MODE != "text"

    @task
    def search(self) -> None:
        query = random.choice(QUERIES)
        with self.client.get("/search", params={"q": query, "k": 10}, name="/search", catch_response=True) as r:
            check(r)


class PhotoShopper(HttpUser):
    wait_time = constant_throughput(RATE)
    abstract = MODE != "image"

    @task
    def upload(self) -> None:
        name, data = random.choice(PHOTOS)
        with self.client.post("/search/image?k=10", files={"file": (name, data, "image/jpeg")},
                              name="/search/image", catch_response=True) as r:
            check(r)


@events.test_stop.add_listener
def save_versions(**_kwargs) -> None:
    target = os.environ.get("VITRINA_LOAD_VERSIONS")
    if target:
        Path(target).write_text(json.dumps(VERSIONS))
