"""Made-up rows in the LMPD crime layout of 2016-2019 (the shipped samples' header), for tests
that write their own CSV files: a possession record in Russell that each test varies."""

from __future__ import annotations

HEADER_2017 = ["INCIDENT_NUMBER", "DATE_REPORTED", "DATE_OCCURED", "UOR_DESC", "CRIME_TYPE",
               "NIBRS_CODE", "UCR_HIERARCHY", "ATT_COMP", "LMPD_DIVISION", "LMPD_BEAT",
               "PREMISE_TYPE", "BLOCK_ADDRESS", "CITY", "ZIP_CODE", "ID", "ObjectId"]


def crime_row(n: int, **fields: str) -> dict[str, str]:
    """One crime-pre2023 row (defaults: a possession record in Russell), `fields` override."""
    row = dict(zip(HEADER_2017, [
        f"80-17-{n:06d}", "7/9/17 1:36 PM", "7/9/17 1:36 PM", "POSSESSION OF HEROIN",
        "DRUGS/ALCOHOL VIOLATIONS", "35A", "PART II", "COMPLETED", "1ST DIVISION", "111",
        "RESIDENCE / HOME", "2700 BLOCK W MADISON ST", "LOUISVILLE", "40211", str(n), str(n)],
        strict=True))
    row.update(fields)
    return row
