"""Address text -> a canonical parsed form (street parts, house number, block, intersection).

LMPD block addresses come in a handful of shapes::

    2700 BLOCK W MADISON ST        hundred-block (the incident is somewhere on 2700-2799)
    N 26TH ST / BANK ST            intersection (also ``&``, ``AND``, ``@``, ``AT``, ``TO``)
    I265S AT DIXIE HWY             interstate / ramp forms
    COMMUNITY / LARGE, IROQUOIS PARK   place names that are not addresses

plus ordinary street addresses (``2722 ELLIOTT AVE, Louisville, KY 40211-1234``). BLOCK is
handled before anything else (general parsers such as usaddress mislabel it). Street types
follow USPS Publication 28 abbreviations; directionals are N/S/E/W/NE/NW/SE/SW.

`parse_address` never raises: anything it cannot read comes back with ``kind`` ``"empty"``,
``"place"`` or ``"invalid"`` and a ``reason``. `ParsedAddress.normalized` is idempotent:
parsing a normalized string gives the same normalized string.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Longest input read; longer text is rejected (a block address is < 60 characters).
MAX_INPUT_CHARS = 200

DIRECTIONS: dict[str, str] = {
    "N": "N", "S": "S", "E": "E", "W": "W", "NE": "NE", "NW": "NW", "SE": "SE", "SW": "SW",
    "NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W", "NORTHEAST": "NE", "NORTHWEST": "NW",
    "SOUTHEAST": "SE", "SOUTHWEST": "SW",
}

#: USPS Publication 28 suffixes (common subset, plus Louisville's PKY and LMPD spellings).
STREET_TYPES: dict[str, str] = {}
for _canon, _variants in {
    "ALY": "ALLEY ALLEE ALLY", "ANX": "ANNEX", "ARC": "ARCADE", "AVE": "AVENUE AV AVEN AVENU AVN",
    "BND": "BEND", "BLF": "BLUFF", "BLVD": "BOULEVARD BOUL BOULV BLV", "BR": "BRANCH",
    "BRG": "BRIDGE", "BYP": "BYPASS BYPS", "CIR": "CIRCLE CIRC CIRCL CRCL", "CL": "",
    "CMNS": "COMMONS", "CT": "COURT CRT", "CTS": "COURTS", "CV": "COVE", "CRK": "CREEK",
    "CRES": "CRESCENT", "XING": "CROSSING CRSSNG", "DR": "DRIVE DRIV DRV", "EST": "ESTATE",
    "ESTS": "ESTATES", "EXPY": "EXPRESSWAY EXPR EXPRESS EXPW", "EXT": "EXTENSION",
    "FLS": "FALLS", "FRST": "FOREST", "FWY": "FREEWAY FRWY", "GDNS": "GARDENS", "GLN": "GLEN",
    "GRN": "GREEN", "GRV": "GROVE", "HBR": "HARBOR", "HTS": "HEIGHTS HT", "HWY": "HIGHWAY HIWAY HIWY HWAY",
    "HL": "HILL", "HLS": "HILLS", "HOLW": "HOLLOW HLLW HOLWS", "IS": "ISLAND", "KNL": "KNOLL",
    "LK": "LAKE", "LNDG": "LANDING", "LN": "LANE", "LOOP": "LOOPS", "MDW": "MEADOW",
    "MDWS": "MEADOWS", "ML": "MILL", "MNR": "MANOR", "MT": "", "OVAL": "", "PARK": "PK PRK",
    "PKWY": "PARKWAY PKY PARKWY PKWAY PKWYS", "PASS": "", "PATH": "PATHS", "PIKE": "PIKES",
    "PL": "PLACE", "PLZ": "PLAZA", "PT": "POINT", "RDG": "RIDGE", "RD": "ROAD", "ROW": "",
    "RUN": "", "SQ": "SQUARE", "ST": "STREET STR STRT", "TER": "TERRACE TERR",
    "TRCE": "TRACE TRCES", "TRL": "TRAIL TRAILS TRLS", "TPKE": "TURNPIKE TRNPK TURNPK",
    "VW": "VIEW", "VLG": "VILLAGE", "VLY": "VALLEY", "VIS": "VISTA", "WALK": "", "WAY": "WY",
    "WL": "WELL", "WLS": "WELLS", "WOODS": "",
}.items():
    STREET_TYPES[_canon] = _canon
    for _v in _variants.split():
        STREET_TYPES[_v] = _canon
#: Canonical type -> the word it abbreviates ("FERN VALLEY" may be the whole name of a road).
TYPE_WORDS: dict[str, str] = {}
for _word, _canon in STREET_TYPES.items():
    if len(_word) > len(TYPE_WORDS.get(_canon, "")) and _word not in ("STRT", "TRNPK"):
        TYPE_WORDS[_canon] = _word
TYPE_WORDS.update({"ST": "ST", "PKWY": "PARKWAY", "TRL": "TRAIL", "AVE": "AVENUE"})
# Types that are also common words inside names: only a type when they end the street.
_CL_NOT_TYPE = {"CL", "MT"}
for _t in _CL_NOT_TYPE:
    STREET_TYPES.pop(_t, None)

#: Name words with one spelling (the reference goes through the same rules).
NAME_WORDS: dict[str, str] = {
    "SAINT": "ST", "SNT": "ST", "MOUNT": "MT", "FORT": "FT", "U": "U",
    "DOCTOR": "DR", "JUNIOR": "JR",
}
#: Words replaced anywhere in a name ("3RD STREET RD" and "3RD ST RD" are one street).
NAME_ANYWHERE: dict[str, str] = {"STREET": "ST", "SAINT": "ST"}

_ORD_UNITS = {
    "FIRST": 1, "SECOND": 2, "THIRD": 3, "FOURTH": 4, "FIFTH": 5, "SIXTH": 6, "SEVENTH": 7,
    "EIGHTH": 8, "NINTH": 9, "TENTH": 10, "ELEVENTH": 11, "TWELFTH": 12, "THIRTEENTH": 13,
    "FOURTEENTH": 14, "FIFTEENTH": 15, "SIXTEENTH": 16, "SEVENTEENTH": 17, "EIGHTEENTH": 18,
    "NINETEENTH": 19, "TWENTIETH": 20, "THIRTIETH": 30, "FORTIETH": 40, "FIFTIETH": 50,
}
_TENS = {"TWENTY": 20, "THIRTY": 30, "FORTY": 40, "FIFTY": 50}

#: Unit designators: the rest of the street part is a unit, not part of the street.
UNIT_WORDS = frozenset({"APT", "APARTMENT", "UNIT", "STE", "SUITE", "LOT", "BLDG", "RM", "ROOM",
                        "FL", "FLOOR", "SPC", "TRLR", "#"})

#: Words that mark a place name (park, boat ramp, "community at large"), not an address.
PLACE_WORDS = frozenset({"LARGE", "PARK", "RAMP", "SCHOOL", "MALL", "HOSPITAL", "CEMETERY",
                         "AIRPORT", "STADIUM", "ZOO", "WATERFRONT", "BRIDGE", "RIVER", "MM"})
_PLACE_PREFIX = re.compile(r"^(?:WF|PARK|BRIDGE|BRG|ZOO)\s*-\s*")

_INTERSTATE = re.compile(r"^(?:I|IH|INTERSTATE)\s*-?\s*(\d{2,3})\s*([NSEW])?(?:\s+(?:N|S|E|W|EE|WW|NN|SS))?(?:\s+RAMP)?$")
_INTERSTATE_START = re.compile(r"^(?:I|IH|INTERSTATE)\s*-?\s*(\d{2,3})(?:[NSEW]|\b)")
_BLOCK = re.compile(r"^(\d{1,6})\s+(?:BLOCK|BLK|BLCK|BL)\s+(.*)$")
_NUMBER = re.compile(r"^(\d{1,6})(?:[A-Z]|\s*-\s*\d{1,6}[A-Z]?|\s+1/2)?\s+(.*)$")
_ZIP_TAIL = re.compile(r"(?:^|[\s,])(\d{5})(?:\s*-\s*\d{4})?\s*$")
_SEPARATORS = re.compile(r"\s*(?:/+|&|@|\bAND\b|\bAT\b|\bTO\b)\s*")
_JUNK = re.compile(r"[^A-Z0-9#/&@\-,\s]")
_SPACE = re.compile(r"\s+")
_HAS_LETTER = re.compile(r"[A-Z]")
_RANGE_START = re.compile(r"^(\d{1,6})\s*-\s*\d{1,6}[A-Z]?(?=\s)")
_ORDINAL = re.compile(r"^(\d{1,3})(ST|ND|RD|TH)?$")


@dataclass(frozen=True, slots=True)
class Street:
    """A street name split into USPS parts (all upper case, abbreviated)."""

    predir: str = ""
    name: str = ""
    stype: str = ""
    postdir: str = ""

    @property
    def key(self) -> str:
        """The full canonical street text, e.g. ``W MADISON ST``."""
        return " ".join(p for p in (self.predir, self.name, self.stype, self.postdir) if p)

    @property
    def is_interstate(self) -> bool:
        return self.name.startswith("I ") and self.name[2:5].rstrip(" RAMP").isdigit()


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """One address parsed.

    ``kind`` is ``address`` (number + street), ``block`` (hundred-block), ``intersection``
    (street + street2), ``street`` (street only), ``place`` (a named place, not geocodable),
    ``empty`` or ``invalid``; ``reason`` says why for the last three.
    """

    kind: str
    normalized: str
    number: int | None = None
    street: Street | None = None
    street2: Street | None = None
    zip: str = ""
    reason: str = ""


def _ordinal(n: int) -> str:
    suffix = "TH" if 10 <= n % 100 <= 20 else {1: "ST", 2: "ND", 3: "RD"}.get(n % 10, "TH")
    return f"{n}{suffix}"


def _words_to_ordinals(tokens: list[str]) -> list[str]:
    """``TWENTY SIXTH`` -> ``26TH``; ``FIRST`` -> ``1ST``; ``26`` (as a lone name) is left."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in _TENS and i + 1 < len(tokens) and tokens[i + 1] in _ORD_UNITS and _ORD_UNITS[tokens[i + 1]] < 10:
            out.append(_ordinal(_TENS[tok] + _ORD_UNITS[tokens[i + 1]]))
            i += 2
            continue
        if "-" in tok:
            a, _, b = tok.partition("-")
            if a in _TENS and b in _ORD_UNITS and _ORD_UNITS[b] < 10:
                out.append(_ordinal(_TENS[a] + _ORD_UNITS[b]))
                i += 1
                continue
        if tok in _ORD_UNITS:
            out.append(_ordinal(_ORD_UNITS[tok]))
        else:
            out.append(tok)
        i += 1
    return out


