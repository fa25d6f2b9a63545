#!/usr/bin/env python3
"""Generates the benchmark corpus: a directory of NDJSON collections that
`coffer bundle DIR` reads, totalling about SIZE MiB (default 512).

    scripts/bench_corpus.py OUT_DIR [SIZE_MIB]

Deterministic (fixed seed): the same arguments give the same bytes.
Documents look like a real application database: ids, short and long text
(words drawn from a Zipf-distributed vocabulary), numbers, timestamps,
booleans, nested objects, small arrays and small float vectors.

Collections and their share of the bytes:
  articles    35 %  long text bodies, titles, tags, nested stats
  events      20 %  telemetry: types, timestamps, nested payloads, numbers
  embeddings  20 %  16-dimension float vectors with model metadata
  users       15 %  profiles with nested addresses (ids in random order)
  orders      10 %  line items (arrays of objects), prices, shipping
"""
import json
import os
import random
import sys

SEED = 20261121
SHARES = [("articles", 0.35), ("events", 0.20), ("embeddings", 0.20), ("users", 0.15), ("orders", 0.10)]


def make_vocab(rng, n=6000):
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "qua", "bri", "tor", "ex", "an", "el",
            "on", "ist", "ment", "ing", "ber", "gal", "fen", "sor", "lin", "mar", "tel", "cor", "pri", "sta"]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(1, 4))))
    words = sorted(words)
    rng.shuffle(words)
    weights = [1.0 / (i + 1) for i in range(n)]
    return words, weights


class Gen:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.words, self.weights = make_vocab(self.rng)
        self.cum = None

    def text(self, k):
        ws = self.rng.choices(self.words, cum_weights=self.cum, k=k)
        out = []
        for i in range(0, len(ws), 12):
            s = " ".join(ws[i:i + 12])
            out.append(s[:1].upper() + s[1:] + ".")
        return " ".join(out)

    def ts(self):
        return 1_600_000_000_000 + self.rng.randrange(200_000_000_000)

    def tags(self, n):
        return self.rng.sample(self.words[:200], n)

    def article(self, i):
        r = self.rng
        return {
            "id": f"article-{i:09d}",
            "title": self.text(r.randint(4, 10)).rstrip("."),
            "body": self.text(r.randint(150, 600)),
            "author_id": f"user-{r.randrange(1 << 40):010x}",
            "published": self.ts(),
            "draft": r.random() < 0.1,
            "tags": self.tags(r.randint(0, 5)),
            "stats": {"views": r.randrange(1_000_000), "likes": r.randrange(10_000), "score": round(r.random() * 5, 2)},
            "lang": r.choice(["en", "de", "fr", "es", "ja"]),
        }

    def event(self, i):
        r = self.rng
        return {
            "id": f"evt-{i:010d}",
            "type": r.choice(["page_view", "click", "signup", "purchase", "error", "search"]),
            "user_id": f"user-{r.randrange(1 << 40):010x}",
            "ts": self.ts(),
            "payload": {
                "path": "/" + "/".join(r.choices(self.words[:500], k=r.randint(1, 4))),
                "duration_ms": r.randrange(5000),
                "ok": r.random() < 0.97,
                "ip": f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}",
                "ua": r.choice(["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "curl/8.5", "okhttp/4.12"]),
            },
            "values": [r.randrange(100) for _ in range(r.randint(0, 6))],
        }

    def embedding(self, i):
        r = self.rng
        return {
            "id": f"emb-{i:010d}",
            "doc_id": f"article-{r.randrange(1_000_000):09d}",
            "model": "minilm-l6-v2-16",
            "chunk": r.randrange(20),
            "vector": [round(r.gauss(0, 0.3), 6) for _ in range(16)],
            "norm": 1.0,
        }

    def user(self, i):
        r = self.rng
        first = r.choice(self.words[:800]).capitalize()
        last = r.choice(self.words[:3000]).capitalize()
        return {
            "id": f"user-{r.randrange(1 << 40):010x}-{i}",
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{r.randrange(100)}@example.com",
            "bio": self.text(r.randint(10, 60)),
            "age": r.randint(16, 90),
            "created": self.ts(),
            "verified": r.random() < 0.7,
            "address": {"city": r.choice(self.words[:300]).capitalize(), "country": r.choice(["DE", "FR", "US", "JP", "BR", "IN"]),
                        "zip": f"{r.randrange(100000):05d}", "geo": [round(r.uniform(-90, 90), 5), round(r.uniform(-180, 180), 5)]},
            "roles": r.sample(["admin", "editor", "viewer", "owner", "billing"], r.randint(1, 2)),
        }

    def order(self, i):
        r = self.rng
        items = [{"sku": f"SKU-{r.randrange(100000):06d}", "qty": r.randint(1, 5), "price": round(r.uniform(1, 500), 2)} for _ in range(r.randint(1, 6))]
        return {
            "id": f"order-{i:09d}",
            "customer": f"user-{r.randrange(1 << 40):010x}",
            "items": items,
            "total": round(sum(x["qty"] * x["price"] for x in items), 2),
            "currency": r.choice(["EUR", "USD", "JPY"]),
            "status": r.choice(["paid", "shipped", "delivered", "refunded"]),
            "shipping": {"method": r.choice(["standard", "express"]), "address": {"city": r.choice(self.words[:300]).capitalize(), "zip": f"{r.randrange(100000):05d}"}},
            "created": self.ts(),
        }


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    total = int(float(sys.argv[2]) * (1 << 20)) if len(sys.argv) > 2 else 512 << 20
    os.makedirs(out, exist_ok=True)
    g = Gen()
    acc = 0.0
    g.cum = []
    for w in g.weights:
        acc += w
        g.cum.append(acc)
    make = {"articles": g.article, "events": g.event, "embeddings": g.embedding, "users": g.user, "orders": g.order}
    written = 0
    for n, (name, share) in enumerate(SHARES):
        target = total - written if n == len(SHARES) - 1 else int(total * share)
        size = 0
        i = 0
        lines = []
        with open(os.path.join(out, name + ".ndjson"), "w", encoding="utf-8") as f:
            while size < target:
                line = json.dumps(make[name](i), separators=(",", ":"), ensure_ascii=False) + "\n"
                size += len(line)
                lines.append(line)
                i += 1
                if len(lines) >= 4096:
                    f.write("".join(lines))
                    lines = []
            f.write("".join(lines))
        written += size
        print(f"{name}: {i} documents, {size} bytes", file=sys.stderr)
    with open(os.path.join(out, "schema.json"), "w") as f:
        f.write('{"version":1,"collections":["articles","embeddings","events","orders","users"]}\n')
    with open(os.path.join(out, "embeddings.config.json"), "w") as f:
        f.write('{"dimension":16,"metric":"cosine"}\n')
    print(f"total: {written} bytes in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
