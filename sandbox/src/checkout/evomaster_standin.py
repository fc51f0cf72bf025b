#!/usr/bin/env python3
"""Stand-in for the EvoMaster-generated Train-Ticket test suite (the sandbox's EVOMASTER_TEST).

Like the published suite, it talks to the system at $TT_BASE_URL (the api-driver's recording
proxy) and exercises the user flows the campaign's faults hit: log in, search trips, book a
ticket (preserve), refresh the order list, read the security configs, load the home page.
Standard library only. It runs for $TT_TRAFFIC_SECONDS (default 5) seconds per invocation.

Answers with an error status are part of the experiment (a fault is active), not a failure
of the suite: the script exits 0 once the system answered at all, and 1 when nothing answered
(wrong $TT_BASE_URL, gateway unreachable).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ.get("TT_BASE_URL", "http://127.0.0.1:32677").rstrip("/")
SECONDS = float(os.environ.get("TT_TRAFFIC_SECONDS", "5"))
TIMEOUT = 10.0

# Train-Ticket's default account (ts-auth-service InitUser) and a route of its initial data.
USERNAME, PASSWORD = "fdse_microservice", "111111"
TRIPS = [("Shang Hai", "Su Zhou"), ("Shang Hai", "Nan Jing"), ("Nan Jing", "Shang Hai")]

counts = {"sent": 0, "answered": 0, "errors": 0, "unreachable": 0}


def call(method, path, body=None, token=None):
    """One request; returns (status, parsed JSON or None). Never raises."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    counts["sent"] += 1
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        counts["unreachable"] += 1
        print(f"{method} {path}: no answer ({e})")
        return None, None
    counts["answered"] += 1
    if status >= 400:
        counts["errors"] += 1
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, None


def login():
    status, doc = call("POST", "/api/v1/users/login",
                       {"username": USERNAME, "password": PASSWORD, "verificationCode": ""})
    if status == 200 and isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        return doc["data"].get("token")
    return None


def round_trip(i, token):
    start, end = TRIPS[i % len(TRIPS)]
    date = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    _, trips = call("POST", "/api/v1/travelservice/trips/left",
                    {"startPlace": start, "endPlace": end, "departureTime": date})
    trip_id = "D1345"
    if isinstance(trips, dict) and isinstance(trips.get("data"), list) and trips["data"]:
        first = trips["data"][0]
        if isinstance(first, dict):
            trip = first.get("tripId")
            if isinstance(trip, dict) and trip.get("type") and trip.get("number"):
                trip_id = f"{trip['type']}{trip['number']}"
            elif isinstance(trip, str):
                trip_id = trip
    call("POST", "/api/v1/preserveservice/preserve",
         {"accountId": "4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f",
          "contactsId": "contact-1", "tripId": trip_id, "seatType": "2",
          "date": date, "from": start, "to": end, "assurance": "0",
          "foodType": 0, "handleDate": date}, token)
    call("POST", "/api/v1/orderservice/order/refresh",
         {"loginId": "4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f", "enableStateQuery": False,
          "enableTravelDateQuery": False, "enableBoughtDateQuery": False}, token)
    call("GET", "/api/v1/securityservice/securityConfigs", token=token)
    call("GET", "/")


def main():
    deadline = time.monotonic() + SECONDS
    token = login()
    i = 0
    while time.monotonic() < deadline:
        if token is None and i % 5 == 0:
            token = login()
        round_trip(i, token)
        i += 1
        time.sleep(0.05)
    print(f"evomaster stand-in: {i} rounds, {counts['sent']} requests, "
          f"{counts['answered']} answered ({counts['errors']} with an error status), "
          f"{counts['unreachable']} without answer")
    return 0 if counts["answered"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