def parse_street(text: str) -> Street:
    """Split street text (no house number) into predir, name, type and postdir."""
    tokens = [t for t in _SPACE.split(text.replace("-", " ").strip()) if t]
    cut = next((i for i, t in enumerate(tokens) if (t in UNIT_WORDS or t.startswith("#")) and i >= 1), None)
    if cut is not None:
        tokens = tokens[:cut]
    tokens = [t.strip("#") for t in tokens if t.strip("#")]
    if not tokens:
        return Street()
    interstate = _INTERSTATE.match(" ".join(tokens)) or _INTERSTATE_START.match(" ".join(tokens))
    if interstate:
        return Street(name=f"I {interstate.group(1)}")
    if len(tokens) > 2 and tokens[0] == "U" and tokens[1] == "S":  # "U S HIGHWAY 42"
        tokens = ["US", *tokens[2:]]
    tokens = _words_to_ordinals(tokens)
    predir = stype = postdir = ""
    if len(tokens) >= 3 and tokens[-1] in DIRECTIONS and tokens[-2] in STREET_TYPES:
        postdir = DIRECTIONS[tokens.pop()]
    if len(tokens) >= 2 and tokens[-1] in STREET_TYPES:
        stype = STREET_TYPES[tokens.pop()]
        while len(tokens) >= 2 and STREET_TYPES.get(tokens[-1]) == stype:  # "ROCKFORD LN LN"
            tokens.pop()
    if len(tokens) >= 2 and tokens[0] in DIRECTIONS:
        predir = DIRECTIONS[tokens.pop(0)]
    if not postdir and len(tokens) >= 2 and tokens[-1] in DIRECTIONS and not stype:
        postdir = DIRECTIONS[tokens.pop()]
    name_tokens = []
    for i, tok in enumerate(tokens):
        tok = NAME_WORDS.get(tok, tok) if i == 0 else NAME_ANYWHERE.get(tok, tok)
        m = _ORDINAL.match(tok)
        if m and len(tokens) == 1:  # a lone number as a name: "26" / "26TH" -> "26TH"
            tok = _ordinal(int(m.group(1)))
        name_tokens.append(tok)
    return Street(predir, " ".join(name_tokens), stype, postdir)


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").upper()
    text = text.strip().lstrip("@#/&").strip()  # "@FERN CREEK PARK", "@WF - GREAT LAWN"
    text = text.replace(".", " ").replace("'", "")
    text = _JUNK.sub(" ", text).replace("#", " # ")
    text = _RANGE_START.sub(r"\1", text)  # "123-125 MAIN ST" -> "123 MAIN ST"
    if not _PLACE_PREFIX.match(text.strip()):  # "WF - BELVEDERE" keeps its dash
        text = text.replace("-", " ")  # "KY-841", "I-65", "TWENTY-SIXTH"
    return _SPACE.sub(" ", text).strip(" ,-")


