"""Write the PDF and DOCX documents of the Acme Quillworks sample corpus.

The text of every binary document lives in this file, so the corpus can be
reviewed and diffed as text; the generated files are committed alongside.

Regenerate (the libraries are only needed here, not by expertbot itself):

    python3 -m venv /tmp/acmegen
    /tmp/acmegen/bin/pip install -q fpdf2 python-docx
    /tmp/acmegen/bin/python examples/acme/make_binary_docs.py

Blocks are (kind, payload): "h1"/"h2" headings, "p" a paragraph, "ul" a list
of bullet strings. PDFs use the core Helvetica font, so text must be latin-1.
"""

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path(__file__).resolve().parent / "docs"
AUTHOR = "Acme Quillworks Ltd."
# Fixed so that regenerating without text changes gives the same metadata.
STAMP = datetime(2024, 9, 2, 9, 0, tzinfo=UTC)

EXPENSE_POLICY = ("policies/expense-policy.pdf", "Expense Policy", [
    ("h1", "Expense Policy"),
    ("p", "Version 3.2, effective 1 April 2024. Owner: Rosalind Achterberg, Finance Controller. "
          "This policy explains what Acme Quillworks pays back, how to claim and who approves. "
          "Booking business travel is covered by the travel policy."),
    ("h2", "How to claim"),
    ("p", "Submit every claim in Ledgerline, our expense tool, within 30 days of spending the money. "
          "Claims older than 30 days are only paid with written approval from the Finance Controller. "
          "Attach an itemised receipt for every expense above GBP 25; a card slip alone is not a receipt."),
    ("p", "Every claim receives an Expense Submission Reference (ESR), for example ESR-2024-000123. "
          "Quote the ESR in any question to Finance; we cannot look up claims by name or amount."),
    ("h2", "Approval limits"),
    ("ul", ["Up to GBP 500: your manager approves.",
            "GBP 500 to GBP 2,500: your manager and the Finance Controller approve.",
            "Above GBP 2,500: the CTO or the CEO approves, after the Finance Controller.",
            "Nobody may approve their own claim or a claim from their own manager."]),
    ("h2", "When you are paid"),
    ("p", "Claims fully approved by the 20th of the month are paid with that month's salary. "
          "Claims approved after the 20th are paid the following month."),
    ("h2", "Quill Cards"),
    ("p", "Employees who spend regularly on behalf of the company can hold a Quill Card, our company "
          "credit card. The standard limit is GBP 3,000 per month. Quill Card spending is reconciled "
          "in Ledgerline in the same way as a claim, within 30 days. Lost Quill Cards must be frozen "
          "in the Ledgerline app immediately."),
    ("h2", "What we pay for"),
    ("ul", ["Client entertainment: up to GBP 60 per head, including drinks. Name every guest in the claim.",
            "Home office equipment: a one-time allowance of GBP 350 per employee, "
            "for a desk, chair or monitor.",
            "Books and courses are paid from the Sharpening Fund, not as expenses.",
            "Mobile phone bills: up to GBP 20 per month for employees who carry a Foghorn pager."]),
    ("h2", "What we do not pay for"),
    ("ul", ["Traffic and parking fines.",
            "Alcohol, except as part of client entertainment.",
            "Meals while travelling, because the per diem already covers them.",
            "Personal subscriptions, even if you sometimes use them for work.",
            "Upgrades to seats, rooms or classes of travel beyond the travel policy."]),
    ("h2", "Misuse"),
    ("p", "False or inflated claims are treated as gross misconduct. Finance audits a random 5% of "
          "claims every month."),
])

