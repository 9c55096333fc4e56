"""Where a consumer is: the IANA time zones and the US states the admin picks from (quiet hours,
SPEC R1; a queue's hours), shared by every layer."""
import zoneinfo

TIME_ZONE_CHOICES = sorted((name, name) for name in zoneinfo.available_timezones())

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California", "CO": "Colorado",
    "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts",
    "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico",
    "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming", "PR": "Puerto Rico",
}  # fmt: skip
US_STATE_CHOICES = sorted(US_STATES.items(), key=lambda item: item[1])
_BY_NAME = {name.lower(): code for code, name in US_STATES.items()}


def state_code(description: str) -> str:
    """The state of phonenumbers' geocoder description ("Texas", "New York, NY"), or ''."""
    description = (description or "").strip()
    if ", " in description:
        tail = description.rsplit(", ", 1)[1].upper()
        return tail if tail in US_STATES else ""
    return _BY_NAME.get(description.lower(), "")
