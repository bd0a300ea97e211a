"""What the segment filters match: navigation headers and boilerplate lines, by their whole shape.

The paper drops segments whose header is navigation-like ("advertisement", "forum", "quick link",
"newsletter"). Matching such words anywhere in a header removes real content ("Chocolate chip
cookies", "Related rates in calculus", "Reader comments on the new policy"), so every rule here
is a regular expression that must match the WHOLE header or line (after normalise()): "Comments",
"9 Comments" and "Leave a comment" are navigation, a title that merely contains the word is not.

Both lists are config fields (SegmentConfig.nav_header_patterns, boilerplate_line_patterns), and
a hand-labelled set of real headers and lines (tests/data/filters) keeps them honest: the tests
hold the precision of removal at 0.95 or more and report the recall.
"""

from __future__ import annotations

import re
from functools import lru_cache

NAV_HEADER_PATTERNS = [
    # the paper's examples, as whole headers
    r"advertisements?|advertiser disclosure|sponsored( content| links| posts| stories)?|your ad choices",
    r"(discussion |community )?forums?",
    r"quick ?links?|useful links|site links",
    r"((free|e-?mail|our|the|weekly|daily) )*newsletters?( sign ?-?up)?|.{1,40} newsletters?",
    # sign-up, sharing, following
    r"(sign ?-?up|subscribe)( now| today| here)?|(sign ?-?up|subscribe)( to| for) .{1,60}|sign ?-?up successful",
    r"share( this( post| story| article| page| recipe)?| options| all sharing options.*| on .{1,30})?",
    r"follow( ?us)*( on( social)?.{0,30})?|follow .{1,30} online|stay (connected|in touch)|connect( with us)?",
    r"social( media)?( links| icons)?|join (us|our community|the conversation)",
    # lists of other pages
    r"related( (articles?|posts|stories|coverage|recipes|content|terms|links|reading|topics|videos|news|products))?"
    r"( ?more from .{1,30})?",
    r"(you (may|might) (also )?like|recommended( for you| reading)?|don'?t miss|editor'?s'? (picks?|choice)"
    r"|editors'? recommendations|top (stories|searches)|what to (read|watch) next|up next|read next)",
    r"most (popular|read|viewed|shared|commented)|popular (posts|articles|stories|now|on .{1,30})"
    r"|trending( (now|terms|topics|stories|articles))?",
    r"(the )?latest( (news|articles?|posts|stories|headlines|videos|on ?.{1,30}))?|(other )?recent (posts"
    r"|articles|stories|comments)",
    r"more (from|stories from) .{1,40}|more (articles|stories|posts|news)|(\w+ )?recommends",
    r"(post|site|site information|top|primary|main|footer|breadcrumb|page) navigation|navigation( menu(: .{0,30})?)?",
    r"(.{1,20} )?(main|profile|site|social|top|primary|secondary|footer|mobile|nav) menu|menu",
    # comments
    r"(user |reader )?comments|\d+ (comments?|responses?|thoughts|replies)( (to|on) .*)?|no comments( yet)?",
    r"(leave|post|add|write) a (comment|reply)( cancel (comment )?reply)?|loading comments.*|sign in to comment"
    r"|(publier un|aucun) commentaires?|comment from the forums",
    # page furniture
    r"(category |date |blog |monthly )?archives?|archives du blog|categories|tags?|tagged|topics",
    r"(site )?search|search (this site|the site|for articles.*|.{1,20} weekly)",
    r"log ?in|sign ?in|(or )?log ?in with.*|(my |your )?account|register|member login|signup ?/ ?login",
    r"about( us| me| the authors?| this (site|blog)| the blog)?|contact( us| form| me| information)?",
    r"(your |.{1,30} )?privacy( policy| overview| settings| notice)?|terms( (of (use|service)|and conditions))?"
    r"|cookies?( policy| settings| notice| consent)?|disclaimer",
    r"footer|sidebar|header|breadcrumbs?|skip to (main )?content|back to top|view image|you are here",
    r"want more|download (your|our|the) free .{1,40}|get (the|our) (app|newsletter)",
]