BLOTTER_DATASHEET = ("products/blotter-datasheet.pdf", "Blotter Datasheet", [
    ("h1", "Blotter: Tamper-Evident Audit Log for Inkwell"),
    ("p", "Product datasheet, Blotter 3.4. Product manager: Callum Ferro. Built by the Blotter quire."),
    ("h2", "What Blotter does"),
    ("p", "Blotter records every action taken in a Folio (who opened, edited, sent or signed which "
          "document, and when) in an append-only log that nobody, including Acme Quillworks staff, "
          "can change. Auditors and compliance teams use it to prove what happened to a contract."),
    ("h2", "Chainstitch"),
    ("p", "Each Blotter event contains the SHA-256 hash of the event before it. We call this hash chain "
          "Chainstitch. If any event were altered or removed, the chain would break, and the Blotter "
          "verifier reports the first broken link. Customers can run the verifier themselves with "
          "the open-source blotter-verify tool."),
    ("h2", "Capacity"),
    ("ul", ["Ingest limit: 2,000 events per second per Folio; "
            "bursts above the limit are queued, never dropped.",
            "Each Folio's log is split into 16 Blotter Stream Partitions (BSPs) to spread the load.",
            "Query API latency: p99 below 800 ms for queries covering up to 90 days.",
            "Maximum size of a single event: 64 KB."]),
    ("h2", "Retention"),
    ("p", "Blotter keeps events for 400 days by default. With the Blotter Vault add-on, events are kept "
          "for up to 7 years in write-once storage. Blotter Vault costs GBP 0.80 per GB per month."),
    ("h2", "Export"),
    ("ul", ["Download as JSONL or CSV from the Folio admin page.",
            "Stream to the customer's SIEM as syslog over TLS on port 6514.",
            "Scheduled daily exports to the customer's own object storage bucket."]),
    ("h2", "Pricing"),
    ("p", "Blotter is included at no extra cost in Inkwell Atelier. Studio customers can add it for "
          "GBP 4 per seat per month. Blotter is not available on Starter."),
])

BENEFITS_SUMMARY = ("handbook/benefits-summary.pdf", "Benefits Summary 2024", [
    ("h1", "Benefits Summary 2024"),
    ("p", "This summary covers the benefits for employees on a Dunmore employment contract. It is "
          "maintained by the People team. The full scheme rules are available from Priya Okonkwo-Hale."),
    ("h2", "Pension"),
    ("p", "Acme Quillworks matches your pension contributions up to 6% of your salary. You contribute "
          "at least 3% and the company always adds at least 3%. You can change your contribution once "
          "a month in Almanac."),
    ("h2", "Health"),
    ("ul", ["Private medical insurance with Harrowfield Health for you, your partner and your children.",
            "Dental cover up to GBP 800 per person per year.",
            "An eye test every 2 years and up to GBP 150 towards glasses for screen use.",
            "Lanternline, our employee assistance programme: free, confidential counselling 24 hours a day, "
            "reached through the Almanac app."]),
    ("h2", "Life insurance"),
    ("p", "Life insurance pays 4 times your annual salary. Cover starts on your first day; you do not "
          "need to do anything to join."),
    ("h2", "Learning: the Sharpening Fund"),
    ("p", "Every employee has a personal Sharpening Fund of GBP 1,200 per year for books, courses, "
          "conferences and certifications, plus 3 learning days to spend them. Unused money does not "
          "roll over. Claim through Ledgerline with the category 'Sharpening Fund'; your manager approves."),
    ("h2", "The Fallow Month"),
    ("p", "After 5 years of service you can take a Fallow Month: a 4-week paid sabbatical on top of "
          "your annual leave. You become eligible again every 5 years. Agree dates with your manager "
          "at least 3 months ahead."),
    ("h2", "Getting around"),
    ("ul", ["Cycle-to-work scheme: bikes and equipment up to GBP 2,000, "
            "paid back from gross salary over 12 months.",
            "Interest-free season ticket loan for train or bus travel."]),
])

