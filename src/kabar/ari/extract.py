"""Qualification answers from what the customer writes (rule-based, Indonesian-aware).

Used on its own in no-LLM mode, and under the LLM's structured extraction otherwise (the LLM's
non-empty values win). ``pending`` is the question ARI asked last: a bare "Budi" or "50 juta"
means something only as the answer to a question.

Fixes over the original (§6.6, §6.12): whole-word matching with negatives checked first ("tidak
ada" is *no*), "bahasa Inggris" is a language and not the United Kingdom, and short country aliases
only match as words ("au" is not inside "mau").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kabar.ari.dates import normalize

# Question order in the rule-based receptionist.
REQUIRED_FIELDS = ("name", "country", "timeline", "budget", "english_level", "email")
OPTIONAL_FIELDS = ("ielts_score", "activity", "program")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
DOCUMENTS = ("passport", "cv", "english_test", "transcript")

FIELD_LABELS = {
    "name": "Nama",
    "email": "Email",
    "country": "Negara tujuan",
    "budget": "Budget",
    "timeline": "Rencana berangkat",
    "english_level": "Bahasa Inggris",
    "ielts_score": "Skor IELTS",
    "activity": "Kegiatan saat ini",
    "program": "Program",
}
DOCUMENT_LABELS = {"passport": "paspor", "cv": "CV", "english_test": "sertifikat bahasa Inggris", "transcript": "transkrip nilai"}

# Canonical country → aliases (Indonesian and English). Matched as whole words, longest first.
COUNTRIES: dict[str, tuple[str, ...]] = {
    "United Kingdom": ("uk", "united kingdom", "england", "britain", "great britain", "inggris", "britania raya"),
    "United States": ("us", "usa", "america", "united states", "amerika", "amerika serikat"),
    "Australia": ("au", "aussie", "australia", "ostrali"),
    "New Zealand": ("nz", "new zealand", "selandia baru"),
    "Canada": ("canada", "kanada"),
    "Singapore": ("sg", "singapore", "singapura"),
    "Malaysia": ("malaysia",),
    "Japan": ("japan", "jepang"),
    "South Korea": ("korea", "south korea", "korea selatan", "korsel"),
    "Germany": ("germany", "jerman"),
    "Netherlands": ("netherlands", "holland", "belanda"),
    "Ireland": ("ireland", "irlandia"),
    "France": ("france", "prancis", "perancis"),
    "China": ("china", "tiongkok", "cina"),
    "Taiwan": ("taiwan",),
}
_ALIASES = sorted(((alias, name) for name, aliases in COUNTRIES.items() for alias in aliases), key=lambda p: -len(p[0]))
_LANGUAGE_PHRASES = re.compile(r"\b(bahasa|b\.|bhs\.?|les|kursus|english|guru)\s+(inggris|english)\b")

_NEGATIVE = r"belum|blm|tidak|tdk|gak|ga|nggak|ngga|engga|enggak|ndak|nope|no|not|tak|kagak|gk|g"
_POSITIVE = r"sudah|udah|sdh|udh|ada|punya|yes|iya|ya|yaa|yap|yup|siap|ready|done|ok|oke|okay|okey|sip|beres|lengkap|pernah"
_NEG_RE = re.compile(rf"\b({_NEGATIVE})\b")
_POS_RE = re.compile(rf"\b({_POSITIVE})\b")

_DOC_WORDS = {
    "passport": r"paspor|passport|pasport",
    "cv": r"cv|resume|riwayat hidup|curriculum vitae",
    "english_test": r"ielts|toefl|pte|duolingo|sertifikat bahasa|tes bahasa|test bahasa|english test|sertifikat inggris",
    "transcript": r"transkrip|transcript|rapor|raport",
}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
EMAIL_VALID = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")

_STOP_NAMES = {
    "halo", "hallo", "hai", "hi", "hello", "pagi", "siang", "sore", "malam", "selamat", "iya", "ya", "ok",
    "oke", "baik", "terima", "kasih", "makasih", "thanks", "kak", "kakak", "min", "admin", "mau", "tanya",
    "saya", "aku", "boleh", "bisa", "tidak", "belum", "sudah", "ada", "info", "permisi", "assalamualaikum",
    "test", "tes", "p", "ping", "apa", "siapa", "gimana", "bagaimana", "kenapa", "dong", "deh", "nih", "sip",
    "haha", "hehe", "hihi", "oke", "okay", "yes", "no", "nope", "yah", "aduh", "waduh", "ehm", "emm", "umm",
}  # fmt: skip
_NAME_INTRO = re.compile(
    r"\b(?:nama\s+(?:saya|aku|ku|gue|gw)|namaku|nama\s+lengkap(?:\s+saya)?|my name is|i am|i'm|panggil(?:\s+saja)?(?:\s+aku|\s+saya)?)\s*(?:adalah|:|ialah)?\s+"
    r"([a-zA-Z][a-zA-Z.'\- ]{1,60})",
    re.IGNORECASE,
)
_NAME_STOP = re.compile(r"\s+(?:dari|dan|umur|usia|mau|ingin|asal|kak|tinggal|,|\.).*$", re.IGNORECASE)

_BUDGET = re.compile(
    r"(?:\brp\.?\s*)?(\d+(?:[.,]\d+)*)(?:\s*(?:-|s/?d|sampai|hingga|–)\s*(\d+(?:[.,]\d+)*))?\s*"
    r"(juta|jt|jutaan|miliar|milyar|m|ribu|rb|k|million|billion)\b",
    re.IGNORECASE,
)
_RUPIAH = re.compile(r"\brp\.?\s*(\d{1,3}(?:[.,]\d{3})+|\d{4,})", re.IGNORECASE)

_MONTHS = r"jan(?:uari)?|feb(?:ruari)?|mar(?:et)?|apr(?:il)?|mei|jun[i]?|jul[i]?|agu(?:stus)?|agt|sep(?:t(?:ember)?)?|okt(?:ober)?|nov(?:ember)?|des(?:ember)?|january|february|march|may|june|july|august|october|december"
_TIMELINE = re.compile(
    r"\b(tahun\s+(?:ini|depan|besok)|bulan\s+(?:ini|depan)|semester\s+(?:ini|depan)|"
    r"\d+\s*(?:bulan|bln|tahun|thn)\s*(?:lagi|ke\s*depan|kedepan|mendatang)?|"
    r"(?:intake\s+)?(?:" + _MONTHS + r")\s*(?:20\d\d)?|20\d\d|secepatnya|segera|asap|"
    r"next year|this year)\b",
    re.IGNORECASE,
)
_ENGLISH_TEST = re.compile(r"\b(ielts|toefl(?:\s*ibt|\s*itp)?|pte|duolingo|toeic)\s*(?:score|skor|nilai|saya|ku|nya)?\s*[:=]?\s*(\d{1,3}(?:[.,]\d)?)\b", re.IGNORECASE)
_LEVELS = (
    ("fluent", r"lancar|fluent|mahir|advanced|native|jago|fasih|c1|c2|sangat baik|bagus banget"),
    ("intermediate", r"menengah|lumayan|intermediate|cukup|sedang|b1|b2|biasa aja|standar|lancar sedikit"),
    ("beginner", r"pemula|dasar|beginner|basic|kurang|jelek|a1|a2|belum lancar|tidak lancar|gak lancar|nggak lancar|sedikit"),
)
_ACTIVITY = (
    ("bekerja", r"kerja|bekerja|karyawan|kantor|wiraswasta|bisnis|usaha|pegawai|working"),
    ("kuliah", r"kuliah|mahasiswa|mahasiswi|college|university student"),
    ("sekolah", r"sma|smk|sekolah|siswa|kelas\s*1[0-2]|pelajar|high school"),
    ("lulus", r"fresh\s*grad(?:uate)?|baru lulus|sudah lulus|lulusan|graduated"),
)
_PROGRAM = re.compile(
    r"\b(s1|s2|s3|d3|d4|sarjana|magister|master(?:'?s)?|bachelor(?:'?s)?|diploma|phd|doktor|doctorate|mba|foundation|pathway|postgrad(?:uate)?|undergrad(?:uate)?)\b",
    re.IGNORECASE,
)
_MAJOR = re.compile(r"\bjurusan\s+((?:(?!di\b|ke\b|tahun\b|untuk\b|dan\b|atau\b|budget\b|dengan\b)[a-z&]+\s*){1,3})", re.IGNORECASE)

_WANTS_HUMAN = re.compile(
    r"\b(?:(?:bicara|ngobrol|chat|bincang|hubungkan|sambungkan|terhubung|telepon|telp|telfon|call|hubungi)\s+(?:dengan|sama|ke|dgn|sm)?\s*"
    r"(?:admin|cs|orang|manusia|konsultan|staf|staff|agen|petugas|customer service)|"
    r"minta\s+(?:admin|cs|konsultan|orang)|(?:human|real person|bukan bot|sama orang asli))\b",
    re.IGNORECASE,
)
_WANTS_BOOKING = re.compile(r"\b(konsultasi|konsul|jadwal|booking|book|janji temu|appointment|meeting|ketemu|bertemu|daftar konsultasi)\b", re.IGNORECASE)
_AFFIRM = re.compile(r"^\s*(ya+|iya+|yes|yap|yup|ok(?:e|ey|ay)?|boleh|mau|setuju|betul|benar|bener|deal|siap|bisa|sip|gas|oke deh|baik|tentu|pasti|y)\b", re.IGNORECASE)
_DECLINE = re.compile(
    r"\b(tidak|tdk|nggak|ngga|gak|ga|engga|enggak|no|jangan|batal|belum mau|nanti saja|nanti aja|lain kali|tidak jadi|gak jadi|ga jadi|ngga jadi|skip)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"\?|^\s*(apa|apakah|berapa|bagaimana|gimana|kapan|dimana|di mana|kenapa|mengapa|bisakah|bolehkah|ada\s+gak|ada\s+nggak|syarat|info)\b",
    re.IGNORECASE,
)
_UNKNOWN_ANSWER = re.compile(r"\b(belum\s+(?:tau|tahu|ada|pasti|yakin|kepikiran)|tidak\s+tahu|gak\s+tau|nggak\s+tau|ga\s+tau|terserah|tergantung|rahasia|bingung)\b", re.IGNORECASE)


@dataclass
class Extraction:
    fields: dict[str, str] = field(default_factory=dict)
    documents: dict[str, bool] = field(default_factory=dict)
    wants_human: bool = False
    wants_booking: bool = False
    affirmative: bool = False
    declines: bool = False
    question: bool = False

    def merge(self, other: Extraction) -> Extraction:
        """``other``'s non-empty values win (the LLM over the rules)."""
        return Extraction(
            fields={**self.fields, **{k: v for k, v in other.fields.items() if v}},
            documents={**self.documents, **other.documents},
            wants_human=self.wants_human or other.wants_human,
            wants_booking=self.wants_booking or other.wants_booking,
            affirmative=self.affirmative or other.affirmative,
            declines=self.declines or other.declines,
            question=self.question or other.question,
        )


