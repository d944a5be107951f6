"""Evidence recall without the LLM: `python -m bench.evidence [SET ...]`.

For each answerable question: is the fact it needs (must_contain) in the chunks retrieved, in the
evidence the model is shown (fact@n), and in the first piece of evidence (fact@1, what the answer
quotes)? A fast figure to choose evidence selection by, seconds per set instead of minutes. Held-out
sets print figures only.
"""

from __future__ import annotations

import argparse
import os
import sys

from .manual_eval import HOMES, _pairs, _sets, services_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evidence", description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["apache"])
    parser.add_argument("--set", nargs="*", default=[], help="bot settings, e.g. top_k=5")
    parser.add_argument("--show-heldout", action="store_true")
    parser.add_argument("-v", action="store_true", help="list misses (not of held-out sets)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from bot.answer import EVIDENCE_CHUNKS, FACTS
    from bot.evaluate import contains_all, load_qa

    for label, docs, qa, home, role in _sets(args.sets, HOMES):
        services = services_for(docs, home, _pairs(args.set), {})
        answerer = services.answerer
        items = [i for i in load_qa(qa) if not i.expect_refusal]
        in_chunks = at1 = atn = 0
        for item in items:
            hits = answerer.retriever.retrieve(item.question, top_k=max(answerer.top_k, EVIDENCE_CHUNKS))
            facts = services.select_facts(item.question, hits, FACTS)
            texts = [f.text for f in facts]
            c = contains_all(" ".join(h.text for h in hits), item)
            one = bool(texts) and contains_all(texts[0], item)
            many = contains_all(" ".join(texts), item)
            in_chunks, at1, atn = in_chunks + c, at1 + one, atn + many
            if args.v and (role != "heldout" or args.show_heldout) and not one:
                print(f"  {item.id} chunks={'y' if c else 'n'} @n={'y' if many else 'n'} {item.must_contain}")
                for t in texts:
                    print(f"      - {t[:220]}")
        n = len(items)
        print(f"{label} ({role}): in chunks {in_chunks}/{n}, fact@{FACTS} {atn}/{n}, fact@1 {at1}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
