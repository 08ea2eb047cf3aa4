"""The listing filter's fast paths decide exactly as the per-key rule does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.storage.filters import KeyFilter
from syncd.storage.types import Listed, ObjectInfo

# Short keys over an alphabet rich in the characters the rules care about, so that hidden
# names, suffixes, folders named like skipped files and prefixes cut mid-name all turn up.
keys = st.text(alphabet="ab./~tmp", min_size=1, max_size=12)
patterns = st.sampled_from(
    [".*", "*.tmp", "*~", "*.part", "Thumbs.db", "tmp", "*.t?p", "[ab]*", "a*b", "*"]
)


@settings(max_examples=300, deadline=None)
@given(
    listed=st.lists(keys, unique=True, max_size=40),
    skip=st.lists(patterns, max_size=4, unique=True),
    prefix=st.sampled_from(["", "a", "a/", "a.", ".", "b/t"]),
)
def test_filter_keeps_exactly_the_keys_the_rule_accepts(
    listed: list[str], skip: list[str], prefix: str
) -> None:
    keyfilter = KeyFilter(prefix=prefix, skip=skip)
    listing = [ObjectInfo(k, 1, 1.0) for k in sorted(listed)]
    rejected: list[Listed] = []
    kept = [o.key for o in keyfilter.filter(listing, rejected.append)]
    assert kept == [k for k in sorted(listed) if keyfilter.accepts(k)]
    assert len(kept) + len(rejected) == len(listed)