POSTMORTEM = ("engineering/incident-postmortem-process.docx", "Ashfall Review Process", [
    ("h1", "Purpose"),
    ("p", "An Ashfall review is our blameless postmortem. We hold one to understand how an incident "
          "happened and what will stop it happening again. We never ask who is to blame; we ask what "
          "made the mistake easy to make. This process is owned by Meret Okafor, "
          "Reliability Programme Manager."),
    ("h1", "When an Ashfall review is required"),
    ("ul", ["After every Inkspill (INK-1).",
            "After any INK-2 that lasted longer than 2 hours.",
            "After any security incident that touched Vellum data.",
            "Whenever a Quire Lead asks for one, for example after a near miss."]),
    ("h1", "Timeline"),
    ("ul", ["The IRL writes the first draft within 3 working days of the incident being resolved.",
            "The review meeting takes place within 5 working days of resolution.",
            "The final write-up is published in the Ashfall library and announced in #ashfall."]),
    ("h1", "Roles"),
    ("h2", "Facilitator"),
    ("p", "Runs the meeting and keeps it blameless. The facilitator must not have been involved in the "
          "incident. Meret Okafor keeps the pool of trained facilitators."),
    ("h2", "Scribe"),
    ("p", "Takes notes and turns agreed actions into embers."),
    ("h2", "IRL"),
    ("p", "The Inkspill Response Lead presents the timeline and the impact."),
    ("h1", "The write-up template"),
    ("ul", ["Summary: two or three sentences a customer could understand.",
            "Impact: number of Folios affected, minutes of downtime, data lost (if any).",
            "Timeline: in UTC, from the first signal to full recovery.",
            "Contributing factors: technical and organisational, without names.",
            "What went well: things to keep doing.",
            "Embers: the follow-up actions."]),
    ("h1", "Embers"),
    ("p", "An ember is a follow-up action from an Ashfall review. Every ember has one owner and a due "
          "date, and is tracked in Patchbay with the label 'ember'. Embers from an Inkspill must be "
          "closed within 30 days; embers from an INK-2 within 60 days. Open embers older than their "
          "deadline are reviewed by the CTO every month, so please do not let them go cold."),
])

RETENTION = ("policies/data-retention-policy.docx", "Data Retention Policy", [
    ("h1", "Scope"),
    ("p", "This policy says how long Acme Quillworks keeps data and how it is deleted. It covers customer "
          "data in Inkwell, Blotter and Nib caches, and our own company records. The owner is "
          "Bea Lindqvist-Moore, Data Protection Officer."),
    ("h1", "Retention periods by data class"),
    ("ul", ["Vellum: deleted 2 years after the end of the customer's contract, "
            "by crypto-shredding the Folio's keys.",
            "Parchment: kept for 6 years, to meet contract and tax obligations.",
            "Foolscap: kept for 3 years after it was last changed, "
            "then archived or deleted by the owning team.",
            "Newsprint: no retention limit."]),
    ("h1", "Customer Folio deletion"),
    ("h2", "Soft deletion"),
    ("p", "When a customer deletes a Folio, it moves to the Limbo shelf for 35 days. During that time "
          "the customer's admin can restore it from the account page. After 35 days it is purged."),
    ("h2", "Purging"),
    ("p", "Purging removes the Folio from its Shelf, from Pulp and from object storage, and records a "
          "deletion event in Blotter. Blotter events themselves follow the Blotter retention settings."),
    ("h1", "Backups and logs"),
    ("ul", ["Database backups are kept for 45 days, so purged data disappears from backups within 45 days.",
            "Application logs are kept for 21 days.",
            "Security logs are kept for 1 year."]),
    ("h1", "Watermarks (legal holds)"),
    ("p", "A Watermark is a legal hold. When Legal places a Watermark on a Folio or a mailbox, all "
          "deletion, including purging and backup expiry, stops until the Watermark is lifted. "
          "Only Legal can set or lift a Watermark; ask them in #legal-holds."),
    ("h1", "Requests from individuals"),
    ("p", "Requests from individuals to see or delete their personal data are answered within 25 days. "
          "Forward every such request to privacy@acme.example on the day it arrives."),
])

