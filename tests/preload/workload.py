"""A threaded allocation workload for the preload test (run_preload_tests.sh).

Producer threads build records (tuples, strings, bytes, lists, dicts), consumer threads
sort and hash them and keep them; at the end everything is merged, sorted and hashed
once more, then dropped. Objects built by one thread are freed by another, and a few
hundred MB are live at the peak. The output depends only on the seeds, never on thread
scheduling, so it must be byte-for-byte the same on any malloc.

Usage: workload.py [scale]   (scale 1.0 = 192,000 records, about 200 MB at the peak)
Run it with PYTHONMALLOC=malloc to send every object, not only the large ones, through
malloc.
"""
import hashlib
import queue
import random
import sys
import threading

PRODUCERS = 3
CONSUMERS = 3
CHUNKS_PER_PRODUCER = 16
WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]


def build_chunk(producer, chunk, count):
    """`count` records from a seed that depends only on (producer, chunk)."""
    rng = random.Random(producer * 1_000_003 + chunk)
    records = []
    for i in range(count):
        key = rng.getrandbits(48)
        name = "%s-%s-%d" % (rng.choice(WORDS), rng.choice(WORDS), key % 9973)
        payload = rng.randbytes(rng.randint(0, 96))
        values = [rng.randint(-1000, 1000) for _ in range(rng.randint(1, 8))]
        attrs = {"producer": producer, "chunk": chunk, "index": i, "tag": name[:5]}
        records.append((name, key, payload, values, attrs))
    return records


def digest(records):
    h = hashlib.sha256()
    for name, key, payload, values, attrs in records:
        h.update(name.encode())
        h.update(key.to_bytes(8, "little"))
        h.update(payload)
        h.update(repr(values).encode())
        h.update(repr(sorted(attrs.items())).encode())
    return h.hexdigest()


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    records_per_chunk = max(100, int(4_000 * scale))
    work = queue.Queue(maxsize=2 * CONSUMERS)
    chunk_digests = {}
    kept = [[] for _ in range(CONSUMERS)]
    lock = threading.Lock()

    def produce(p):
        for c in range(CHUNKS_PER_PRODUCER):
            work.put((p, c, build_chunk(p, c, records_per_chunk)))

    def consume(index):
        while True:
            item = work.get()
            if item is None:
                return
            p, c, records = item
            records.sort(key=lambda r: (r[0], r[1]))
            d = digest(records)
            with lock:
                chunk_digests[(p, c)] = d
            # Keep the records (freed at the end, by another thread) but drop every
            # eighth one now, from this thread.
            kept[index].append([r for i, r in enumerate(records) if i % 8 != 7])

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    consumers = [threading.Thread(target=consume, args=(i,)) for i in range(CONSUMERS)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    for _ in consumers:
        work.put(None)
    for t in consumers:
        t.join()

    for (p, c) in sorted(chunk_digests):
        print("chunk %d.%02d %s" % (p, c, chunk_digests[(p, c)]))
    everything = [r for lists in kept for chunk in lists for r in chunk]
    everything.sort(key=lambda r: (r[1], r[0]))
    print("records kept %d" % len(everything))
    print("all records %s" % digest(everything))
    by_name = {}
    for r in everything:
        by_name.setdefault(r[0], []).append(r[1])
    print("distinct names %d" % len(by_name))
    print("largest group %d" % max(len(v) for v in by_name.values()))
    del everything, kept, by_name


if __name__ == "__main__":
    main()
