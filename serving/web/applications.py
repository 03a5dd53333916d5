"""Which applications the fund's console lists: the most recent member loan applications
addressed to one lender.

Plain pandas, no web framework: `coopscore demo` reads the same list to record the consents the
members gave when they applied, so the demo queue shows who consented and who did not.
"""
from __future__ import annotations

import pandas as pd

from settings import Paths
from data_contracts.vocabulary import LENDERS

QUEUE_SIZE = 200


def recent_member_applications(paths: Paths, n: int = QUEUE_SIZE, lender_id: str | None = None
                               ) -> pd.DataFrame:
    """The `n` newest member applications (newest first) addressed to `lender_id` (every lender's
    when None), with each member's cooperative, province and business sector.

    An id that is not one of `vocabulary.LENDERS` is a ValueError: it would only ever list nothing."""
    if lender_id is not None and lender_id not in LENDERS:
        raise ValueError(f"lender {lender_id!r} is not a lender of the platform; lenders: "
                         f"{', '.join(LENDERS)} (data_contracts/vocabulary.py)")
    apps = pd.read_parquet(paths.clean / "loan_applications.parquet")
    apps = apps[apps["entity_type"] == "member"]
    if lender_id is not None:
        apps = apps[apps["lender_id"] == lender_id]
    apps = apps.sort_values(["application_date", "application_id"], ascending=False).head(n)
    members = pd.read_parquet(paths.clean / "members.parquet",
                              columns=["member_id", "cooperative_id", "province", "business_sector"])
    apps = apps.merge(members, left_on="entity_id", right_on="member_id", how="left")
    return apps.drop(columns=["member_id"]).reset_index(drop=True)


def find_application(paths: Paths, application_id: str) -> dict | None:
    """One application by id, whichever lender it is addressed to (None when there is none): the
    console uses it only to audit an officer's attempt at another fund's application."""
    apps = pd.read_parquet(paths.clean / "loan_applications.parquet",
                           columns=["application_id", "entity_type", "entity_id", "lender_id"],
                           filters=[("application_id", "==", application_id)])
    return apps.iloc[0].to_dict() if len(apps) else None