PERFORMANCE = ("handbook/performance-review.docx", "Tidemark Performance Reviews", [
    ("h1", "What Tidemark is"),
    ("p", "Tidemark is our performance review cycle. It runs twice a year, in April and October. Each "
          "Tidemark looks back at the last six months and agrees goals for the next six. The process is "
          "owned by Priya Okonkwo-Hale, Head of People."),
    ("h1", "The steps"),
    ("h2", "1. Self-review"),
    ("p", "You write a short self-review of at most 600 words, due in the first week of the cycle."),
    ("h2", "2. Three Voices"),
    ("p", "You choose three colleagues to give you feedback; we call this Three Voices. At least one "
          "of them must be from outside your quire. Feedback is shared with you by name, never anonymously."),
    ("h2", "3. Manager review"),
    ("p", "Your manager writes a review and proposes a rating, then discusses it with you in a 1:1 of "
          "at least 45 minutes."),
    ("h2", "4. Calibration"),
    ("p", "The Tidemark Review Committee (TRC) compares proposed ratings across quires so that the same "
          "work gets the same rating everywhere. The TRC is made up of the Quire Leads of each department "
          "and one member of the People team."),
    ("h1", "Ratings"),
    ("ul", ["Drafting: not yet meeting expectations; comes with a support plan.",
            "Solid Ink: fully meeting expectations. Most people, most of the time.",
            "Bold Ink: clearly exceeding expectations.",
            "Gilded: exceptional impact, rare by design."]),
    ("h1", "Pay and promotion"),
    ("p", "Pay changes from the April Tidemark take effect on 1 July. Promotions are decided only in the "
          "October Tidemark and take effect on 1 January. You can be put forward for promotion by your "
          "manager or nominate yourself with a written case."),
])


def write_pdf(rel: str, title: str, blocks: list) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_author(AUTHOR)
    pdf.set_subject("Acme Quillworks internal document")
    pdf.set_creation_date(STAMP)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            size = 18 if kind == "h1" else 13
            pdf.ln(4)
            pdf.set_font("Helvetica", "B", size)
            pdf.multi_cell(0, size * 0.5, payload, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 5.5, payload, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "ul":
            pdf.set_font("Helvetica", "", 11)
            for item in payload:
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(0, 5.5, "- " + item, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        else:
            raise ValueError(f"unknown block kind {kind!r}; supported: h1, h2, p, ul")
    pdf.output(str(DOCS / rel))


def write_docx(rel: str, title: str, blocks: list) -> None:
    import docx

    doc = docx.Document()
    props = doc.core_properties
    props.title = title
    props.author = AUTHOR
    props.created = props.modified = STAMP.replace(tzinfo=None)
    doc.add_paragraph(title, style="Title")
    for kind, payload in blocks:
        if kind == "h1":
            doc.add_paragraph(payload, style="Heading 1")
        elif kind == "h2":
            doc.add_paragraph(payload, style="Heading 2")
        elif kind == "p":
            doc.add_paragraph(payload)
        elif kind == "ul":
            for item in payload:
                doc.add_paragraph(item, style="List Bullet")
        else:
            raise ValueError(f"unknown block kind {kind!r}; supported: h1, h2, p, ul")
    buf = io.BytesIO()
    doc.save(buf)
    _write_stable_zip(buf.getvalue(), DOCS / rel)


def _write_stable_zip(data: bytes, dest: Path) -> None:
    # python-docx stamps zip entries with the current time; pin it so that
    # regenerating unchanged text leaves the committed files byte-identical.
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 9, 2, 9, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(fixed, src.read(info.filename))


def main() -> None:
    for rel, title, blocks in (EXPENSE_POLICY, BLOTTER_DATASHEET, BENEFITS_SUMMARY):
        (DOCS / rel).parent.mkdir(parents=True, exist_ok=True)
        write_pdf(rel, title, blocks)
        print("wrote", rel)
    for rel, title, blocks in (POSTMORTEM, RETENTION, PERFORMANCE):
        (DOCS / rel).parent.mkdir(parents=True, exist_ok=True)
        write_docx(rel, title, blocks)
        print("wrote", rel)


if __name__ == "__main__":
    main()
