"""clm as a third-party client sees it: Python grpcio with stubs generated from proto/.

Runs against `clm up` at the CLM_*_ADDR addresses (tests/interop/run starts it). Checks the
standard health and reflection services of each service, reads a BadRequest detail from an
INVALID_ARGUMENT, and follows one contact from contacts through scoring and lifecycle to
analytics.
"""

import os
import time
import unittest
import uuid

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from clm.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from clm.common.v1 import common_pb2
from clm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from clm.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from clm.scoring.v1 import scoring_pb2, scoring_pb2_grpc

SERVICES = {
    "contacts": ("CLM_CONTACTS_ADDR", "clm.contacts.v1.ContactsService"),
    "scoring": ("CLM_SCORING_ADDR", "clm.scoring.v1.ScoringService"),
    "lifecycle": ("CLM_LIFECYCLE_ADDR", "clm.lifecycle.v1.LifecycleService"),
    "analytics": ("CLM_ANALYTICS_ADDR", "clm.analytics.v1.AnalyticsService"),
}
TIMEOUT = 10  # seconds per call


def channel(service):
    return grpc.insecure_channel(os.environ[SERVICES[service][0]])


def eventually(check, what, limit=30):
    """Calls `check` until it returns something truthy, for at most `limit` seconds.
    NOT_FOUND counts as not yet: each hop of the chain delivers on its own time, so a
    contact scored by scoring may not have reached lifecycle."""
    deadline = time.monotonic() + limit
    while True:
        try:
            value = check()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.1)


class Interop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channels = {name: channel(name) for name in SERVICES}

        def serving(name):
            stub = health_pb2_grpc.HealthStub(cls.channels[name])
            request = health_pb2.HealthCheckRequest(service=SERVICES[name][1])
            try:
                reply = stub.Check(request, timeout=1)
            except grpc.RpcError:
                return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING

        for name in SERVICES:
            eventually(lambda: serving(name), f"{name} SERVING", limit=120)

    @classmethod
    def tearDownClass(cls):
        for c in cls.channels.values():
            c.close()

    def test_every_service_reports_serving_on_the_standard_health_service(self):
        for name, (_, full_name) in SERVICES.items():
            stub = health_pb2_grpc.HealthStub(self.channels[name])
            for service in (full_name, ""):
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
                )
                self.assertEqual(
                    reply.status, health_pb2.HealthCheckResponse.SERVING, (name, service)
                )

    def test_reflection_lists_each_service_and_health(self):
        for name, (_, full_name) in SERVICES.items():
            stub = reflection_pb2_grpc.ServerReflectionStub(self.channels[name])
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            replies = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
            listed = {s.name for s in replies[0].list_services_response.service}
            self.assertIn(full_name, listed, name)
            self.assertIn("grpc.health.v1.Health", listed, name)

    def test_bad_input_comes_back_with_a_bad_request_detail_naming_the_field(self):
        stub = contacts_pb2_grpc.ContactsServiceStub(self.channels["contacts"])
        with self.assertRaises(grpc.RpcError) as raised:
            stub.CreateContact(
                contacts_pb2.CreateContactRequest(
                    contact=contacts_pb2.Contact(email="not an email")
                ),
                timeout=TIMEOUT,
            )
        self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        status = rpc_status.from_call(raised.exception)
        self.assertIsNotNone(status, "the status carries details")
        violations = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(v.field for v in bad.field_violations)
        self.assertIn("contact.email", violations)

    def test_an_interaction_reaches_scoring_lifecycle_and_analytics(self):
        contacts = contacts_pb2_grpc.ContactsServiceStub(self.channels["contacts"])
        marker = uuid.uuid4().hex
        contact = contacts.CreateContact(
            contacts_pb2.CreateContactRequest(
                contact=contacts_pb2.Contact(email=f"interop-{marker}@example.com")
            ),
            timeout=TIMEOUT,
        ).contact
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        for kind in ("demo_request", "purchase"):
            contacts.RecordInteraction(
                contacts_pb2.RecordInteractionRequest(
                    interaction=contacts_pb2.Interaction(
                        event_id=f"{marker}-{kind}",
                        contact_id=contact.id,
                        type=kind,
                        occurred_at=now,
                        value=common_pb2.Money(amount_micros=49_000_000, currency="EUR")
                        if kind == "purchase"
                        else None,
                    )
                ),
                timeout=TIMEOUT,
            )

        scoring = scoring_pb2_grpc.ScoringServiceStub(self.channels["scoring"])
        score = eventually(
            lambda: scoring.GetScore(
                scoring_pb2.GetScoreRequest(contact_id=contact.id), timeout=TIMEOUT
            ).score.total,
            "a score above zero",
        )
        self.assertGreater(score, 0)

        lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(self.channels["lifecycle"])
        eventually(
            lambda: lifecycle.GetContactStage(
                lifecycle_pb2.GetContactStageRequest(contact_id=contact.id),
                timeout=TIMEOUT,
            ).stage.stage
            == "conversion",
            "the move to conversion",
        )

        analytics = analytics_pb2_grpc.AnalyticsServiceStub(self.channels["analytics"])
        start = timestamp_pb2.Timestamp(seconds=now.seconds - 3600)

        def purchased():
            funnel = analytics.GetFunnel(
                analytics_pb2.GetFunnelRequest(
                    steps=["demo_request", "purchase"],
                    range=common_pb2.TimeRange(start_time=start),
                ),
                timeout=TIMEOUT,
            ).total
            return [s.contacts for s in funnel.steps] if funnel.steps[-1].contacts else None

        steps = eventually(purchased, "the funnel counting the purchase")
        self.assertGreaterEqual(steps[0], 1)
        self.assertGreaterEqual(steps[1], 1)


if __name__ == "__main__":
    unittest.main()
