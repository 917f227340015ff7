"""Case runs through the orchestrator's own API: Dagster's GraphQL endpoint (``dagster-webserver``).

:class:`DagsterRuns` launches the per-case job for one case partition and reads a run's live
status and step events from Dagster itself (not only the platform's ``runs`` table). A launch
carries an idempotency key — the caller's ``Idempotency-Key``, namespaced by who sent it — as
a run tag: a second launch with the same key returns the run the first one made instead of
starting another (a retried request never processes a case twice). The gateway talks to Dagster
over HTTP only: it imports no Dagster code.
"""
from __future__ import annotations

import hashlib

import httpx

__all__ = ["DagsterRuns", "OrchestratorError", "IdempotencyConflict", "IDEMPOTENCY_TAG"]

IDEMPOTENCY_TAG = "aooct/idempotency-key"
PARTITION_TAG = "dagster/partition"

_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""

_FIND = """
query Find($filter: RunsFilter) {
  runsOrError(filter: $filter, limit: 1) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}"""

_RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value }
                 stepStats { stepKey status startTime endTime } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}"""


_DAEMON = """
query Daemon {
  instance { daemonHealth { daemonStatus(daemonType: "SENSOR") { healthy required } } }
}"""


class OrchestratorError(RuntimeError):
    """Dagster could not be reached or refused the request (HTTP 502/503 at the gateway)."""


class IdempotencyConflict(ValueError):
    """The idempotency key was already used for another case (HTTP 409)."""


class DagsterRuns:
    """Launch and read runs of ``job`` in ``location`` at the webserver ``url``."""

    def __init__(self, url: str, *, location: str = "aooct", repository: str = "__repository__",
                 job: str = "case_pipeline", timeout_s: float = 30.0):
        self.url = url.rstrip("/") + "/graphql"
        self.location, self.repository, self.job, self.timeout_s = location, repository, job, timeout_s

    def _query(self, query: str, variables: dict) -> dict:
        try:
            r = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise OrchestratorError(f"cannot reach the orchestrator at {self.url}: {exc}") from exc
        if r.status_code != 200:
            raise OrchestratorError(f"the orchestrator answered HTTP {r.status_code}: {r.text[:300]}")
        body = r.json()
        if body.get("errors"):
            raise OrchestratorError(f"the orchestrator refused the query: {body['errors'][0].get('message')}")
        return body["data"]

    @staticmethod
    def key_for(subject: str, idempotency_key: str) -> str:
        """The tag value of a caller's key (namespaced, so two callers' keys never collide)."""
        return hashlib.sha256(f"{subject}\0{idempotency_key}".encode()).hexdigest()[:40]

    def launch(self, case_id: str, *, tag_key: str) -> dict:
        """Launch the case's run, or return the run this key already launched."""
        found = self._query(_FIND, {"filter": {"tags": [{"key": IDEMPOTENCY_TAG, "value": tag_key}]}})["runsOrError"]
        if found["__typename"] != "Runs":
            raise OrchestratorError(found.get("message", found["__typename"]))
        if found["results"]:
            run = found["results"][0]
            tags = {t["key"]: t["value"] for t in run["tags"]}
            if tags.get(PARTITION_TAG) != case_id:
                raise IdempotencyConflict("this Idempotency-Key was already used for another case")
            return {"run_id": run["runId"], "status": run["status"], "created": False}
        params = {"selector": {"repositoryLocationName": self.location, "repositoryName": self.repository,
                               "jobName": self.job},
                  "runConfigData": {},
                  "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": case_id},
                                                 {"key": IDEMPOTENCY_TAG, "value": tag_key},
                                                 {"key": "aooct/launched-by", "value": "gateway"}]}}
        res = self._query(_LAUNCH, {"params": params})["launchRun"]
        if res["__typename"] != "LaunchRunSuccess":
            raise OrchestratorError(f"Dagster did not launch the run ({res['__typename']}): {res.get('message', '')}")
        return {"run_id": res["run"]["runId"], "status": res["run"]["status"], "created": True}

    def sensor_daemon_running(self) -> bool:
        """Whether Dagster's daemon runs the sensors (the drop sensor turns uploads into runs)."""
        status = self._query(_DAEMON, {})["instance"]["daemonHealth"]["daemonStatus"]
        return bool(status and status.get("healthy"))

    def status(self, run_id: str) -> dict | None:
        """A run's status and step events as Dagster has them; None when Dagster has no such run."""
        res = self._query(_RUN, {"runId": run_id})["runOrError"]
        if res["__typename"] == "RunNotFoundError":
            return None
        if res["__typename"] != "Run":
            raise OrchestratorError(res.get("message", res["__typename"]))
        tags = {t["key"]: t["value"] for t in res["tags"]}
        return {"run_id": res["runId"], "status": res["status"], "case_id": tags.get(PARTITION_TAG),
                "start_time": res["startTime"], "end_time": res["endTime"],
                "steps": [{"step": s["stepKey"], "status": s["status"], "start_time": s["startTime"],
                           "end_time": s["endTime"]} for s in res["stepStats"]]}
