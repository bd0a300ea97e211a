"""Which language identifier for segment.languages: py3langid vs lingua, speed and accuracy.

English: the segments humpback keeps from the 70 shared web pages (../shared/data/web, all English
pages). Other languages: short paragraphs we wrote for this benchmark (below), eight languages.
Writes bench/results/language.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"

OTHER = {
    "fr": [
        "Le marché du village ouvre tous les samedis matin, et les producteurs y vendent des fromages, du pain "
        "et des légumes de saison.",
        "Pour réussir une pâte brisée, il faut travailler le beurre froid rapidement "
        "avec la farine, puis laisser reposer la pâte au frais pendant une heure.",
    ],
    "de": [
        "Die Stadtbibliothek bleibt wegen Renovierungsarbeiten bis Ende des Monats geschlossen; Bücher können "
        "in der Zweigstelle am Bahnhof zurückgegeben werden.",
        "Wer im Winter Fahrrad fährt, sollte auf gute Beleuchtung und Reifen mit ausreichend Profil achten.",
    ],
    "es": [
        "El museo amplía su horario durante el verano y ofrece visitas guiadas gratuitas los domingos por la tarde.",
        "Para preparar un buen gazpacho se necesitan tomates maduros, pepino, pimiento, ajo, aceite de "
        "oliva y un poco de vinagre.",
    ],
    "it": [
        "La biblioteca comunale organizza ogni giovedì un laboratorio di lettura per bambini dai sei ai dieci anni.",
        "Il risotto va mescolato con pazienza, aggiungendo il brodo caldo poco alla volta finché il riso non è cotto.",
    ],
    "pt": [
        "A prefeitura anunciou novas ciclovias no centro da cidade, que devem ficar prontas até o fim do ano.",
        "Para conservar as ervas frescas por mais tempo, embrulhe-as num pano húmido e guarde-as no frigorífico.",
    ],
    "nl": [
        "De gemeente plant nieuwe bomen langs de grachten om de straten in de zomer koeler te houden.",
        "Wie een moestuin begint, kan het beste starten met sla, radijs en bonen, die snel en makkelijk groeien.",
    ],
    "ru": [
        "Городская библиотека будет закрыта на ремонт до конца месяца, книги можно вернуть в филиал у вокзала.",
        "Чтобы тесто для блинов получилось без комочков, молоко добавляют постепенно и всё время перемешивают.",
    ],
    "ja": [
        "図書館は改装工事のため今月末まで休館します。本の返却は駅前の分館で受け付けています。",
        "ご飯を美味しく炊くには、お米をよく研いで三十分ほど水に浸しておくことが大切です。",
    ],
}


def main() -> None:
    from humpback import SegmentConfig, segment
    from humpback.shards import read_stage

    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: the language benchmark reads the shared web pages")
    with tempfile.TemporaryDirectory() as tmp:
        segment(str(SHARED / "web"), Path(tmp) / "segments", SegmentConfig())
        english = [s["text"] for s in read_stage(Path(tmp) / "segments")]
    texts = [(t, "en") for t in english] + [(t, lang) for lang, ts in OTHER.items() for t in ts]

    import py3langid
    from lingua import LanguageDetectorBuilder

    lingua_detector = LanguageDetectorBuilder.from_all_languages().build()

    def by_lingua(text):
        found = lingua_detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else None

    rows = []
    for name, detect in [("py3langid", lambda t: py3langid.classify(t)[0]), ("lingua (all languages)", by_lingua)]:
        detect(texts[0][0])  # load the model outside the timing
        start = time.perf_counter()
        said = [detect(t) for t, _ in texts]
        seconds = time.perf_counter() - start
        en_right = sum(s == "en" for s, (_, y) in zip(said, texts) if y == "en")
        other_right = sum(s == y for s, (_, y) in zip(said, texts) if y != "en")
        rows.append(
            f"| {name} | {en_right}/{len(english)} | {other_right}/{len(texts) - len(english)} | "
            f"{1000 * seconds / len(texts):.2f} |"
        )
        print(rows[-1], flush=True)
    out = ROOT / "bench" / "results" / "language.md"
    out.write_text(
        "# Language identification for segment.languages (this machine)\n\n"
        f"{len(english)} English segments from the shared web pages; {len(texts) - len(english)} "
        "paragraphs in eight other languages written for this benchmark.\n\n"
        "| identifier | English right | other languages right | ms per text |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


if __name__ == "__main__":
    main()