def _split_zip(text: str) -> tuple[str, str]:
    """Pull a trailing ZIP / ZIP+4 and ``, CITY, KY`` off the end of an address."""
    zip5 = ""
    if "," in text:
        head, *rest = [p.strip() for p in text.split(",")]
        for part in rest:
            m = re.search(r"\b(\d{5})(?:\s*-\s*\d{4})?\b", part)
            if m:
                zip5 = m.group(1)
        text = head
    m = _ZIP_TAIL.search(text)
    if m and re.search(r"[A-Z]", text[: m.start()]):
        zip5 = zip5 or m.group(1)
        text = text[: m.start()].strip()
        text = re.sub(r"\s+(?:KY|KENTUCKY)$", "", text)
    return text.strip(), zip5


def _place_reason(text: str, intersection: bool = False) -> str:
    tokens = text.replace("/", " ").split()
    if "LARGE" in tokens:
        return "not a location: 'at large' (no fixed place)"
    if _PLACE_PREFIX.match(text):
        return "place name, not an address"
    # "RIVER", "PARK", "DEER PARK" are also roads: in an intersection each side is tried
    # as a street and reported as "no such street" when it is not one
    if not intersection and tokens and tokens[-1] in PLACE_WORDS:
        return "place name, not an address"
    if "MM" in tokens or re.match(r"^\d+(?:\s\d+)?\s+I\s?\d", text):
        return "interstate mile marker: no interstate geometry in the reference"
    return ""


