"""Which applications the fund's console lists: the most recent member loan applications.

Plain pandas, no web framework: `coopscore demo` reads the same list to record the consents the
members gave when they applied, so the demo queue shows who consented and who did not.
"""
from __future__ import annotations

import pandas as pd

from coopscore.paths import Paths

QUEUE_SIZE = 200


def recent_member_applications(paths: Paths, n: int = QUEUE_SIZE) -> pd.DataFrame:
    """The `n` newest member applications (newest first), with each member's cooperative,
    province and business sector."""
    apps = pd.read_parquet(paths.clean / "loan_applications.parquet")
    apps = apps[apps["entity_type"] == "member"].sort_values(
        ["application_date", "application_id"], ascending=False).head(n)
    members = pd.read_parquet(paths.clean / "members.parquet",
                              columns=["member_id", "cooperative_id", "province", "business_sector"])
    apps = apps.merge(members, left_on="entity_id", right_on="member_id", how="left")
    return apps.drop(columns=["member_id"]).reset_index(drop=True)
