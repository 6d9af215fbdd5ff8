#!/usr/bin/env python3
"""Draws pice-arith questions the way the eval set's generator does (models/pice-arith/README.md,
"How questions are drawn"), disjoint from given files by exact question text.

PICE ships tests/data/pice-arith/tune.jsonl made with
    scripts/gen-arith-questions.py --n 300 --seed 20261206 --prefix tune \
        --exclude tests/data/pice-arith/eval.jsonl > tests/data/pice-arith/tune.jsonl
It is the split the escalation thresholds are tuned on (`pice bench quality --eval
tests/data/pice-arith/tune.jsonl`); the figures the README quotes come from eval.jsonl.
Output: one JSON object per line with the eval file's fields.
"""
import argparse
import json
import random
import sys

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n):
    if n < 20:
        return ONES[n]
    t, o = divmod(n, 10)
    return TENS[t] + ("" if o == 0 else "-" + ONES[o])


# (chance a number is written in words, chance an operand is drawn from 0-9) by parts
SHORTEN = {2: (0.4, 0.0), 3: (0.4, 0.0), 4: (0.2, 0.3), 5: (0.05, 0.7), "dep": (0.4, 0.0)}


class Drawer:
    def __init__(self, rng, kind):
        self.rng = rng
        self.p_words, self.p_small = SHORTEN[kind]

    def say(self, n):
        return words(n) if self.rng.random() < self.p_words else str(n)

    def operand(self):
        return self.rng.randint(0, 9) if self.rng.random() < self.p_small else self.rng.randint(0, 99)

    def part(self):
        """An ordinary part: (question text, expression, result)."""
        op = self.rng.choice(["add", "subtract", "multiply"])
        if op == "add":
            a, b = self.operand(), self.operand()
            return f"add {self.say(a)} and {self.say(b)}", f"{a}+{b}", a + b
        if op == "subtract":
            a, b = self.operand(), self.operand()
            hi, lo = max(a, b), min(a, b)
            return f"subtract {self.say(lo)} from {self.say(hi)}", f"{hi}-{lo}", hi - lo
        small, big = self.rng.randint(0, 12), self.operand()
        a, b = (small, big) if self.rng.random() < 0.5 else (big, small)
        return f"multiply {self.say(a)} by {self.say(b)}", f"{a}*{b}", a * b


def tokens(prompt, completion):
    # One token per character, plus BOS, the SentencePiece space prefix and EOS.
    return 1 + 1 + len(prompt) + len(completion) + 1


def independent(rng, n_parts):
    d = Drawer(rng, n_parts)
    parts = [d.part() for _ in range(n_parts)]
    question = "; ".join(p[0] for p in parts)
    sketch = " " + " ".join(f"{i + 1}. {p[1]}" for i, p in enumerate(parts))
    answer = " " + " ".join(f"{p[1]}={p[2]}." for p in parts)
    return question, False, [(p[1], p[2]) for p in parts], sketch, answer


def dependent(rng, steps):
    d = Drawer(rng, "dep")
    text, expr, value = d.part()
    parts = [(expr, value)]
    for _ in range(steps - 1):
        op = rng.choice(["add", "subtract", "multiply"])
        if op == "add":
            n = rng.randint(0, 99)
            text += f", then add {d.say(n)} to that"
            parts.append((f"{value}+{n}", value + n))
        elif op == "subtract":
            n = rng.randint(0, min(value, 99))
            text += f", then subtract {d.say(n)} from that"
            parts.append((f"{value}-{n}", value - n))
        else:
            n = rng.randint(0, 12)
            text += f", then multiply that by {d.say(n)}"
            parts.append((f"{value}*{n}", value * n))
        value = parts[-1][1]
    answer = " " + " ".join(f"{e}={r}." for e, r in parts)
    return text, True, parts, " -", answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="q")
    ap.add_argument("--exclude", action="append", default=[])
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seen = set()
    for path in args.exclude:
        with open(path) as f:
            for line in f:
                if line.strip():
                    seen.add(json.loads(line)["question"])
    out = 0
    while out < args.n:
        dep = rng.random() < 0.2
        size = (2 if rng.random() < 2 / 3 else 3) if dep else rng.choice([2, 3, 4, 5])
        while True:  # redraw with the same kind and size until it fits the context
            q, is_dep, parts, sketch, answer = dependent(rng, size) if dep else independent(rng, size)
            full_prompt, sketch_prompt = f"Q: {q}\nA:", f"Q: {q}\nS:"
            if tokens(full_prompt, answer) <= 128 and tokens(sketch_prompt, sketch) <= 128:
                break
        if q in seen:
            continue
        seen.add(q)
        print(json.dumps({
            "id": f"{args.prefix}-{out:03d}", "question": q, "dependent": is_dep,
            "parts": [{"expression": e, "result": r} for e, r in parts],
            "sketch_prompt": sketch_prompt, "full_prompt": full_prompt,
            "reference_sketch": sketch, "reference_answer": answer,
            "point_prompts": [] if is_dep else [f"P: {e}=" for e, _ in parts],
            "full_sequence_tokens": tokens(full_prompt, answer)}))
        out += 1


if __name__ == "__main__":
    sys.exit(main())