@lru_cache(maxsize=200_000)
def parse_address(text: object, zip_code: object = "") -> ParsedAddress:
    """Parse one address string (never raises).

    Parameters
    ----------
    text
        The address as written (``2700 BLOCK W MADISON ST``, ``N 26TH ST / BANK ST``).
    zip_code
        A separate ZIP column value (5 digits or ZIP+4); a ZIP inside `text` is used otherwise.

    Returns
    -------
    ParsedAddress
    """
    zip5 = _zip5(zip_code)
    if not isinstance(text, str) or not text.strip():
        return ParsedAddress("empty", "", zip=zip5, reason="empty address")
    if len(text) > MAX_INPUT_CHARS:
        return ParsedAddress("invalid", "", zip=zip5,
                             reason=f"address longer than {MAX_INPUT_CHARS} characters")
    clean = _clean(text)
    clean, text_zip = _split_zip(clean)
    zip5 = zip5 or text_zip
    clean = clean.lstrip("@# ").strip()
    if not re.search(r"[A-Z]", clean):
        return ParsedAddress("invalid", "", zip=zip5, reason="no street name in the address")
    if _SEPARATORS.search(clean):
        parts = [p.strip(" ,-#") for p in _SEPARATORS.split(clean) if p.strip(" ,-#")]
        reason = _place_reason(clean, intersection=True)
        if reason and not any(_INTERSTATE.match(p) for p in parts):
            return ParsedAddress("place", " ".join(clean.replace("/", " ").split()), zip=zip5,
                                 reason=reason)
        if len(parts) >= 2:
            a = parse_street(_strip_number(parts[0]))
            b = parse_street(_strip_number(parts[1]))
            if _HAS_LETTER.search(a.name) and _HAS_LETTER.search(b.name):
                return ParsedAddress("intersection", f"{a.key} / {b.key}", street=a, street2=b,
                                     zip=zip5)
        if len(parts) == 1:
            clean = parts[0]
        else:
            return ParsedAddress("invalid", "", zip=zip5,
                                 reason="no street name in the address")
    # with a house number, "ARBOR PARK" is a street: only 'at large', "WF - X" and mile
    # markers are places then
    numbered = bool(_BLOCK.match(clean) or _NUMBER.match(clean))
    reason = _place_reason(clean, intersection=numbered)
    m = _BLOCK.match(clean)
    if m:
        street = parse_street(m.group(2))
        if street.name and not reason:
            number = int(m.group(1))
            return ParsedAddress("block", f"{number} BLOCK {street.key}", number=number,
                                 street=street, zip=zip5)
    if reason:
        return ParsedAddress("place", clean, zip=zip5, reason=reason)
    m = _NUMBER.match(clean)
    if m and re.search(r"[A-Z]", m.group(2)):
        street = parse_street(m.group(2))
        if street.name:
            number = int(m.group(1))
            return ParsedAddress("address", f"{number} {street.key}", number=number,
                                 street=street, zip=zip5)
    street = parse_street(clean)
    if street.name and re.search(r"[A-Z]", street.name):
        return ParsedAddress("street", street.key, street=street, zip=zip5)
    return ParsedAddress("invalid", "", zip=zip5, reason="no street name in the address")


def _zip5(zip_code: object) -> str:
    """The 5-digit ZIP of a ZIP column value (``40211``, ``40211-1234``, ``40211.0``); empty
    when it is not one."""
    if isinstance(zip_code, (str, int)) and not isinstance(zip_code, bool):
        m = re.match(r"^\s*(\d{5})(?:\s*-?\s*\d{4})?(?:\.0)?\s*$", str(zip_code))
        return m.group(1) if m else ""
    return ""


def _strip_number(part: str) -> str:
    """An intersection side written with a number (``100 MAIN ST``) keeps only the street."""
    while True:  # until stable, so that the output parses to itself
        part = part.strip(" #")
        m = _BLOCK.match(part) or _NUMBER.match(part)
        if not (m and re.search(r"[A-Z]", m.group(2))):
            return part
        part = m.group(2)


def normalize_address(text: object) -> str:
    """The canonical text of an address (idempotent); empty when nothing readable."""
    return parse_address(text).normalized
