"""Synthetic receipts, driver's licenses and checks (the paper's KIE document types) with their fields.

Values come from `faker`, seeded per document, so a seed always gives the same documents.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from faker import Faker
from PIL import Image, ImageDraw

from h2ovl.synth.canvas import add_noise, draw_lines, font, ink_and_paper, random_font, text_size

Document = tuple[Image.Image, dict]


def _faker(rng: random.Random) -> Faker:
    fake = Faker("en_US")
    fake.seed_instance(rng.getrandbits(32))
    return fake


def receipt(rng: random.Random, scale: float = 1.0) -> Document:
    """A tall till receipt: store, date, items, total."""
    fake = _faker(rng)
    items = [(fake.word().upper(), round(rng.uniform(0.5, 60.0), 2)) for _ in range(rng.randint(2, 5))]
    total = round(sum(price for _, price in items), 2)
    fields = {
        "store": fake.company(),
        "date": fake.date(pattern="%Y-%m-%d"),
        "items": [{"name": name, "price": f"{price:.2f}"} for name, price in items],
        "total": f"{total:.2f}",
    }
    size = max(9, int(14 * scale))
    face = random_font(rng, size)
    width = int(rng.uniform(260, 340) * scale)
    height = int((8 + len(items)) * size * 1.5 + 20 * scale)
    ink, paper = ink_and_paper(rng)
    image = Image.new("RGB", (width, height), paper)
    lines = [("", fields["store"]), ("Date", fields["date"]), ("", "-" * 24)]
    lines += [("", f"{item['name']}  {item['price']}") for item in fields["items"]]
    lines += [("", "-" * 24), ("TOTAL", fields["total"])]
    draw_lines(image, lines, (int(10 * scale), int(10 * scale)), face, ink)
    return add_noise(image, rng, rng.uniform(0, 8)), fields


def drivers_license(rng: random.Random, scale: float = 1.0) -> Document:
    """A card with a photo box and the usual license fields."""
    fake = _faker(rng)
    fields = {
        "name": fake.name(),
        "license_number": fake.bothify("?#######").upper(),
        "date_of_birth": fake.date_of_birth(minimum_age=18, maximum_age=80).isoformat(),
        "expiration_date": fake.date_between(start_date="+1y", end_date="+8y").isoformat(),
        "address": fake.street_address(),
        "state": fake.state_abbr(),
    }
    width, height = int(480 * scale), int(300 * scale)
    ink, paper = ink_and_paper(rng)
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    header = font(max(10, int(20 * scale)), "DejaVuSans-Bold.ttf")
    draw.text((int(12 * scale), int(8 * scale)), f"{fields['state']} DRIVER LICENSE", font=header, fill=ink)
    draw.rectangle(
        [int(12 * scale), int(45 * scale), int(130 * scale), int(200 * scale)], outline=ink, fill=(200, 200, 205)
    )
    face = random_font(rng, max(8, int(13 * scale)))
    lines = [
        ("DL", fields["license_number"]),
        ("NAME", fields["name"]),
        ("DOB", fields["date_of_birth"]),
        ("EXP", fields["expiration_date"]),
        ("ADDR", fields["address"]),
    ]
    draw_lines(image, lines, (int(145 * scale), int(50 * scale)), face, ink, gap=1.6)
    return add_noise(image, rng, rng.uniform(0, 8)), fields


def check(rng: random.Random, scale: float = 1.0) -> Document:
    """A wide bank check: payee, amount, date, check number."""
    fake = _faker(rng)
    amount = round(rng.uniform(10, 5000), 2)
    fields = {
        "payee": fake.name(),
        "amount": f"{amount:.2f}",
        "date": fake.date(pattern="%m/%d/%Y"),
        "check_number": str(rng.randint(1000, 9999)),
        "bank": fake.company() + " Bank",
    }
    width, height = int(620 * scale), int(270 * scale)
    ink, paper = ink_and_paper(rng)
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    face = random_font(rng, max(8, int(14 * scale)))
    draw.text((int(14 * scale), int(10 * scale)), fields["bank"], font=face, fill=ink)
    number_width = text_size(face, fields["check_number"])[0]
    draw.text((width - number_width - int(14 * scale), int(10 * scale)), fields["check_number"], font=face, fill=ink)
    draw.text((width - int(200 * scale), int(50 * scale)), f"DATE {fields['date']}", font=face, fill=ink)
    draw.text((int(14 * scale), int(100 * scale)), f"PAY TO THE ORDER OF {fields['payee']}", font=face, fill=ink)
    draw.rectangle([width - int(170 * scale), int(95 * scale), width - int(14 * scale), int(125 * scale)], outline=ink)
    draw.text((width - int(160 * scale), int(100 * scale)), f"$ {fields['amount']}", font=face, fill=ink)
    draw.line([int(14 * scale), height - int(60 * scale), int(300 * scale), height - int(60 * scale)], fill=ink)
    return add_noise(image, rng, rng.uniform(0, 8)), fields


#: document type -> renderer; the names match the paper's Table 6.
DOCUMENTS: dict[str, Callable[[random.Random, float], Document]] = {
    "receipt": receipt,
    "drivers_license": drivers_license,
    "check": check,
}

#: For document VQA: document type -> [(question, field)].
QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "receipt": [
        ("What is the total on this receipt?", "total"),
        ("What is the date of this receipt?", "date"),
        ("Which store issued this receipt?", "store"),
    ],
    "drivers_license": [
        ("What is the license number?", "license_number"),
        ("What is the name on this license?", "name"),
        ("When does this license expire?", "expiration_date"),
    ],
    "check": [
        ("What is the amount of this check?", "amount"),
        ("Who is the payee of this check?", "payee"),
        ("What is the check number?", "check_number"),
    ],
}