def detect_country(text: str) -> str | None:
    """The destination named in ``text``: whole-word aliases, the longest match, first in the text."""
    norm = _LANGUAGE_PHRASES.sub(" ", normalize(text))
    best: tuple[int, int, str] | None = None  # (position, -length, country)
    for alias, country in _ALIASES:
        for match in re.finditer(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", norm):
            key = (match.start(), -len(alias), country)
            if best is None or key < best:
                best = key
    return best[2] if best else None


def parse_yes_no(text: str) -> bool | None:
    """A document answer: negatives first (so "tidak ada" is no), then positives, whole words."""
    norm = normalize(text)
    if _NEG_RE.search(norm):
        return False
    if _POS_RE.search(norm):
        return True
    return None


def _clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[,;.!?\n]|\b(?:tapi|tetapi|namun|dan|sama|serta|but|and)\b", text) if c.strip()]


def _documents(norm: str, pending_doc: str | None) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for clause in _clauses(norm):
        for key, words in _DOC_WORDS.items():
            if re.search(rf"\b({words})\b", clause):
                answer = parse_yes_no(clause)
                if answer is not None:
                    found[key] = answer
    if pending_doc and pending_doc not in found:
        answer = parse_yes_no(norm)
        if answer is not None:
            found[pending_doc] = answer
    return found


def _name(text: str, pending: bool) -> str | None:
    match = _NAME_INTRO.search(text)
    candidate = None
    if match:
        candidate = _NAME_STOP.sub("", match.group(1)).strip()
    elif pending:
        stripped = re.sub(r"^\s*(?:saya|aku|nama\s*nya|namanya|ini|dengan)\s+", "", text.strip(), flags=re.IGNORECASE)
        stripped = re.sub(r"[.!]+$", "", stripped).strip()
        stripped = _NAME_STOP.sub("", stripped).strip()
        words = stripped.split()
        # Names are words with vowels ("hmm", "wkwk" are not names).
        if 1 <= len(words) <= 4 and all(re.fullmatch(r"[A-Za-z][A-Za-z.'\-]*", w) and re.search(r"[aeiouAEIOU]", w) for w in words):
            if not any(w.lower() in _STOP_NAMES for w in words):
                candidate = stripped
    if not candidate:
        return None
    words = candidate.split()[:4]
    if any(w.lower() in _STOP_NAMES for w in words[:1]):
        return None
    return " ".join(w[:1].upper() + w[1:].lower() if w.islower() or w.isupper() else w for w in words)


def _budget(text: str, pending: bool) -> str | None:
    match = _BUDGET.search(text)
    if match:
        return re.sub(r"\s+", " ", match.group(0)).strip()
    match = _RUPIAH.search(text)
    if match:
        return match.group(0).strip()
    if pending:
        number = re.fullmatch(r"\s*(?:sekitar|kira-kira|kurang lebih|kisaran|\+-|±)?\s*(\d{2,4})\s*", text)
        if number:
            return f"{number.group(1)} juta"  # "300" said about a yearly budget means millions
        if vague := _UNKNOWN_ANSWER.search(text):
            return vague.group(0)
    return None


def _english(norm: str, pending: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    test = _ENGLISH_TEST.search(norm)
    if test:
        name = test.group(1).upper().replace(" ", " ")
        score = test.group(2).replace(",", ".")
        out["english_level"] = f"{name} {score}"
        if name.startswith("IELTS"):
            out["ielts_score"] = score
        return out
    if pending:
        bare = re.fullmatch(r"\s*(?:sekitar|kira-kira)?\s*([4-9](?:[.,][05])?)\s*", norm)
        if bare:
            score = bare.group(1).replace(",", ".")
            return {"english_level": f"IELTS {score}", "ielts_score": score}
    if pending or re.search(r"\b(inggris|english)\b", norm):
        for level, words in _LEVELS:
            if re.search(rf"\b({words})\b", norm):
                out["english_level"] = level
                return out
    if pending and re.search(r"\b(belum (?:pernah )?tes|belum ada|belum punya)\b", norm):
        out["english_level"] = "belum tes"
    return out


def _timeline(norm: str, pending: bool) -> str | None:
    match = _TIMELINE.search(norm)
    if match:
        return match.group(0).strip()
    if pending and (vague := re.search(r"\b(nanti\s+dulu|masih\s+lama)\b", norm) or _UNKNOWN_ANSWER.search(norm)):
        return vague.group(0)
    return None


def _activity(norm: str, pending: bool) -> str | None:
    explicit = re.search(r"\b(sedang|lagi|masih|sudah|udah|saat ini|sekarang)\s+(\w+)", norm)
    if not pending and not explicit:
        return None
    scope = norm if pending else explicit.group(0)
    for value, words in _ACTIVITY:
        if re.search(rf"\b({words})\b", scope):
            return value
    return norm.strip()[:80] if pending and norm.strip() else None


def _program(norm: str, pending: bool) -> str | None:
    match = _PROGRAM.search(norm)
    if match:
        level = match.group(1).upper() if len(match.group(1)) <= 3 else match.group(1).lower()
        major = _MAJOR.search(norm)
        return f"{level} {major.group(1).strip()}" if major else level
    major = _MAJOR.search(norm)
    if major:
        return major.group(1).strip()
    return norm.strip()[:80] if pending and norm.strip() else None


def extract(text: str, pending: str | None = None) -> Extraction:
    """Fields, documents and intents in one customer message.

    ``pending``: the field ARI asked for last ("budget"), or ``"doc:<key>"`` for a document.
    """
    norm = normalize(text)
    pending_doc = pending[4:] if pending and pending.startswith("doc:") else None
    out = Extraction()
    if email := _EMAIL.search(text):
        out.fields["email"] = email.group(0).lower()
    if name := _name(text, pending == "name"):
        out.fields["name"] = name
    if country := detect_country(text):
        out.fields["country"] = country
    if budget := _budget(norm, pending == "budget"):
        out.fields["budget"] = budget
    if timeline := _timeline(norm, pending == "timeline"):
        # An English test score or a budget is not a timeline ("IELTS 7", "50 juta").
        out.fields["timeline"] = timeline
    out.fields.update(_english(norm, pending == "english_level"))
    if activity := _activity(norm, pending == "activity"):
        out.fields["activity"] = activity
    if (program := _program(norm, pending == "program")) and (pending == "program" or _PROGRAM.search(norm) or _MAJOR.search(norm)):
        out.fields["program"] = program
    out.documents = _documents(norm, pending_doc)
    if "ielts_score" in out.fields or _ENGLISH_TEST.search(norm):
        out.documents.setdefault("english_test", True)  # a score means a test certificate exists
    elif out.fields.get("english_level") == "belum tes":
        out.documents.setdefault("english_test", False)
    out.wants_human = bool(_WANTS_HUMAN.search(norm))
    out.wants_booking = bool(_WANTS_BOOKING.search(norm))
    out.declines = bool(_DECLINE.search(norm))
    out.affirmative = bool(_AFFIRM.search(norm)) and not out.declines
    out.question = bool(_QUESTION.search(norm))
    # A number that is an English score, a date or money is not a timeline, and vice versa.
    if "timeline" in out.fields and re.fullmatch(r"\d{1,3}", out.fields["timeline"]):
        del out.fields["timeline"]
    return out


def is_unknown_answer(value: str) -> bool:
    """"belum tau", "tergantung": an answer that says nothing (no points for it)."""
    return bool(_UNKNOWN_ANSWER.search(value or "")) or normalize(value or "") in {"belum ada", "tidak ada", "gak ada", "-"}
