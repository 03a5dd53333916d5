"""Members' digital ranking: tier, percentiles, trend, and the few things a member can do to move up.

`ranking.rank` ranks every member as of a date (batch, vectorised) and keeps the history;
`ranking.advice` offers the changes a member can make, each carried out in the member's raw rows
(`ranking.follow`), the features recomputed and re-scored by the real champion;
`ranking.tiers` names the tiers. docs/ranking.md explains the choices.
"""