BOILERPLATE_LINE_PATTERNS = [
    # copyright and legal lines
    r"(copyright )?(©|\(c\)|copyright).{0,200}",
    r".{0,100}all rights reserved.{0,160}",
    r"(cookie|cookies|privacy)( policy| notice| settings)?|terms( (of (use|service)|and conditions))?|your ad choices",
    r"(we|this (site|website)) uses? cookies.*|by using this (site|website).*(terms|privacy|cookies).*",
    # credits
    r"\(?(photo|image|picture|video)s?( source| credit| courtesy)?s? ?: .{1,100}\)?|\(?(image"
    r"|photo) credit: .{1,100}\)?",
    r"citation ?: .{1,160}",
    # sign-up, sharing, following
    r"(sign ?-?up|subscribe|join)( now| today| here)?( to| for)? .{0,60}(newsletter|news|inbox|updates|mailing list|"
    r"e-?book|ecookbook|rss|email).{0,40}|subscribe( now)?|why subscribe\?",
    r"(click to )?(share|email|tweet|pin)( this)?( post| story| article| to a friend)?:?( on \w+( \(twitter\))?)*"
    r"( \(opens in new window\))?|(share on \w+( \w+)?( \(twitter\))? ?)+|all sharing options",
    r"follow us( on)?( \w+)*",
    r"((facebook|twitter|instagram|linkedin|youtube|pinterest|whatsapp|reddit|rss|email|messenger|tiktok|"
    r"github \w+ link|\w+ on (facebook|twitter|instagram|youtube|linkedin)) ?)+",
    r"click here( to .{1,80})?",
    r"i agree to my personal data being stored.*",
    # post furniture
    r"(previous|next)( (post|article|page|story|chapter))?:?( .{1,100})?|previous article.{0,200}",
    r"(tags?|filed under|categories|posted in) ?:.{0,200}",
    r"(last )?updated( on)?:?( .{1,40})?|(posted|published) (on|by) .{1,60}",
    r"\d+ comments?|this post has \d+ comments|see comments|leave a (comment|reply)|reply",
    r"read more|continue reading.*|back to top|-? ?advertisement ?-?|sponsored",
    # a line of nothing but site links
    r"((about( us| me)?|contact( us)?|privacy( policy)?|terms( of (use|service)| (and|&) conditions)?"
    r"|cookies?( policy)?"
    r"|disclaimer|disclosure|advertise( with us)?|careers|legal|press|staff|help|faq|sitemap|accessibility"
    r"|work (here|with me))[ ,|·•/]*){2,}",
    r"(sign ?-?up|log ?in|sign ?in|register)( ?/ ?(sign ?-?up|log ?in|sign ?in|register))+"
    r"|send (us )?an e-?mail.{0,80}",
    # dates and comment headers on their own
    r"((posted|published|updated) (on )?)?(\d{1,2}(st|nd|rd|th)?\.? )?(jan|feb|mar|apr|may|jun|jul|aug"
    r"|sep|oct|nov|dec)"
    r"[a-z]*\.?,? (\d{1,2}(st|nd|rd|th)?,? )?\d{4}(,? (at |\u00e0 )?\d{1,2}:\d{2}( ?[ap]m)?)?",
    r"\d{1,2}[./]\d{1,2}[./]\d{2,4}( (at )?\d{1,2}:\d{2}( ?[ap]m)?)?",
    r".{1,40} says:( .{0,40}\d{4}.{0,300})?|.{1,40}\d{4},? at \d{1,2}:\d{2}( ?[ap]m)? .{0,300} reply",
]


def normalise(text: str) -> str:
    """Lower case, straight quotes, one space, no surrounding punctuation (what the rules see)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" :.!?\u2026|-\u2013\u2014*\u00bb\u00ab>\u2022")


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def matches_whole(text: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether one of the patterns matches the whole normalised text."""
    return bool(patterns) and _compiled(tuple(patterns)).fullmatch(normalise(text)) is not None


def is_navigation_header(header: str, patterns: list[str] | tuple[str, ...] = tuple(NAV_HEADER_PATTERNS)) -> bool:
    return matches_whole(header, patterns)


def is_boilerplate_line(
    line: str,
    patterns: list[str] | tuple[str, ...] = tuple(BOILERPLATE_LINE_PATTERNS),
    max_chars: int = 400,
    header_patterns: list[str] | tuple[str, ...] = tuple(NAV_HEADER_PATTERNS),
) -> bool:
    """A whole line of boilerplate shape, or a line that is a navigation header on its own
    ("Tags", "Most popular"); lines longer than max_chars are prose, never matched."""
    return 0 < len(line.strip()) <= max_chars and (
        matches_whole(line, patterns) or matches_whole(line, header_patterns)
    )


_WORDS = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped: what the n-gram overlaps compare."""
    return _WORDS.findall(text.lower())


def quoted_answer(instruction: str, output: str, n: int) -> str | None:
    """The first run of ``n`` consecutive words of ``output`` that ``instruction`` repeats (case and
    punctuation aside), or None. A backward model trained on seed pairs whose instruction carries an
    input text learns to paste the segment into the instruction; such a pair teaches copying."""
    if n <= 0:
        return None
    said = words(instruction)
    if len(said) < n:
        return None
    answer = words(output)
    grams = {tuple(answer[i : i + n]) for i in range(len(answer) - n + 1)}
    for i in range(len(said) - n + 1):
        if tuple(said[i : i + n]) in grams:
            return " ".join(said[i : i + n])
    return None
